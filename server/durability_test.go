package server

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/raftfsm"
)

// fakeDurable is a durableLog whose durable index the test sets, and whose
// WaitDurable waits for it (or returns fail).
type fakeDurable struct {
	mu      sync.Mutex
	cond    *sync.Cond
	durable uint64
	fail    error
	syncs   int
	syncErr error
}

func newFakeDurable(d uint64) *fakeDurable {
	f := &fakeDurable{durable: d}
	f.cond = sync.NewCond(&f.mu)
	return f
}

func (f *fakeDurable) Durable() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.durable
}

func (f *fakeDurable) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncs++
	return f.syncErr
}

func (f *fakeDurable) WaitDurable(index uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.durable < index && f.fail == nil {
		f.cond.Wait()
	}
	if f.durable >= index {
		return nil
	}
	return f.fail
}

func (f *fakeDurable) set(d uint64, fail error) {
	f.mu.Lock()
	f.durable, f.fail = d, fail
	f.mu.Unlock()
	f.cond.Broadcast()
}

// recordingLogStore is a deferringLogStore that records how each batch was
// written.
type recordingLogStore struct {
	*raft.InmemStore
	calls []string
}

func (r *recordingLogStore) StoreLogs(logs []*raft.Log) error {
	r.calls = append(r.calls, "sync")
	return r.InmemStore.StoreLogs(logs)
}

func (r *recordingLogStore) StoreLogsDeferred(logs []*raft.Log) error {
	r.calls = append(r.calls, "deferred")
	return r.InmemStore.StoreLogs(logs)
}

func (r *recordingLogStore) IsMonotonic() bool { return true }

func TestAppendStoreDefersOnlyTheLeadersCommands(t *testing.T) {
	command := []*raft.Log{{Index: 1, Type: raft.LogCommand}, {Index: 2, Type: raft.LogNoop}}
	withConfig := []*raft.Log{{Index: 1, Type: raft.LogCommand}, {Index: 2, Type: raft.LogConfiguration}}
	tests := []struct {
		name    string
		leading bool
		logs    []*raft.Log
		want    string
	}{
		{"leader, commands", true, command, "deferred"},
		{"leader, a configuration entry", true, withConfig, "sync"},
		{"follower, commands", false, command, "sync"},
		{"follower, a configuration entry", false, withConfig, "sync"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recordingLogStore{InmemStore: raft.NewInmemStore()}
			a := appendStore{deferringLogStore: rec, leading: func() bool { return tt.leading }}
			if err := a.StoreLogs(tt.logs); err != nil {
				t.Fatal(err)
			}
			if err := a.StoreLog(&raft.Log{Index: 3, Type: tt.logs[1].Type}); err != nil {
				t.Fatal(err)
			}
			if len(rec.calls) != 2 || rec.calls[0] != tt.want || rec.calls[1] != tt.want {
				t.Fatalf("writes = %v, want %s twice", rec.calls, tt.want)
			}
		})
	}
}

func TestFollowerLogSyncsBeforeReading(t *testing.T) {
	failed := errors.New("fsync failed")
	tests := []struct {
		name      string
		leading   bool
		durable   uint64
		syncErr   error
		wantSyncs int
		wantErr   error
	}{
		{"follower, entry not durable", false, 1, nil, 1, nil},
		{"follower, entry durable", false, 2, nil, 0, nil},
		{"leader, entry not durable", true, 1, nil, 0, nil},
		{"follower, sync fails", false, 1, failed, 1, failed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := raft.NewInmemStore()
			if err := mem.StoreLogs([]*raft.Log{{Index: 1, Term: 1}, {Index: 2, Term: 1}}); err != nil {
				t.Fatal(err)
			}
			d := newFakeDurable(tt.durable)
			d.syncErr = tt.syncErr
			f := followerLog{LogStore: mem, store: d, leading: func() bool { return tt.leading }}
			var got raft.Log
			err := f.GetLog(2, &got)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("GetLog = %v, want %v", err, tt.wantErr)
			}
			if d.syncs != tt.wantSyncs {
				t.Fatalf("%d syncs, want %d", d.syncs, tt.wantSyncs)
			}
			if err == nil && got.Index != 2 {
				t.Fatalf("read index %d", got.Index)
			}
			if !f.IsMonotonic() {
				t.Fatal("not monotonic: raft would leave gaps after a snapshot install")
			}
		})
	}
}

