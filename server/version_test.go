package server

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/raftfsm"
)

// commandEntries returns the state machine entries of n's log after index
// from.
func commandEntries(t *testing.T, n *Node, from uint64) []raft.Log {
	t.Helper()
	first, err := n.store.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := n.store.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	var out []raft.Log
	for i := max(first, from+1); i <= last; i++ {
		var e raft.Log
		if err := n.store.GetLog(i, &e); err != nil {
			t.Fatal(err)
		}
		if e.Type == raft.LogCommand {
			out = append(out, e)
		}
	}
	return out
}

// batchEntries counts the batch entries in n's log.
func batchEntries(t *testing.T, n *Node) int {
	t.Helper()
	count := 0
	for _, e := range commandEntries(t, n, 0) {
		if raftfsm.IsBatch(e.Data) {
			count++
		}
	}
	return count
}

// acquireConcurrently takes clients locks at once through n and checks
// that every grant got its own token, the one LOCK.INFO shows.
func acquireConcurrently(t *testing.T, n *Node, prefix string, clients int) {
	t.Helper()
	ctx := ctxT(t)
	locks := make([]lockapi.Lock, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			locks[i], errs[i] = n.Acquire(ctx, lockapi.AcquireRequest{Key: fmt.Sprintf("%s-%d", prefix, i), Owner: "o", TTL: time.Minute})
		}()
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for i, l := range locks {
		if errs[i] != nil {
			t.Fatalf("acquire %d: %v", i, errs[i])
		}
		if seen[l.Token] {
			t.Fatalf("token %d granted twice", l.Token)
		}
		seen[l.Token] = true
		info, err := n.Info(ctx, l.Key)
		if err != nil || info.Token != l.Token || info.Owner != "o" {
			t.Fatalf("Info(%s) = %+v, %v; acquire answered token %d", l.Key, info, err, l.Token)
		}
	}
}

// TestClusterVersionWaitsForEveryVoter: one voter announcing protocol
// version 1 (as an older build) keeps the cluster at 1 and the leader
// writes no batch entry; once it runs this build, the cluster moves to 2
// and the leader packs concurrent commands.
func TestClusterVersionWaitsForEveryVoter(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		if cfg.ID == "n3" {
			cfg.Unsafe.ProtocolVersion = 1
		}
	})
	l := c.nodes[c.leader()]
	waitFor(t, 10*time.Second, "every node registered", func() bool { return len(l.fsm.Nodes()) == 3 })
	// Registration and the raise share one loop: several of its rounds pass.
	time.Sleep(4 * 2 * c.cfgs[0].ElectionTimeout)
	for _, n := range c.nodes {
		if v := n.fsm.ClusterVersion(); v != 1 {
			t.Fatalf("%s: cluster version %d with a voter at 1", n.cfg.ID, v)
		}
	}
	acquireConcurrently(t, l, "v1", 64)
	if got := batchEntries(t, l); got != 0 {
		t.Fatalf("%d batch entries under protocol version 1", got)
	}

	c.stop(2)
	c.cfgs[2].Unsafe.ProtocolVersion = 0
	c.start(2)
	waitFor(t, 10*time.Second, "the cluster at protocol version 2", func() bool {
		for _, n := range c.nodes {
			if n.fsm.ClusterVersion() != raftfsm.ProtocolVersion {
				return false
			}
		}
		return true
	})
	l = c.nodes[c.leader()]
	for round := 0; batchEntries(t, l) == 0; round++ {
		if round == 20 {
			t.Fatal("20 rounds of 64 concurrent acquires and not one batch entry")
		}
		acquireConcurrently(t, l, fmt.Sprintf("v2-%d", round), 64)
	}
	waitFor(t, 10*time.Second, "the replicas to converge", func() bool {
		return c.nodes[0].fsm.AppliedIndex() == c.nodes[1].fsm.AppliedIndex() && c.nodes[1].fsm.AppliedIndex() == c.nodes[2].fsm.AppliedIndex()
	})
	want := snapshotOf(t, c.nodes[0])
	for _, n := range c.nodes[1:] {
		if got := snapshotOf(t, n); got != want {
			t.Fatalf("%s's state differs from n1's", n.cfg.ID)
		}
	}
}

