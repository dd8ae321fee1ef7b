package server

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/raftfsm"
	"github.com/distlock/distlock/raftoverlap"
)

// failingLog is a raftoverlap.Durability whose log failed.
type failingLog struct{ err error }

func (f failingLog) Durable() uint64                { return 0 }
func (f failingLog) Sync() error                    { return f.err }
func (f failingLog) WaitDurable(index uint64) error { return f.err }

func acquireEntry(index uint64, key string) *raft.Log {
	c := raftfsm.Command{Op: raftfsm.OpAcquire, Key: key, Owner: "o", TTL: time.Minute}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: raftfsm.Encode(nil, c)}
}

// TestHaltOnLogFailure: an entry the log cannot make durable halts the
// lock state machine instead of being applied, and the node hears of it.
func TestHaltOnLogFailure(t *testing.T) {
	fsm := raftfsm.New()
	var halted []error
	fsm.OnHalt(func(err error) { halted = append(halted, err) })
	broken := errors.New("disk gone")
	g := raftoverlap.FSM(fsm, failingLog{err: broken}, haltOnLogFailure(fsm))
	r := g.Apply(acquireEntry(1, "b"))
	if res, ok := r.(*raftfsm.Result); !ok || !errors.Is(res.Err, raftfsm.ErrHalted) || !errors.Is(res.Err, broken) {
		t.Fatalf("Apply with a failed log = %#v, want ErrHalted wrapping %v", r, broken)
	}
	if _, ok := fsm.Get("b"); ok {
		t.Fatal("lock b applied although its entry never became durable")
	}
	if len(halted) != 1 {
		t.Fatalf("OnHalt heard %d times, want once", len(halted))
	}
	if _, err := fsm.Snapshot(); !errors.Is(err, raftfsm.ErrHalted) {
		t.Fatalf("Snapshot of a halted state machine = %v, want ErrHalted", err)
	}
}

// TestAppliedEntriesAreDurableOnAMajority: while clients write through the
// leader, whose own fsyncs take 50 ms, every entry any node has applied is
// durable on a majority of the nodes' logs. One follower is stopped, so
// that every commit rests on the leader and the other follower, and raft's
// CommitTimeout (20 ms here) tells that follower of commits while the
// leader's fsync is still running. Durable indexes only grow here (nothing
// is truncated), so reading them after the applied index can only help. Each planted bug must be caught, or
// the check proves nothing.
func TestAppliedEntriesAreDurableOnAMajority(t *testing.T) {
	tests := []struct {
		name    string
		unsafe  func(*UnsafeHooks)
		wantBad string // who must be caught applying too early: "", "leader", "follower"
	}{
		{"correct", func(*UnsafeHooks) {}, ""},
		{"planted bug: the leader applies when raft commits",
			func(u *UnsafeHooks) { u.ApplyBeforeDurable = true }, "leader"},
		{"planted bug: followers hear raft's commit index",
			func(u *UnsafeHooks) { u.UnclampedCommit = true }, "follower"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCluster(t, 3, func(cfg *Config) {
				cfg.Unsafe.SlowLogSync = 50 * time.Millisecond
				tt.unsafe(&cfg.Unsafe)
			})
			lead := c.leader()
			c.stop(c.follower())
			bad, violation := writeAndCheckDurability(t, c, c.nodes[lead])
			role := ""
			switch {
			case bad == lead:
				role = "leader"
			case bad >= 0:
				role = "follower"
			}
			if role != tt.wantBad {
				t.Fatalf("caught %q applying early (%s), want %q", role, violation, tt.wantBad)
			}
			if violation != "" {
				t.Log(violation)
			}
		})
	}
}

// writeAndCheckDurability runs 4 writers of 10 acquire/release cycles each
// on lead and samples, until they finish, whether every running node's
// applied index is durable on a majority of the cluster's 3 nodes. It returns the first node seen applying
// an entry durable on fewer, and what it saw; -1 and "" if none.
func writeAndCheckDurability(t *testing.T, c *testCluster, lead *Node) (int, string) {
	ctx := ctxT(t)
	const writers, cycles = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("k%d", w)
			for range cycles {
				if _, err := lead.Acquire(ctx, lockapi.AcquireRequest{Key: key, Owner: "o", TTL: time.Minute}); err != nil {
					errs <- err
					return
				}
				if err := lead.Release(ctx, lockapi.ReleaseRequest{Key: key, Owner: "o"}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	bad, violation := -1, ""
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-time.After(50 * time.Microsecond):
		}
		for i, n := range c.nodes {
			if n == nil {
				continue
			}
			applied := n.fsm.AppliedIndex()
			durableOn := 0
			for _, m := range c.nodes {
				if m != nil && m.store.Durable() >= applied {
					durableOn++
				}
			}
			if durableOn < 2 && bad < 0 {
				bad, violation = i, fmt.Sprintf("n%d applied index %d, durable on %d of 3 nodes", i+1, applied, durableOn)
			}
		}
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return bad, violation
}
