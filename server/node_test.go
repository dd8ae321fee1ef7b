package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/raftfsm"
)

// testClock is a Clock whose wall time can jump while its monotonic time
// runs with the real one.
type testClock struct {
	start time.Time
	jump  atomic.Int64 // added to wall time only
}

func newTestClock() *testClock { return &testClock{start: time.Now()} }

func (c *testClock) Now() time.Time {
	return time.Now().Add(time.Duration(c.jump.Load()))
}
func (c *testClock) Monotonic() time.Duration { return time.Since(c.start) }

// startNode starts a one-node cluster on loopback ports in dir.
func startNode(t *testing.T, dir string, mod func(*Config)) *Node {
	t.Helper()
	cfg := Config{
		ID:                "n1",
		DataDir:           dir,
		RaftAddr:          "127.0.0.1:0",
		ElectionTimeout:   50 * time.Millisecond,
		HeartbeatInterval: 10 * time.Millisecond,
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	waitFor(t, 5*time.Second, "leadership", n.IsLeader)
	return n
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitRegistered waits until n has registered its own addresses in the
// log, which it does once, shortly after it starts.
// waitRegistered waits for the entries a lone node writes by itself after
// start: its addresses and the raise of the cluster's protocol version.
func waitRegistered(t *testing.T, n *Node) {
	t.Helper()
	waitFor(t, 5*time.Second, "registration and protocol version", func() bool {
		_, ok := n.fsm.Nodes()[n.cfg.ID]
		return ok && n.fsm.ClusterVersion() == raftfsm.ProtocolVersion
	})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestNodeLockLifecycle(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ctx := ctxT(t)
	l, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if l.Token == 0 || l.Version != 1 || l.Owner != "a" || l.Remaining <= 29*time.Second {
		t.Fatalf("acquire = %+v", l)
	}
	if _, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "b", TTL: time.Second}); !errors.Is(err, lockapi.ErrHeld) {
		t.Fatalf("second owner: err = %v, want ErrHeld", err)
	}
	again, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: 30 * time.Second})
	if err != nil || again.Token != l.Token || again.Version != 2 {
		t.Fatalf("same-owner re-acquire = %+v, %v; want token %d version 2", again, err, l.Token)
	}
	r, err := n.Renew(ctx, lockapi.RenewRequest{Key: "k", Owner: "a", TTL: time.Minute, Token: l.Token})
	if err != nil || r.Token != l.Token || r.Version != 3 || r.TTL != time.Minute {
		t.Fatalf("renew = %+v, %v", r, err)
	}
	if _, err := n.Renew(ctx, lockapi.RenewRequest{Key: "k", Owner: "a", TTL: time.Minute, Token: l.Token + 1}); !errors.Is(err, lockapi.ErrNotHeld) {
		t.Fatalf("renew with wrong token: err = %v, want ErrNotHeld", err)
	}
	info, err := n.Info(ctx, "k")
	if err != nil || info.Owner != "a" || info.Token != l.Token {
		t.Fatalf("info = %+v, %v", info, err)
	}
	list, err := n.List(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if err := n.Release(ctx, lockapi.ReleaseRequest{Key: "k", Owner: "b"}); !errors.Is(err, lockapi.ErrNotHeld) {
		t.Fatalf("release by stranger: %v", err)
	}
	if err := n.Release(ctx, lockapi.ReleaseRequest{Key: "k", Owner: "a", Token: l.Token}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Info(ctx, "k"); !errors.Is(err, lockapi.ErrNotFound) {
		t.Fatalf("info after release: %v", err)
	}
	if err := n.Release(ctx, lockapi.ReleaseRequest{Key: "k", Owner: "a"}); !errors.Is(err, lockapi.ErrNotFound) {
		t.Fatalf("second release: %v, want ErrNotFound", err)
	}
	next, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "b", TTL: time.Second})
	if err != nil || next.Token <= l.Token {
		t.Fatalf("next grant = %+v, %v; want a token above %d", next, err, l.Token)
	}
}

