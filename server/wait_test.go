package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/raftfsm"
)

// queueWaiter starts a waiting acquire of key by owner and returns its
// outcome channel once it is queued.
func queueWaiter(t *testing.T, ctx context.Context, n *Node, key, owner string) <-chan error {
	t.Helper()
	before := n.waits.count(key)
	done := make(chan error, 1)
	go func() {
		l, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: key, Owner: owner, TTL: time.Minute, Wait: 5 * time.Second})
		if err == nil && l.Owner != owner {
			err = errors.New("granted to " + l.Owner)
		}
		done <- err
	}()
	waitFor(t, 2*time.Second, owner+" to queue", func() bool { return n.waits.count(key) == before+1 })
	return done
}

// TestReleaseHandsOffInOneEntry: a release with a caller waiting grants it
// the lock in the release's own raft entry: one entry for the handover.
func TestReleaseHandsOffInOneEntry(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ctx := ctxT(t)
	a, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	done := queueWaiter(t, ctx, n, "k", "b")
	queued := n.fsm.AppliedIndex() // b's refused attempt is behind it
	if err := n.Release(ctx, lockapi.ReleaseRequest{Key: "k", Owner: "a", Token: a.Token}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b, err := n.Info(ctx, "k")
	if err != nil || b.Owner != "b" || b.Token <= a.Token {
		t.Fatalf("after the handover: %+v, %v; want b holding it with a token above a's %d", b, err, a.Token)
	}
	// Since b queued, the log holds one command on k: a's release handing
	// over to b, and no acquire of b's own. (The node's own commands, such
	// as raising the protocol version, may come in between.)
	var cmds []raftfsm.Command
	for _, c := range commandsSince(t, n, queued) {
		if c.Key == "k" {
			cmds = append(cmds, c)
		}
	}
	if len(cmds) != 1 {
		t.Fatalf("%d commands on k since b queued: %+v; want only a's release handing over to b", len(cmds), cmds)
	}
	if c := cmds[0]; c.Op != raftfsm.OpHandoff || c.Owner != "a" || c.Token != a.Token || c.NextOwner != "b" {
		t.Fatalf("the command that granted b: %+v; want a's release handing over to b", c)
	}
}

// TestWaiterLooksAfterQueueing: a caller that was refused looks at the
// lock again only once it is queued. A lock freed before that (which woke
// nobody) is acquired at once; a lock still held costs no second, refused
// attempt: the waiter's next entry is the one that serves it.
func TestWaiterLooksAfterQueueing(t *testing.T) {
	tests := []struct {
		name     string
		held     bool          // "a" holds k when b starts waiting
		wait     time.Duration // b's wait; it ends at once when served
		wantErr  error
		wantOwns bool // b holds k afterwards
	}{
		{"freed before b queued", false, 10 * time.Second, nil, true},
		{"still held", true, 300 * time.Millisecond, lockapi.ErrHeld, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := startNode(t, t.TempDir(), nil)
			ctx := ctxT(t)
			if tt.held {
				if _, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: time.Minute}); err != nil {
					t.Fatal(err)
				}
			}
			before := n.fsm.AppliedIndex()
			// As after b's refused attempt: tried, and queued afterwards.
			cmd := raftfsm.Command{Op: raftfsm.OpAcquire, Key: "k", Owner: "b", TTL: time.Minute}
			_, err := n.waitAndAcquire(ctx, cmd, tt.wait, true)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("wait: %v, want %v", err, tt.wantErr)
			}
			l, _ := n.fsm.Get("k")
			if (l.Owner == "b") != tt.wantOwns {
				t.Fatalf("k afterwards: %+v", l)
			}
			if n.waits.count("k") != 0 {
				t.Fatalf("%d still queued", n.waits.count("k"))
			}
			if !tt.held {
				return
			}
			for _, c := range commandsSince(t, n, before) {
				if c.Owner == "b" {
					t.Errorf("%v by b while a held the lock", c.Op)
				}
			}
		})
	}
}

