package walstore

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// listFSM appends every command to a list.
type listFSM struct {
	mu   sync.Mutex
	vals []string
}

func (f *listFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vals = append(f.vals, string(l.Data))
	return len(f.vals)
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return listSnapshot(slices.Clone(f.vals)), nil
}

func (f *listFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var vals []string
	if err := json.NewDecoder(rc).Decode(&vals); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vals = vals
	return nil
}

func (f *listFSM) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.vals)
}

type listSnapshot []string

func (s listSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode([]string(s)); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (listSnapshot) Release() {}

type raftNode struct {
	id    raft.ServerID
	addr  raft.ServerAddress
	trans *raft.InmemTransport
	store *Store
	fsm   *listFSM
	raft  *raft.Raft
	conf  *raft.Config
	snaps raft.SnapshotStore
}

// start runs raft on the node's store.
func (n *raftNode) start(t *testing.T) {
	t.Helper()
	r, err := raft.NewRaft(n.conf, n.fsm, n.store, n.store, n.snaps, n.trans)
	if err != nil {
		t.Fatal(err)
	}
	n.raft = r
	t.Cleanup(func() { r.Shutdown().Error() })
}

// TestRaftInstallSnapshot runs three raft nodes on this store. One follower
// is cut off until the leader has compacted past it, so that on reconnecting
// it must install a snapshot, which makes raft delete its whole log and
// continue after the snapshot index (a gap the store must accept).
func TestRaftInstallSnapshot(t *testing.T) {
	nodes := make([]*raftNode, 3)
	var servers []raft.Server
	for i := range nodes {
		addr, trans := raft.NewInmemTransport("")
		nodes[i] = &raftNode{id: raft.ServerID(fmt.Sprintf("n%d", i)), addr: addr, trans: trans, fsm: &listFSM{}}
		servers = append(servers, raft.Server{ID: nodes[i].id, Address: addr})
	}
	connectAll := func() {
		for _, a := range nodes {
			for _, b := range nodes {
				if a != b {
					a.trans.Connect(b.addr, b.trans)
				}
			}
		}
	}
	connectAll()
	for i, n := range nodes {
		conf := raft.DefaultConfig()
		conf.LocalID = n.id
		conf.HeartbeatTimeout = 50 * time.Millisecond
		conf.ElectionTimeout = 50 * time.Millisecond
		conf.LeaderLeaseTimeout = 50 * time.Millisecond
		conf.CommitTimeout = 5 * time.Millisecond
		conf.SnapshotThreshold = 16
		conf.SnapshotInterval = 20 * time.Millisecond
		conf.TrailingLogs = 4
		conf.Logger = hclog.New(&hclog.LoggerOptions{Name: string(n.id), Level: hclog.Error, Output: io.Discard})
		n.conf, n.snaps = conf, raft.NewInmemSnapshotStore()
		n.store = openT(t, t.TempDir(), &Options{Logger: quietLogger()})
		if i == 0 {
			if err := raft.BootstrapCluster(conf, n.store, n.store, n.snaps, n.trans, raft.Configuration{Servers: servers}); err != nil {
				t.Fatal(err)
			}
		}
		n.start(t)
	}

	var leader *raftNode
	waitFor(t, 10*time.Second, "a leader", func() bool {
		for _, n := range nodes {
			if n.raft.State() == raft.Leader {
				leader = n
				return true
			}
		}
		return false
	})
	next := 0
	apply := func(count int) {
		t.Helper()
		for range count {
			next++
			if err := leader.raft.Apply([]byte(fmt.Sprint(next)), 5*time.Second).Error(); err != nil {
				t.Fatalf("Apply %d: %v", next, err)
			}
		}
	}
	apply(20)

	var lag *raftNode
	for _, n := range nodes {
		if n != leader {
			lag = n
			break
		}
	}
	waitFor(t, 10*time.Second, "follower to catch up", func() bool { return len(lag.fsm.list()) == next })
	lagLast, _ := lag.store.LastIndex()

	// Cut the follower off in both directions.
	lag.trans.DisconnectAll()
	for _, n := range nodes {
		if n != lag {
			n.trans.Disconnect(lag.addr)
		}
	}
	apply(100)
	waitFor(t, 10*time.Second, "leader to compact past the follower", func() bool {
		first, _ := leader.store.FirstIndex()
		return first > lagLast+1
	})
	if leader.raft.State() != raft.Leader {
		t.Fatal("leader lost leadership while the follower was cut off")
	}

	connectAll()
	apply(10)
	want := leader.fsm.list()
	waitFor(t, 15*time.Second, "follower to converge", func() bool { return slices.Equal(lag.fsm.list(), want) })
	for _, n := range nodes {
		waitFor(t, 10*time.Second, "every node to converge", func() bool { return slices.Equal(n.fsm.list(), want) })
	}

	// The leader no longer had the entries after lagLast, so the follower
	// can only have converged by installing a snapshot, after which raft
	// deleted its whole log. New entries must land after the snapshot index,
	// beyond everything it held before the partition.
	apply(10)
	want = leader.fsm.list()
	waitFor(t, 10*time.Second, "follower to apply new entries", func() bool { return slices.Equal(lag.fsm.list(), want) })
	first, _ := lag.store.FirstIndex()
	last, _ := lag.store.LastIndex()
	if first <= lagLast+1 {
		t.Fatalf("follower log starts at %d; it held up to %d before, so no snapshot was installed", first, lagLast)
	}
	if last < first || last <= lagLast {
		t.Fatalf("follower log [%d, %d] after new entries", first, last)
	}
	// Its entries agree with the leader's where both still have them.
	lf, _ := leader.store.FirstIndex()
	for i := max(first, lf); i <= last; i++ {
		var a, b raft.Log
		if err := lag.store.GetLog(i, &a); err != nil {
			t.Fatalf("follower GetLog(%d): %v", i, err)
		}
		if err := leader.store.GetLog(i, &b); err != nil {
			t.Fatalf("leader GetLog(%d): %v", i, err)
		}
		if d := diffLog(&b, &a); d != "" {
			t.Fatalf("index %d differs between leader and follower: %s", i, d)
		}
	}
	t.Logf("follower held [.., %d] before the partition; after the snapshot install [%d, %d]", lagLast, first, last)

	// Restart the follower on its directory with an empty FSM: raft must
	// recover term, vote and log from the store and rebuild the same state.
	term, err := lag.store.GetUint64([]byte("CurrentTerm"))
	if err != nil || term == 0 {
		t.Fatalf("CurrentTerm = %d, %v", term, err)
	}
	if err := lag.raft.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	lag.store = reopen(t, lag.store)
	if got, _ := lag.store.GetUint64([]byte("CurrentTerm")); got != term {
		t.Fatalf("CurrentTerm after reopen = %d, want %d", got, term)
	}
	lag.fsm = &listFSM{}
	lag.start(t)
	apply(10)
	want = leader.fsm.list()
	waitFor(t, 10*time.Second, "restarted follower to converge", func() bool { return slices.Equal(lag.fsm.list(), want) })
}