func TestNodeRejectsBadArguments(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) { c.MaxTTL = time.Minute })
	ctx := ctxT(t)
	// The node registers its own addresses in the log once after start.
	waitRegistered(t, n)
	before := n.fsm.AppliedIndex()
	for _, req := range []lockapi.AcquireRequest{
		{Key: "", Owner: "a", TTL: time.Second},
		{Key: "k", Owner: "", TTL: time.Second},
		{Key: "k", Owner: "a", TTL: 0},
		{Key: "k", Owner: "a", TTL: -time.Second},
		{Key: "k", Owner: "a", TTL: 2 * time.Minute},
		{Key: string(make([]byte, lockapi.MaxKeyLen+1)), Owner: "a", TTL: time.Second},
		{Key: "k", Owner: "a", TTL: time.Second, Wait: -1},
	} {
		if _, err := n.Acquire(ctx, req); !errors.Is(err, lockapi.ErrInvalid) {
			t.Errorf("Acquire(%q, %q, %s, wait %s) err = %v, want ErrInvalid", req.Key[:min(len(req.Key), 8)], req.Owner, req.TTL, req.Wait, err)
		}
	}
	if got := n.fsm.AppliedIndex(); got != before {
		t.Errorf("invalid requests reached the log: applied index %d, was %d", got, before)
	}
}

func TestNodeExpiresWithoutTraffic(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	waitRegistered(t, n)
	ctx := ctxT(t)
	if _, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the lock to expire", func() bool { return n.fsm.Len() == 0 })
	// Nothing is due now: the leader must not keep proposing entries.
	idx := n.fsm.AppliedIndex()
	time.Sleep(100 * time.Millisecond)
	if got := n.fsm.AppliedIndex(); got != idx {
		t.Fatalf("applied index moved from %d to %d with nothing due", idx, got)
	}
}

// While a lock is held and nothing is written, the leader still moves the
// state machine's cluster time along (Config.ClockCheckpoint), so that a new
// leader, which starts from it, does not hand every lock the quiet spell
// again; and a restart keeps the lock's remaining time, not its time at
// the last write.
func TestNodeCheckpointsClusterTimeWhileLocksAreHeld(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, nil)
	waitRegistered(t, n)
	if _, err := n.Acquire(ctxT(t), lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	t0 := n.fsm.Now()
	waitFor(t, 5*time.Second, "cluster time to move on without writes", func() bool {
		return n.fsm.Now() >= t0+2*defaultClockCheckpoint
	})
	quiet := n.fsm.Now() - t0
	n.Close()

	m := startNode(t, dir, nil)
	l, err := m.Info(ctxT(t), "k")
	if err != nil {
		t.Fatal(err)
	}
	if limit := time.Minute - quiet + defaultClockCheckpoint; l.Remaining > limit {
		t.Fatalf("remaining after %s without writes and a restart = %s, want at most %s", quiet, l.Remaining, limit)
	}
}

func TestNodeWallClockJumpDoesNotExpireLocks(t *testing.T) {
	clock := newTestClock()
	n := startNode(t, t.TempDir(), func(c *Config) { c.Clock = clock })
	ctx := ctxT(t)
	if _, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	clock.jump.Store(int64(time.Hour))
	time.Sleep(100 * time.Millisecond)
	l, err := n.Info(ctx, "k")
	if err != nil {
		t.Fatalf("lock gone after a wall-clock jump: %v", err)
	}
	if l.Remaining > 2*time.Second || l.Remaining < time.Second {
		t.Fatalf("remaining = %s after a 1h wall jump, want about 1.9s", l.Remaining)
	}
	if _, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "b", TTL: time.Second}); !errors.Is(err, lockapi.ErrHeld) {
		t.Fatalf("another owner got the lock after a wall-clock jump: %v", err)
	}
}

func TestNodeRestartKeepsLocks(t *testing.T) {
	for _, snapshot := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", snapshot), func(t *testing.T) {
			dir := t.TempDir()
			n := startNode(t, dir, nil)
			ctx := ctxT(t)
			l, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if snapshot {
				if err := n.raft.Snapshot().Error(); err != nil {
					t.Fatal(err)
				}
				// A log tail after the snapshot.
				if _, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k2", Owner: "b", TTL: time.Minute}); err != nil {
					t.Fatal(err)
				}
			}
			// The node registers its addresses in the log shortly after
			// start; compare states once that happened.
			waitRegistered(t, n)
			before := n.fsm.List()
			n.Close()

			m := startNode(t, dir, nil)
			got, err := m.Info(ctx, "k")
			if err != nil || got.Owner != "a" || got.Token != l.Token {
				t.Fatalf("after restart: %+v, %v; want owner a token %d", got, err, l.Token)
			}
			if got.Remaining < 50*time.Second {
				t.Fatalf("remaining TTL after restart = %s, want close to 1m", got.Remaining)
			}
			if after := m.fsm.List(); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("locks after restart differ:\n%+v\n%+v", before, after)
			}
			next, err := m.Acquire(ctx, lockapi.AcquireRequest{Key: "fresh", Owner: "c", TTL: time.Second})
			if err != nil || next.Token <= l.Token {
				t.Fatalf("grant after restart = %+v, %v; want token above %d", next, err, l.Token)
			}
		})
	}
}