// commandsSince decodes the state machine commands n's log holds after
// index from, packed or not.
func commandsSince(t *testing.T, n *Node, from uint64) []raftfsm.Command {
	t.Helper()
	var out []raftfsm.Command
	for _, e := range commandEntries(t, n, from) {
		if raftfsm.IsBatch(e.Data) {
			cmds, err := raftfsm.DecodeBatch(e.Data)
			if err != nil {
				t.Fatalf("entry %d: %v", e.Index, err)
			}
			out = append(out, cmds...)
			continue
		}
		c, err := raftfsm.Decode(e.Data)
		if err != nil {
			t.Fatalf("entry %d: %v", e.Index, err)
		}
		out = append(out, c)
	}
	return out
}

// TestRefusedReleaseKeepsWaiterQueued: a release that is refused (wrong
// token) hands nothing; the waiter stays at the head and is served by the
// holder's real release.
func TestRefusedReleaseKeepsWaiterQueued(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ctx := ctxT(t)
	a, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	done := queueWaiter(t, ctx, n, "k", "b")
	later := queueWaiter(t, ctx, n, "k", "c")
	if err := n.Release(ctx, lockapi.ReleaseRequest{Key: "k", Owner: "a", Token: a.Token + 100}); !errors.Is(err, lockapi.ErrNotHeld) {
		t.Fatalf("release with a wrong token: %v", err)
	}
	if got := n.waits.count("k"); got != 2 {
		t.Fatalf("%d waiters after a refused release, want 2", got)
	}
	if err := n.Release(ctx, lockapi.ReleaseRequest{Key: "k", Owner: "a", Token: a.Token}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("head waiter: %v", err)
	}
	if l, err := n.Info(ctx, "k"); err != nil || l.Owner != "b" || l.Waiters != 1 {
		t.Fatalf("after the release: %+v, %v (want b holding, c waiting)", l, err)
	}
	select {
	case err := <-later:
		t.Fatalf("second waiter served before b released: %v", err)
	default:
	}
}

// TestWaitQueueStates walks a waiter through the claims and exits that
// races between a release and the waiter's own wait can produce: a waiter
// gets exactly one outcome per claim and is never queued again once its
// wait has ended.
func TestWaitQueueStates(t *testing.T) {
	granted := handoff{res: raftfsm.Result{Granted: raftfsm.LockState{Key: "k", Owner: "w", Token: 9}}}
	tests := []struct {
		name      string
		run       func(q *waitQueues, w *waiter) // after enqueue(k, w)
		wantCount int
		wantOut   *handoff // what w.handed holds, nil for nothing
	}{
		{"claim skips a head that is trying", func(q *waitQueues, w *waiter) {
			q.startTry("k", w, true)
			if q.claim("k") != nil {
				t.Error("claimed a trying waiter")
			}
			q.endTry("k", w, lockapi.ErrHeld)
		}, 1, nil},
		{"own acquire done: gone from the queue at once", func(q *waitQueues, w *waiter) {
			q.startTry("k", w, true)
			q.endTry("k", w, nil)
			if q.claim("k") != nil {
				t.Error("claimed a waiter that is done")
			}
		}, 0, nil},
		{"refused handoff: back at the head", func(q *waitQueues, w *waiter) {
			q.claim("k")
			q.unclaim("k", w)
		}, 1, nil},
		{"left while claimed, then refused: ends, not queued again", func(q *waitQueues, w *waiter) {
			q.claim("k")
			if q.leave("k", w) {
				t.Error("leave of a claimed waiter returned true")
			}
			q.unclaim("k", w)
		}, 0, &handoff{refused: true}},
		{"left while claimed, then granted: the grant is delivered", func(q *waitQueues, w *waiter) {
			q.claim("k")
			q.leave("k", w)
			q.settle("k", w, granted)
		}, 0, &granted},
		{"not leader: a non-head tries to learn it", func(q *waitQueues, w *waiter) {
			other, head := q.enqueue("k", "x", time.Second)
			if head {
				t.Error("the second waiter heads the queue")
			}
			if q.startTry("k", other, true) {
				t.Error("a non-head tried while leader")
			}
			if !q.startTry("k", other, false) {
				t.Error("a non-head did not try after leadership moved")
			}
			q.endTry("k", other, lockapi.ErrNoLeader)
		}, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q waitQueues
			w, head := q.enqueue("k", "w", time.Second)
			if !head {
				t.Fatal("the first waiter does not head the queue")
			}
			tt.run(&q, w)
			if got := q.count("k"); got != tt.wantCount {
				t.Errorf("%d queued, want %d", got, tt.wantCount)
			}
			select {
			case h := <-w.handed:
				if tt.wantOut == nil || h.refused != tt.wantOut.refused || h.res.Granted != tt.wantOut.res.Granted {
					t.Errorf("handed %+v, want %+v", h, tt.wantOut)
				}
			default:
				if tt.wantOut != nil {
					t.Errorf("nothing handed, want %+v", *tt.wantOut)
				}
			}
		})
	}
}