func acquireEntry(index uint64, key string) *raft.Log {
	c := raftfsm.Command{Op: raftfsm.OpAcquire, Key: key, Owner: "o", TTL: time.Minute}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: raftfsm.Encode(nil, c)}
}

// TestDurableFSMWaitsForTheLog: an entry is applied only once the log is
// durable through it; if the log fails, the state machine halts instead.
func TestDurableFSMWaitsForTheLog(t *testing.T) {
	fsm := raftfsm.New()
	var halted []error
	fsm.OnHalt(func(err error) { halted = append(halted, err) })
	d := newFakeDurable(0)
	g := durableFSM{FSM: fsm, store: d}

	applied := make(chan interface{}, 1)
	go func() { applied <- g.Apply(acquireEntry(1, "a")) }()
	select {
	case r := <-applied:
		t.Fatalf("applied %v before the entry was durable", r)
	case <-time.After(50 * time.Millisecond):
	}
	if _, ok := fsm.Get("a"); ok {
		t.Fatal("the lock exists before the entry was durable")
	}
	d.set(1, nil)
	select {
	case r := <-applied:
		if res, ok := r.(*raftfsm.Result); !ok || res.Err != nil {
			t.Fatalf("Apply = %#v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Apply did not return once the entry was durable")
	}
	if _, ok := fsm.Get("a"); !ok {
		t.Fatal("lock a not applied")
	}

	broken := errors.New("disk gone")
	d.set(1, broken)
	r := g.Apply(acquireEntry(2, "b"))
	if res, ok := r.(*raftfsm.Result); !ok || !errors.Is(res.Err, raftfsm.ErrHalted) || !errors.Is(res.Err, broken) {
		t.Fatalf("Apply with a failed log = %#v, want ErrHalted wrapping %v", r, broken)
	}
	if _, ok := fsm.Get("b"); ok {
		t.Fatal("lock b applied although its entry never became durable")
	}
	if len(halted) != 1 {
		t.Fatalf("OnHalt heard %d times, want once", len(halted))
	}
	if _, err := g.Snapshot(); !errors.Is(err, raftfsm.ErrHalted) {
		t.Fatalf("Snapshot of a halted state machine = %v, want ErrHalted", err)
	}
}

// TestCommitClampTransport: followers hear of a commit index no higher than
// the leader's durable index; the caller's request is left as it was.
func TestCommitClampTransport(t *testing.T) {
	newTrans := func() *raft.NetworkTransport {
		tr, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 5*time.Second, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	leader, follower := newTrans(), newTrans()
	got := make(chan uint64, 10)
	go func() {
		for rpc := range follower.Consumer() {
			if req, ok := rpc.Command.(*raft.AppendEntriesRequest); ok {
				got <- req.LeaderCommitIndex
			}
			rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: true}, nil)
		}
	}()
	d := newFakeDurable(5)
	clamp := &commitClampTransport{NetworkTransport: leader, store: d}
	tests := []struct{ commit, want uint64 }{{9, 5}, {5, 5}, {3, 3}, {0, 0}}
	for _, tt := range tests {
		req := &raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ID: []byte("leader"), Addr: []byte(leader.LocalAddr())},
			Term:      1, PrevLogEntry: 1, PrevLogTerm: 1,
			Entries:           []*raft.Log{{Index: 2, Term: 1}},
			LeaderCommitIndex: tt.commit,
		}
		var resp raft.AppendEntriesResponse
		if err := clamp.AppendEntries("f", follower.LocalAddr(), req, &resp); err != nil {
			t.Fatal(err)
		}
		select {
		case c := <-got:
			if c != tt.want {
				t.Errorf("commit %d with durable 5 reached the follower as %d, want %d", tt.commit, c, tt.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the follower got nothing")
		}
		if req.LeaderCommitIndex != tt.commit {
			t.Errorf("the caller's request was changed to %d", req.LeaderCommitIndex)
		}
	}
	if _, err := clamp.AppendEntriesPipeline("f", follower.LocalAddr()); !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
		t.Fatalf("AppendEntriesPipeline = %v, want ErrPipelineReplicationNotSupported", err)
	}
}

// TestAppliedEntriesAreDurableOnAMajority: while clients write through the
// leader, whose own fsyncs take 50 ms, every entry any node has applied is
// durable on a majority of the nodes' logs. One follower is stopped, so
// that every commit rests on the leader and the other follower, and raft's
// CommitTimeout (20 ms here) tells that follower of commits while the
// leader's fsync is still running. Durable indexes only grow, so reading them
// after the applied index can only help. Each planted bug must be caught, or
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