func snapshotOf(t *testing.T, n *Node) string {
	t.Helper()
	var b bytes.Buffer
	if err := n.fsm.WriteSnapshot(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestJoinAtProtocolVersion1: while a member runs version 1 (so the
// cluster stays there), a node announcing version 1 joins.
func TestJoinAtProtocolVersion1(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.Unsafe.ProtocolVersion = 1 })
	n1 := c.nodes[0]
	waitFor(t, 5*time.Second, "registration", func() bool { return len(n1.fsm.Nodes()) == 1 })
	addr := freeAddr(t)
	cfg := c.cfgs[0]
	cfg.ID, cfg.DataDir, cfg.RaftAddr, cfg.RaftAdvertise, cfg.Join, cfg.Peers = "old", t.TempDir(), addr, addr, n1.RaftAddr(), nil
	n2, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n2.Close() })
	waitFor(t, 10*time.Second, "the version 1 node to join", func() bool { return len(n1.raft.GetConfiguration().Configuration().Servers) == 2 })
	if v := n1.fsm.ClusterVersion(); v != 1 {
		t.Fatalf("cluster version %d with every member at 1", v)
	}
}

// TestJoinRefusesOlderNode: once the cluster runs protocol version 2, a
// node announcing 1 is not added, whether it asks itself or an operator
// adds it; a node of this build is.
func TestJoinRefusesOlderNode(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	n1 := c.nodes[0]
	waitRegistered(t, n1)
	ctx := ctxT(t)

	if err := n1.Join(ctx, "ghost", freeAddr(t)); !errors.Is(err, lockapi.ErrInvalid) {
		t.Fatalf("joining a node that cannot be asked its version: %v, want ErrInvalid", err)
	}
	joiner := func(id string, version uint64) *Node {
		addr := freeAddr(t)
		cfg := c.cfgs[0]
		cfg.ID, cfg.DataDir, cfg.RaftAddr, cfg.RaftAdvertise, cfg.Join = id, t.TempDir(), addr, addr, n1.RaftAddr()
		cfg.Peers = nil
		cfg.Unsafe.ProtocolVersion = version
		n, err := Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	old := joiner("old", 1)
	if err := n1.Join(ctx, "old", old.RaftAddr()); !errors.Is(err, lockapi.ErrInvalid) {
		t.Fatalf("an operator adding a version 1 node: %v, want ErrInvalid", err)
	}
	joiner("new", 0)
	waitFor(t, 10*time.Second, "the new node to join", func() bool { return len(n1.raft.GetConfiguration().Configuration().Servers) == 2 })
	for _, s := range n1.raft.GetConfiguration().Configuration().Servers {
		if s.ID == "old" {
			t.Fatal("the version 1 node joined")
		}
	}
}

// TestNodeHaltsOnNewerEntry: an entry this build cannot read stops the node
// (Failed, Err) instead of being skipped, and it stops again at the same
// entry after a restart.
func TestNodeHaltsOnNewerEntry(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, nil)
	waitRegistered(t, n)
	if _, err := n.Acquire(ctxT(t), lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	// As a newer leader would write it: an operation this build lacks.
	n.raft.Apply([]byte{1, 200, 0, 0, 0, 0, 0}, time.Second)
	select {
	case <-n.Failed():
	case <-time.After(10 * time.Second):
		t.Fatal("the node did not stop on an entry it cannot apply")
	}
	if err := n.Err(); !errors.Is(err, raftfsm.ErrHalted) || !errors.Is(err, raftfsm.ErrNewerFormat) {
		t.Fatalf("Err = %v, want ErrHalted wrapping ErrNewerFormat", err)
	}
	if _, err := n.Acquire(ctxT(t), lockapi.AcquireRequest{Key: "k2", Owner: "a", TTL: time.Minute}); err == nil {
		t.Fatal("a halted node granted a lock")
	}
	n.Close()

	again, err := Start(Config{ID: "n1", DataDir: dir, RaftAddr: "127.0.0.1:0", ElectionTimeout: 50 * time.Millisecond,
		HeartbeatInterval: 10 * time.Millisecond, Logger: n.cfg.Logger})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	select {
	case <-again.Failed():
	case <-time.After(10 * time.Second):
		t.Fatal("after a restart the node went past the entry it cannot apply")
	}
	if l, ok := again.fsm.Get("k"); !ok || l.Owner != "a" {
		t.Fatalf("state before the entry lost: %+v, %v", l, ok)
	}
}