// TestWaiterLeavingWhileClaimedTakesTheOutcome: a caller whose wait ends
// while a release hands it the lock gets the lock (the wait timed out) or
// its context's error (it went away), never a definite "held".
func TestWaiterLeavingWhileClaimedTakesTheOutcome(t *testing.T) {
	granted := handoff{res: raftfsm.Result{Granted: raftfsm.LockState{Key: "k", Owner: "w", Token: 9}}}
	if res, err := handedResult(context.Background(), granted); err != nil || res.Lock.Token != 9 {
		t.Fatalf("timed-out waiter handed a lock: %+v, %v", res, err)
	}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := handedResult(gone, granted); !errors.Is(err, context.Canceled) {
		t.Fatalf("departed waiter handed a lock: %v", err)
	}
	if _, err := handedResult(context.Background(), handoff{refused: true}); !errors.Is(err, lockapi.ErrHeld) {
		t.Fatalf("refused handoff at the end of a wait: %v", err)
	}
	if _, err := handedResult(context.Background(), handoff{err: lockapi.ErrUnknownOutcome}); !errors.Is(err, lockapi.ErrUnknownOutcome) {
		t.Fatalf("unknown handoff: %v", err)
	}
}

// TestWaitStress races waiting acquires, timeouts, departures and releases
// on one key: every call returns, holders never overlap, and the queue
// ends empty.
func TestWaitStress(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ctx := ctxT(t)
	var mu sync.Mutex
	holder, grants := "", 0
	deadline := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprintf("o%d", i)
			rng := rand.New(rand.NewSource(int64(i)))
			for round := 0; round < 200 && time.Now().Before(deadline); round++ {
				cctx, cancel := context.WithTimeout(ctx, time.Duration(rng.Intn(40))*time.Millisecond)
				l, err := n.Acquire(cctx, lockapi.AcquireRequest{Key: "k", Owner: owner, TTL: 300 * time.Millisecond, Wait: time.Duration(1+rng.Intn(30)) * time.Millisecond})
				cancel()
				if err != nil {
					continue // held, timed out, or left: a grant whose answer was lost expires with its TTL
				}
				mu.Lock()
				if holder != "" {
					t.Errorf("%s granted while %s holds the lock", owner, holder)
				}
				holder = owner
				grants++
				mu.Unlock()
				time.Sleep(time.Duration(rng.Intn(2)) * time.Millisecond)
				mu.Lock()
				holder = ""
				mu.Unlock()
				if err := n.Release(ctx, lockapi.ReleaseRequest{Key: "k", Owner: owner, Token: l.Token}); err != nil {
					t.Errorf("%s release: %v", owner, err)
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("waiters or releases hung")
	}
	waitFor(t, 2*time.Second, "the queue to drain", func() bool { return n.waits.count("k") == 0 })
	if grants < 20 {
		t.Fatalf("only %d grants: the test did not exercise handovers", grants)
	}
	t.Logf("%d grants", grants)
}

// TestQueuedWaiterProposesNothingUntilItsTurn: a waiting acquire of a key
// that another owner holds while others already queue goes to the back of
// the queue without a raft entry (it would be refused); releases then hand
// the lock down the queue, one entry per handover.
func TestQueuedWaiterProposesNothingUntilItsTurn(t *testing.T) {
	n := startNode(t, t.TempDir(), noClockCheckpoints) // it counts the log's entries
	waitRegistered(t, n)                               // then the tests' own commands are all the log receives
	ctx := ctxT(t)
	a, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	b := queueWaiter(t, ctx, n, "k", "b") // tries first: nobody queued yet
	before := n.raft.LastIndex()
	c := queueWaiter(t, ctx, n, "k", "c")
	if got := n.raft.LastIndex(); got != before {
		t.Fatalf("c queued behind b and the log went from index %d to %d; want no entry", before, got)
	}
	if err := n.Release(ctx, lockapi.ReleaseRequest{Key: "k", Owner: "a", Token: a.Token}); err != nil {
		t.Fatal(err)
	}
	if err := <-b; err != nil {
		t.Fatal(err)
	}
	held, err := n.Info(ctx, "k")
	if err != nil || held.Owner != "b" {
		t.Fatalf("after a's release: %+v, %v; want b", held, err)
	}
	if err := n.Release(ctx, lockapi.ReleaseRequest{Key: "k", Owner: "b", Token: held.Token}); err != nil {
		t.Fatal(err)
	}
	if err := <-c; err != nil {
		t.Fatal(err)
	}
	if got := n.raft.LastIndex(); got != before+2 {
		t.Fatalf("log at index %d after two handovers from %d; want two entries", got, before)
	}
}

// TestQueuedWaiterTimeoutIsRaftsRefusal: a waiter that queued without
// trying and whose wait ends tries once, so the refusal it answers comes
// from a raft entry, as of the end of its wait.
func TestQueuedWaiterTimeoutIsRaftsRefusal(t *testing.T) {
	n := startNode(t, t.TempDir(), noClockCheckpoints) // it counts the log's entries
	waitRegistered(t, n)                               // then the tests' own commands are all the log receives
	ctx := ctxT(t)
	if _, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	queueWaiter(t, ctx, n, "k", "b")
	before := n.raft.LastIndex()
	_, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "c", TTL: time.Minute, Wait: 300 * time.Millisecond})
	if !errors.Is(err, lockapi.ErrHeld) {
		t.Fatalf("c's wait ended with %v; want %v", err, lockapi.ErrHeld)
	}
	last := n.raft.LastIndex()
	if last != before+1 {
		t.Fatalf("log went from index %d to %d; want c's one attempt", before, last)
	}
	var entry raft.Log
	if err := n.store.GetLog(last, &entry); err != nil {
		t.Fatal(err)
	}
	if cmd, err := raftfsm.Decode(entry.Data); err != nil || cmd.Op != raftfsm.OpAcquire || cmd.Owner != "c" {
		t.Fatalf("entry %d: %+v, %v; want c's acquire", last, cmd, err)
	}
	if got := n.waits.count("k"); got != 1 {
		t.Fatalf("%d callers queued after c left; want b alone", got)
	}
}