func TestNodeWaitIsFIFO(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ctx := ctxT(t)
	holder, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "holder", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	const waiters = 5
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	for i := 0; i < waiters; i++ {
		owner := fmt.Sprintf("w%d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: owner, TTL: time.Minute, Wait: 5 * time.Second})
			if err != nil {
				t.Errorf("%s: %v", owner, err)
				return
			}
			mu.Lock()
			order = append(order, owner)
			mu.Unlock()
			if err := n.Release(ctx, lockapi.ReleaseRequest{Key: "k", Owner: owner, Token: l.Token}); err != nil {
				t.Errorf("%s release: %v", owner, err)
			}
		}()
		// Queue them in a known order.
		waitFor(t, 2*time.Second, "waiter queued", func() bool { return n.waits.count("k") == i+1 })
	}
	if err := n.Release(ctx, lockapi.ReleaseRequest{Key: "k", Owner: "holder", Token: holder.Token}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	want := "[w0 w1 w2 w3 w4]"
	if got := fmt.Sprint(order); got != want {
		t.Fatalf("grant order %s, want %s", got, want)
	}
}

func TestNodeWaitTimesOut(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ctx := ctxT(t)
	if _, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "b", TTL: time.Second, Wait: 150 * time.Millisecond})
	if !errors.Is(err, lockapi.ErrHeld) || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("err = %v after %s, want ErrHeld after the wait", err, time.Since(start))
	}
	if c := n.waits.count("k"); c != 0 {
		t.Fatalf("%d waiters left in the queue", c)
	}
}

func TestNodeWaitGetsExpiredLock(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ctx := ctxT(t)
	if _, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	l, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "b", TTL: time.Second, Wait: 3 * time.Second})
	if err != nil || l.Owner != "b" {
		t.Fatalf("waiter did not get the expired lock: %+v, %v", l, err)
	}
}

func TestNodeClusterInfo(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	info, err := n.ClusterInfo(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.LeaderID != "n1" || !info.HasQuorum || info.QuorumSize != 1 || len(info.Nodes) != 1 || info.Nodes[0].State != "leader" || info.Term == 0 {
		t.Fatalf("cluster info = %+v", info)
	}
}

// TestNodePlantedWallClockBug shows the wall-clock test above can fail: with
// the planted bug, the same jump expires the lock at once.
func TestNodePlantedWallClockBug(t *testing.T) {
	clock := newTestClock()
	n := startNode(t, t.TempDir(), func(c *Config) { c.Clock = clock; c.Unsafe.WallClockExpiry = true })
	ctx := ctxT(t)
	if _, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	clock.jump.Store(int64(time.Hour))
	waitFor(t, 5*time.Second, "the planted bug to expire the lock", func() bool {
		_, err := n.Info(ctx, "k")
		return errors.Is(err, lockapi.ErrNotFound)
	})
}

func TestRaftErrorOutcomes(t *testing.T) {
	tests := []struct {
		err  error
		want error
	}{
		{raft.ErrNotLeader, lockapi.ErrNoLeader},
		{raft.ErrEnqueueTimeout, lockapi.ErrTimeout},
		{raft.ErrLeadershipLost, lockapi.ErrUnknownOutcome},
		{raft.ErrRaftShutdown, lockapi.ErrUnknownOutcome},
	}
	for _, tt := range tests {
		if got := raftError(tt.err); !errors.Is(got, tt.want) {
			t.Errorf("raftError(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestNoPipelinedReplication: the raft transport refuses pipelines, so raft
// replicates one AppendEntries at a time (hashicorp/raft v1.8.0's pipeline
// can deadlock a follower's replication and Shutdown; see startRaft).
func TestNoPipelinedReplication(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	p, err := n.trans.AppendEntriesPipeline("peer", "127.0.0.1:1")
	if !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
		if p != nil {
			p.Close()
		}
		t.Fatalf("AppendEntriesPipeline: %v, want %v", err, raft.ErrPipelineReplicationNotSupported)
	}
}
