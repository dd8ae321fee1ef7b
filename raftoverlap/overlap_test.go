package raftoverlap

import (
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// fakeStore is a Store over raft's in-memory store that records how each
// batch was written, and whose durable index the test sets.
type fakeStore struct {
	*raft.InmemStore
	mu      sync.Mutex
	cond    *sync.Cond
	durable uint64
	fail    error
	syncErr error
	syncs   int
	writes  []string
}

func newFakeStore(durable uint64) *fakeStore {
	f := &fakeStore{InmemStore: raft.NewInmemStore(), durable: durable}
	f.cond = sync.NewCond(&f.mu)
	return f
}

func (f *fakeStore) StoreLogs(logs []*raft.Log) error {
	f.writes = append(f.writes, "sync")
	return f.InmemStore.StoreLogs(logs)
}

func (f *fakeStore) StoreLogsDeferred(logs []*raft.Log) error {
	f.writes = append(f.writes, "deferred")
	return f.InmemStore.StoreLogs(logs)
}

func (f *fakeStore) IsMonotonic() bool { return true }

func (f *fakeStore) Durable() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.durable
}

func (f *fakeStore) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncs++
	return f.syncErr
}

func (f *fakeStore) WaitDurable(index uint64) error {
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

// set changes the durable index and the failure WaitDurable reports.
func (f *fakeStore) set(durable uint64, fail error) {
	f.mu.Lock()
	f.durable, f.fail = durable, fail
	f.mu.Unlock()
	f.cond.Broadcast()
}

func TestLogStoreDefersOnlyTheLeadersCommands(t *testing.T) {
	commands := []*raft.Log{{Index: 1, Type: raft.LogCommand}, {Index: 2, Type: raft.LogNoop}}
	withConfig := []*raft.Log{{Index: 1, Type: raft.LogCommand}, {Index: 2, Type: raft.LogConfiguration}}
	tests := []struct {
		name    string
		leading bool
		logs    []*raft.Log
		want    string
	}{
		{"leader, commands", true, commands, "deferred"},
		{"leader, a configuration entry", true, withConfig, "sync"},
		{"follower, commands", false, commands, "sync"},
		{"follower, a configuration entry", false, withConfig, "sync"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newFakeStore(0)
			logs, err := LogStore(store, func() bool { return tt.leading }, 16)
			if err != nil {
				t.Fatal(err)
			}
			if err := logs.StoreLogs(tt.logs); err != nil {
				t.Fatal(err)
			}
			if err := logs.StoreLog(&raft.Log{Index: 3, Type: tt.logs[1].Type}); err != nil {
				t.Fatal(err)
			}
			if len(store.writes) != 2 || store.writes[0] != tt.want || store.writes[1] != tt.want {
				t.Fatalf("writes = %v, want %s twice", store.writes, tt.want)
			}
			if m, ok := logs.(raft.MonotonicLogStore); !ok || !m.IsMonotonic() {
				t.Fatal("not monotonic: raft would leave gaps after a snapshot install")
			}
		})
	}
}

func TestLogStoreSyncsBeforeAFollowerReads(t *testing.T) {
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
			store := newFakeStore(tt.durable)
			store.syncErr = tt.syncErr
			leading := true // the entries are written as leader: the cache holds them
			logs, err := LogStore(store, func() bool { return leading }, 16)
			if err != nil {
				t.Fatal(err)
			}
			if err := logs.StoreLogs([]*raft.Log{{Index: 1, Term: 1}, {Index: 2, Term: 1}}); err != nil {
				t.Fatal(err)
			}
			leading = tt.leading
			var got raft.Log
			err = logs.GetLog(2, &got)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("GetLog = %v, want %v", err, tt.wantErr)
			}
			if store.syncs != tt.wantSyncs {
				t.Fatalf("%d syncs, want %d", store.syncs, tt.wantSyncs)
			}
			if err == nil && got.Index != 2 {
				t.Fatalf("read index %d", got.Index)
			}
		})
	}
}

// countingFSM counts applied entries.
type countingFSM struct {
	mu      sync.Mutex
	applied []uint64
}

func (c *countingFSM) Apply(l *raft.Log) interface{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.applied = append(c.applied, l.Index)
	return l.Index
}

func (c *countingFSM) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.applied)
}

func (c *countingFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errors.New("no snapshots") }
func (c *countingFSM) Restore(io.ReadCloser) error         { return errors.New("no snapshots") }

// TestFSMWaitsForTheLog: an entry is applied only once the log is durable
// through it; if the log fails, failed answers instead of the state machine.
func TestFSMWaitsForTheLog(t *testing.T) {
	inner := &countingFSM{}
	store := newFakeStore(0)
	var failedWith error
	fsm := FSM(inner, store, func(l *raft.Log, err error) interface{} {
		failedWith = err
		return "refused"
	})
	applied := make(chan interface{}, 1)
	go func() { applied <- fsm.Apply(&raft.Log{Index: 1}) }()
	select {
	case r := <-applied:
		t.Fatalf("applied (%v) before the entry was durable", r)
	case <-time.After(50 * time.Millisecond):
	}
	if inner.count() != 0 {
		t.Fatal("the state machine saw the entry before it was durable")
	}
	store.set(1, nil)
	select {
	case r := <-applied:
		if r != uint64(1) {
			t.Fatalf("Apply = %v, want the state machine's answer", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Apply did not return once the entry was durable")
	}

	broken := errors.New("disk gone")
	store.set(1, broken)
	if r := fsm.Apply(&raft.Log{Index: 2}); r != "refused" || !errors.Is(failedWith, broken) {
		t.Fatalf("Apply with a failed log = %v (failed heard %v), want failed's answer", r, failedWith)
	}
	if inner.count() != 1 {
		t.Fatalf("the state machine applied %d entries, want 1", inner.count())
	}
	syncs := store.syncs
	if _, err := fsm.Snapshot(); err == nil || err.Error() != "no snapshots" {
		t.Fatalf("Snapshot = %v, want the state machine's", err)
	}
	if store.syncs != syncs+1 {
		t.Fatal("Snapshot did not make the log durable first")
	}
	store.syncErr = broken
	if _, err := fsm.Snapshot(); !errors.Is(err, broken) {
		t.Fatalf("Snapshot with a failed log = %v, want %v", err, broken)
	}
}

// TestTransportClampsTheCommitIndex: followers hear of a commit index no
// higher than the leader's durable index; the caller's request is left as
// it was; pipelines are refused.
func TestTransportClampsTheCommitIndex(t *testing.T) {
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
	clamp := Transport(leader, newFakeStore(5))
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
	// raft finds these by type assertion on the transport it is given:
	// the wrapper must keep those the network transport has.
	var inner raft.Transport = leader
	for name, has := range map[string]func(raft.Transport) bool{
		"WithClose":   func(t raft.Transport) bool { _, ok := t.(raft.WithClose); return ok },
		"WithPeers":   func(t raft.Transport) bool { _, ok := t.(raft.WithPeers); return ok },
		"WithPreVote": func(t raft.Transport) bool { _, ok := t.(raft.WithPreVote); return ok },
	} {
		if has(inner) && !has(clamp) {
			t.Errorf("the wrapped transport lost raft.%s", name)
		}
	}
}