// TestHolderReacquiresWhileOthersWait: the holder's own waiting acquire is
// not queued behind the waiters: it extends its lock at once, same token.
func TestHolderReacquiresWhileOthersWait(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ctx := ctxT(t)
	a, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	queueWaiter(t, ctx, n, "k", "b")
	start := time.Now()
	again, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: time.Minute, Wait: 5 * time.Second})
	if err != nil || again.Token != a.Token {
		t.Fatalf("a acquiring again: %+v, %v; want its lock, token %d", again, err, a.Token)
	}
	if waited := time.Since(start); waited > 3*time.Second {
		t.Fatalf("a's acquire took %v: it queued behind b", waited)
	}
}

// jumpClock is the real clock whose monotonic time can be pushed forward.
type jumpClock struct {
	start time.Time
	ahead atomic.Int64
}

func (c *jumpClock) Now() time.Time { return time.Now() }
func (c *jumpClock) Monotonic() time.Duration {
	return time.Since(c.start) + time.Duration(c.ahead.Load())
}

// TestClaimedWaiterKeepsItsPlace: while a release has claimed the head
// waiter w1 for a handoff, a free of the key (the lock's expiry, applied in
// the handoff's own entry or just before it) must not let w2 try: if the
// handoff is then refused (the lock had expired), w1 must still go first.
func TestClaimedWaiterKeepsItsPlace(t *testing.T) {
	var q waitQueues
	w1, _ := q.enqueue("k", "w1", time.Minute)
	w2, _ := q.enqueue("k", "w2", time.Minute)
	if got := q.claim("k"); got != w1 {
		t.Fatal("claim did not take w1")
	}
	q.freed("k") // the lock expires in (or before) the handoff's entry
	select {
	case <-w2.wake:
	default:
	}
	if q.startTry("k", w2, true) {
		t.Errorf("w2 may try while w1, queued before it, is claimed and not yet served: FIFO is lost if the handoff is refused")
	}
}

