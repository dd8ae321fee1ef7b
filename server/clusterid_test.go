package server

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/raftfsm"
	"github.com/distlock/distlock/walstore"
)

// waitClusterID waits until every node of c has applied the raise to this
// build's protocol version and kept the cluster id it set, and returns it.
func waitClusterID(t *testing.T, c *testCluster) string {
	t.Helper()
	id := ""
	waitFor(t, 10*time.Second, "one cluster id on every node, stored", func() bool {
		id = c.nodes[0].fsm.ClusterID()
		for _, n := range c.nodes {
			if p := n.storedID.Load(); n.fsm.ClusterVersion() != raftfsm.ProtocolVersion || id == "" ||
				n.fsm.ClusterID() != id || p == nil || *p != id {
				return false
			}
		}
		return true
	})
	return id
}

// TestClusterIDKeepsClustersApart: two clusters get ids of their own; a
// node of one cannot be joined to the other, and when the other's leader
// is told to replicate to it anyway (a --peers that names the wrong
// node), its raft port refuses: it keeps its cluster's state and leader.
// A restarted node knows its id before it has applied anything.
func TestClusterIDKeepsClustersApart(t *testing.T) {
	a, b := newTestCluster(t, 3, nil), newTestCluster(t, 3, nil)
	idA, idB := waitClusterID(t, a), waitClusterID(t, b)
	if idA == idB || len(idA) != 32 {
		t.Fatalf("cluster ids %q and %q", idA, idB)
	}
	la, lb := a.nodes[a.leader()], b.nodes[b.leader()]
	ctx := ctxT(t)
	if _, err := la.Acquire(ctx, lockapi.AcquireRequest{Key: "only-in-a", Owner: "o", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	var stray *Node // a follower of b
	for _, n := range b.nodes {
		if n != lb {
			stray = n
		}
	}
	err := la.Join(ctx, "stray", stray.RaftAddr())
	if !errors.Is(err, lockapi.ErrInvalid) || !strings.Contains(err.Error(), "another cluster") {
		t.Fatalf("joining a node of another cluster: %v, want ErrInvalid naming another cluster", err)
	}
	termB := lb.raft.CurrentTerm()
	if err := la.raft.AddVoter("stray", raft.ServerAddress(stray.RaftAddr()), 0, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	// a's leader now sends it heartbeats and entries; give them time to land.
	time.Sleep(40 * a.cfgs[0].HeartbeatInterval)
	if _, held := stray.fsm.Get("only-in-a"); held {
		t.Fatal("a node of cluster b applied an entry of cluster a")
	}
	if stray.fsm.ClusterID() != idB || stray.raft.CurrentTerm() != termB || !lb.IsLeader() {
		t.Fatalf("the stray node: id %s, term %d (b's was %d); b's leader still leads: %v",
			stray.fsm.ClusterID(), stray.raft.CurrentTerm(), termB, lb.IsLeader())
	}
	if _, err := lb.Acquire(ctx, lockapi.AcquireRequest{Key: "b-still-works", Owner: "o", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	// A raft connection that announces no id, as a node of a cluster with
	// none yet would open it, naming a member: refused too.
	conn, err := net.DialTimeout("tcp", stray.RaftAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(firstRPC(t, "n1")); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a raft connection without a cluster id: read %v, want it closed", err)
	}

	i := 0
	for a.nodes[i] == la {
		i++
	}
	a.stop(i)
	a.start(i)
	if got := a.nodes[i].clusterID(); got != idA {
		t.Fatalf("restarted, %s knows cluster id %q at once, want %q", a.nodes[i].cfg.ID, got, idA)
	}
}

// TestStartClusterIDReadsTheLog: a node that crashed after it applied the
// raise but before it stored the id finds the id in its log at start.
func TestStartClusterIDReadsTheLog(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, nil)
	waitRegistered(t, n)
	id := n.fsm.ClusterID()
	waitFor(t, 5*time.Second, "the id stored", func() bool { p := n.storedID.Load(); return p != nil && *p == id })
	n.Close()

	store, err := walstore.Open(filepath.Join(dir, "n1", "raft"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	snaps, err := raft.NewFileSnapshotStore(filepath.Join(dir, "n1"), snapshotsRetained, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		stored string
		want   string
	}{{"stored", id, id}, {"not stored", "", id}, {"stored, another", "other", "other"}} {
		if err := store.Set([]byte(clusterIDKey), []byte(tt.stored)); err != nil {
			t.Fatal(err)
		}
		if got, err := startClusterID(store, snaps); err != nil || got != tt.want {
			t.Errorf("%s: startClusterID = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

// TestClusterVersionRisesToWhatEveryVoterRuns: with a voter announcing
// version 2 the cluster rises to 2, not to this build's 3, and has no id
// (nodes announce none); once that voter runs this build it rises to 3,
// and every node has the same id.
func TestClusterVersionRisesToWhatEveryVoterRuns(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		if cfg.ID == "n3" {
			cfg.Unsafe.ProtocolVersion = 2
		}
	})
	waitFor(t, 10*time.Second, "the cluster at protocol version 2", func() bool {
		for _, n := range c.nodes {
			if n.fsm.ClusterVersion() != 2 {
				return false
			}
		}
		return true
	})
	time.Sleep(4 * 2 * c.cfgs[0].ElectionTimeout) // rounds of the raise loop
	for _, n := range c.nodes {
		if v, id := n.fsm.ClusterVersion(), n.clusterID(); v != 2 || id != "" {
			t.Fatalf("%s: cluster version %d, id %q with a voter at 2", n.cfg.ID, v, id)
		}
	}
	c.stop(2)
	c.cfgs[2].Unsafe.ProtocolVersion = 0
	c.start(2)
	waitClusterID(t, c)
}