// TestWaitFIFOWhenReleaseMeetsExpiry: A's lease has run out when A
// releases (a release at the end of its TTL, a paused client). A's release
// claims w1 and its handoff entry finds the lock expired and is refused;
// the expiry must not let w2, queued second, acquire ahead of w1.
func TestWaitFIFOWhenReleaseMeetsExpiry(t *testing.T) {
	clk := &jumpClock{start: time.Now()}
	n := startNode(t, t.TempDir(), func(c *Config) { c.Clock = clk })
	ctx := ctxT(t)
	violations := 0
	const rounds = 100
	for r := 0; r < rounds; r++ {
		key := fmt.Sprintf("k%d", r)
		a, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: key, Owner: "A", TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		d1 := queueWaiter(t, ctx, n, key, "w1")
		d2 := queueWaiter(t, ctx, n, key, "w2")
		clk.ahead.Add(int64(2 * time.Minute)) // A's lease is over
		err = n.Release(ctx, lockapi.ReleaseRequest{Key: key, Owner: "A", Token: a.Token})
		if err != nil && !errors.Is(err, lockapi.ErrNotFound) {
			t.Fatal(err)
		}
		// Exactly one of w1, w2 is granted now; FIFO says w1.
		var winner string
		select {
		case err := <-d1:
			if err != nil {
				t.Fatalf("w1: %v", err)
			}
			winner = "w1"
		case err := <-d2:
			if err != nil {
				t.Fatalf("w2: %v", err)
			}
			winner = "w2"
		case <-time.After(5 * time.Second):
			t.Fatal("nobody granted")
		}
		if winner == "w2" {
			violations++
		}
		// Let the other one through and clean up.
		l, err := n.Info(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Release(ctx, lockapi.ReleaseRequest{Key: key, Owner: l.Owner, Token: l.Token}); err != nil {
			t.Fatal(err)
		}
		other := d2
		if winner == "w2" {
			other = d1
		}
		if err := <-other; err != nil {
			t.Fatal(err)
		}
	}
	if violations > 0 {
		t.Fatalf("w2 (queued second) was granted before w1 in %d of %d rounds", violations, rounds)
	}
}

// respWaiterSetup starts a node with a RESP port, has owner A hold k for a
// minute, and connects a RESP client (closed at cleanup) that will wait
// for k.
func respWaiterSetup(t *testing.T) (*Node, lockapi.Lock, net.Conn) {
	t.Helper()
	n := startNode(t, t.TempDir(), func(c *Config) { c.RESPAddr = "127.0.0.1:0" })
	a, err := n.Acquire(ctxT(t), lockapi.AcquireRequest{Key: "k", Owner: "A", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", n.RESPAddr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return n, a, c
}

// TestRESPWaiterThatHangsUpLeavesTheQueue: a RESP client that sends
// LOCK.ACQUIRE ... WAIT and then goes away (its library's read timeout, a
// crash) must leave the queue; it must not be handed the lock afterwards,
// where nobody would ever release it (it then blocks every other waiter
// for its whole TTL).
func TestRESPWaiterThatHangsUpLeavesTheQueue(t *testing.T) {
	n, a, c := respWaiterSetup(t)
	ctx := ctxT(t)
	// B waits up to 10 s for k, with a 60 s lease.
	if _, err := c.Write([]byte("*6\r\n$12\r\nLOCK.ACQUIRE\r\n$1\r\nk\r\n$1\r\nB\r\n$5\r\n60000\r\n$4\r\nWAIT\r\n$5\r\n10000\r\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "B queued", func() bool { return n.waits.count("k") == 1 })
	// B's client gives up and closes its connection.
	c.Close()
	left := time.Now().Add(2 * time.Second)
	for n.waits.count("k") != 0 && time.Now().Before(left) {
		time.Sleep(5 * time.Millisecond)
	}
	stillQueued := n.waits.count("k")
	// A releases: with B still queued, the release hands k to B.
	if err := n.Release(ctx, lockapi.ReleaseRequest{Key: "k", Owner: "A", Token: a.Token}); err != nil {
		t.Fatal(err)
	}
	info, err := n.Info(ctx, "k")
	if stillQueued != 0 || err == nil {
		t.Fatalf("B's connection closed 2s ago: still queued=%d; after A's release k is %+v (err %v): "+
			"the lock went to a client that is gone and is held for its full TTL", stillQueued, info, err)
	}
}

// TestRESPWaiterWithPipelinedCommands: commands a client pipelines behind
// its LOCK.ACQUIRE ... WAIT, some sent while it waits, run once it is
// granted, and the connection keeps working after (the hang-up watch that
// ran during the wait leaves no read deadline behind).
func TestRESPWaiterWithPipelinedCommands(t *testing.T) {
	n, a, c := respWaiterSetup(t)
	ctx := ctxT(t)
	const ping = "*1\r\n$4\r\nPING\r\n"
	send := func(s string) {
		t.Helper()
		if _, err := c.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	send("*6\r\n$12\r\nLOCK.ACQUIRE\r\n$1\r\nk\r\n$1\r\nB\r\n$5\r\n60000\r\n$4\r\nWAIT\r\n$5\r\n10000\r\n" + ping)
	waitFor(t, 5*time.Second, "B queued", func() bool { return n.waits.count("k") == 1 })
	const trickled = 20
	for range trickled { // each arrival wakes the watch, which must not read it
		send(ping)
		time.Sleep(2 * time.Millisecond)
	}
	if err := n.Release(ctx, lockapi.ReleaseRequest{Key: "k", Owner: "A", Token: a.Token}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, ":") {
		t.Fatalf("B's acquire: %q, %v; want its fencing token", line, err)
	}
	for i := range 1 + trickled {
		if line, err := r.ReadString('\n'); err != nil || line != "+PONG\r\n" {
			t.Fatalf("pipelined PING %d: %q, %v", i, line, err)
		}
	}
	time.Sleep(50 * time.Millisecond) // the next read must wait for its request
	send(ping)
	if line, err := r.ReadString('\n'); err != nil || line != "+PONG\r\n" {
		t.Fatalf("PING after the wait: %q, %v", line, err)
	}
}

// noClockCheckpoints is a startNode option for tests that count the log's
// entries while a lock is held: no time-only entry comes between.
func noClockCheckpoints(c *Config) { c.ClockCheckpoint = time.Hour }
