package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/lockapi"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	return freeAddrs(t, 1)[0]
}

// freeAddrs returns n free loopback addresses never returned before in
// this process: the kernel may hand a just-closed port out again.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	addrs := make([]string, 0, n)
	for tries := 0; len(addrs) < n; tries++ {
		if tries == 100*n {
			t.Fatal("no unused free port")
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if _, taken := handedOut.LoadOrStore(addr, true); !taken {
			addrs = append(addrs, addr)
		}
	}
	return addrs
}

// handedOut holds every address freeAddrs returned in this process.
var handedOut sync.Map

// testCluster is n in-process nodes on loopback.
type testCluster struct {
	t     *testing.T
	cfgs  []Config
	nodes []*Node
}

func newTestCluster(t *testing.T, size int, mod func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	addrs := freeAddrs(t, size)
	for i := 0; i < size; i++ {
		cfg := Config{
			ID:                fmt.Sprintf("n%d", i+1),
			DataDir:           t.TempDir(),
			RaftAddr:          addrs[i],
			RaftAdvertise:     addrs[i],
			HTTPAddr:          "127.0.0.1:0",
			ElectionTimeout:   100 * time.Millisecond,
			HeartbeatInterval: 20 * time.Millisecond,
			Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		}
		for j := 0; j < size; j++ {
			if j != i {
				cfg.Peers = append(cfg.Peers, Peer{ID: fmt.Sprintf("n%d", j+1), Addr: addrs[j]})
			}
		}
		if mod != nil {
			mod(&cfg)
		}
		c.cfgs = append(c.cfgs, cfg)
		c.nodes = append(c.nodes, nil)
	}
	t.Cleanup(func() { // registered first: a node that started is closed even if a later one fails
		for _, n := range c.nodes {
			if n != nil {
				n.Close()
			}
		}
	})
	for i := range c.cfgs {
		c.start(i)
	}
	return c
}

func (c *testCluster) start(i int) {
	c.t.Helper()
	n, err := Start(c.cfgs[i])
	if err != nil {
		c.t.Fatal(err)
	}
	c.nodes[i] = n
}

func (c *testCluster) stop(i int) {
	c.nodes[i].Close()
	c.nodes[i] = nil
}

// leader waits for exactly one ready leader among the running nodes.
func (c *testCluster) leader() int {
	c.t.Helper()
	idx := -1
	waitFor(c.t, 10*time.Second, "a single ready leader", func() bool {
		idx = -1
		for i, n := range c.nodes {
			if n != nil && n.IsLeader() {
				if idx >= 0 {
					return false
				}
				idx = i
			}
		}
		return idx >= 0
	})
	return idx
}

func (c *testCluster) follower() int {
	l := c.leader()
	for i, n := range c.nodes {
		if n != nil && i != l {
			return i
		}
	}
	c.t.Fatal("no follower")
	return -1
}

func TestClusterForwardingAndFailover(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := ctxT(t)
	lead := c.leader()
	f := c.follower()
	l, err := c.nodes[f].Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: 5 * time.Second})
	if err != nil {
		t.Fatalf("acquire through a follower: %v", err)
	}
	if _, err := c.nodes[f].Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "b", TTL: time.Second}); !errors.Is(err, lockapi.ErrHeld) {
		t.Fatalf("forwarded acquire of a held lock: %v, want ErrHeld", err)
	}
	for i := range c.nodes {
		info, err := c.nodes[i].Info(ctx, "k")
		if err != nil || info.Owner != "a" || info.Token != l.Token {
			t.Fatalf("info through node %d: %+v, %v", i, info, err)
		}
	}
	// Every node learns every node's client addresses.
	waitFor(t, 5*time.Second, "addresses of every node", func() bool {
		ci, err := c.nodes[f].ClusterInfo(ctx)
		if err != nil || len(ci.Nodes) != 3 {
			return false
		}
		for _, n := range ci.Nodes {
			if n.HTTPAddr == "" {
				return false
			}
		}
		return ci.LeaderID == c.cfgs[lead].ID && ci.HasQuorum && ci.QuorumSize == 2
	})

	killed := time.Now()
	c.stop(lead)
	newLead := c.leader()
	t.Logf("new leader %s after %s", c.cfgs[newLead].ID, time.Since(killed).Round(time.Millisecond))
	info, err := c.nodes[newLead].Info(ctx, "k")
	if err != nil || info.Owner != "a" || info.Token != l.Token {
		t.Fatalf("after failover: %+v, %v", info, err)
	}
	if info.Remaining > 5*time.Second || info.Remaining < 3*time.Second {
		t.Fatalf("remaining TTL after failover = %s, want a little under 5s", info.Remaining)
	}
	// The TTL still runs: the lock expires on the new leader.
	waitFor(t, 10*time.Second, "expiry after failover", func() bool {
		_, err := c.nodes[newLead].Info(ctx, "k")
		return errors.Is(err, lockapi.ErrNotFound)
	})
	next, err := c.nodes[newLead].Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "b", TTL: time.Second})
	if err != nil || next.Token <= l.Token {
		t.Fatalf("grant after failover = %+v, %v; want token above %d", next, err, l.Token)
	}
}

func TestClusterQuorumLoss(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := ctxT(t)
	c.leader()
	if _, err := c.nodes[0].Acquire(ctx, lockapi.AcquireRequest{Key: "keep", Owner: "a", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	survivor := c.follower()
	for i := range c.nodes {
		if i != survivor {
			c.stop(i)
		}
	}
	// Without a majority every request fails, fast, and none succeeds.
	waitFor(t, 5*time.Second, "the survivor to lose its leader", func() bool { return !c.nodes[survivor].IsLeader() && !c.nodes[survivor].isLeader() })
	for i := 0; i < 5; i++ {
		start := time.Now()
		_, err := c.nodes[survivor].Acquire(ctx, lockapi.AcquireRequest{Key: fmt.Sprint("x", i), Owner: "a", TTL: time.Second})
		if err == nil {
			t.Fatal("a write succeeded without a quorum")
		}
		if !errors.Is(err, lockapi.ErrNoLeader) && !errors.Is(err, lockapi.ErrUnknownOutcome) {
			t.Fatalf("err = %v, want ErrNoLeader", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("failing took %s, want fast", d)
		}
		if _, err := c.nodes[survivor].Info(ctx, "keep"); err == nil {
			t.Fatal("a read succeeded without a quorum")
		}
	}
	// It notices within the election timescale.
	waitFor(t, 2*time.Second, "cluster info to report no quorum", func() bool {
		ci, _ := c.nodes[survivor].ClusterInfo(ctx)
		return !ci.HasQuorum && ci.LeaderID == ""
	})
	// Restart the others: service resumes with nothing lost.
	for i := range c.nodes {
		if i != survivor {
			c.start(i)
		}
	}
	c.leader()
	info, err := c.nodes[survivor].Info(ctx, "keep")
	if err != nil || info.Owner != "a" {
		t.Fatalf("after healing: %+v, %v", info, err)
	}
}

func TestClusterSnapshotCatchUp(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 16
		cfg.TrailingLogs = 4
		cfg.SnapshotInterval = 50 * time.Millisecond
	})
	ctx := ctxT(t)
	lagger := c.follower()
	c.stop(lagger)
	lead := c.leader()
	for i := 0; i < 100; i++ {
		if _, err := c.nodes[lead].Acquire(ctx, lockapi.AcquireRequest{Key: fmt.Sprint("k", i%10), Owner: fmt.Sprint("o", i), TTL: time.Hour}); err != nil && !errors.Is(err, lockapi.ErrHeld) {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the leader to compact its log", func() bool {
		first, _ := c.nodes[lead].store.FirstIndex()
		return first > 20
	})
	c.start(lagger)
	waitFor(t, 15*time.Second, "the lagging follower to converge", func() bool {
		var a, b bytes.Buffer
		c.nodes[lead].fsm.WriteSnapshot(&a)
		c.nodes[lagger].fsm.WriteSnapshot(&b)
		return bytes.Equal(a.Bytes(), b.Bytes())
	})
}

func TestClusterJoinAndLeave(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := ctxT(t)
	lead := c.leader()
	if _, err := c.nodes[lead].Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	n4, err := Start(Config{ID: "n4", DataDir: t.TempDir(), RaftAddr: addr, RaftAdvertise: addr, Join: c.cfgs[c.follower()].RaftAddr,
		ElectionTimeout: 100 * time.Millisecond, HeartbeatInterval: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer n4.Close()
	waitFor(t, 10*time.Second, "n4 to join and catch up", func() bool {
		l, ok := n4.fsm.Get("k")
		return ok && l.Owner == "a"
	})
	ci, err := n4.ClusterInfo(ctx)
	if err != nil || len(ci.Nodes) != 4 || ci.QuorumSize != 3 {
		t.Fatalf("cluster info after join: %+v, %v", ci, err)
	}
	if err := c.nodes[c.follower()].Leave(ctx, "n4"); err != nil {
		t.Fatal(err)
	}
	ci, err = c.nodes[lead].ClusterInfo(ctx)
	if err != nil || len(ci.Nodes) != 3 || ci.QuorumSize != 2 {
		t.Fatalf("cluster info after leave: %+v, %v", ci, err)
	}
}

func TestClusterWaitThroughFollower(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := ctxT(t)
	f := c.follower()
	holder, err := c.nodes[f].Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.nodes[f].Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "b", TTL: time.Second, Wait: 5 * time.Second})
	if err != nil || got.Owner != "b" || got.Token <= holder.Token {
		t.Fatalf("waiter through a follower: %+v, %v", got, err)
	}
}

// TestClusterWaiterLearnsOfLeaderLoss: a caller queued on a leader that
// loses leadership is told at once, not after its whole WAIT.
func TestClusterWaiterLearnsOfLeaderLoss(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := ctxT(t)
	lead := c.leader()
	if _, err := c.nodes[lead].Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := c.nodes[lead].Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "b", TTL: time.Second, Wait: 30 * time.Second})
		done <- err
	}()
	waitFor(t, 2*time.Second, "the waiter to queue", func() bool { return c.nodes[lead].waits.count("k") == 1 })
	if err := c.nodes[lead].raft.LeadershipTransfer().Error(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || errors.Is(err, lockapi.ErrHeld) {
			t.Fatalf("waiter on a deposed leader got %v, want a no-leader error", err)
		}
		t.Logf("waiter told %q after %s", err, time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter slept through the leadership change")
	}
}

// Every node bootstraps with the same configuration entry (its --peers in
// whatever order) and lists the members in one order.
func TestClusterBootstrapsOneConfiguration(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.leader()
	var first []byte
	for i, n := range c.nodes {
		var l raft.Log
		if err := n.store.GetLog(1, &l); err != nil {
			t.Fatal(err)
		}
		if l.Type != raft.LogConfiguration {
			t.Fatalf("node %d: entry 1 is %v, want the bootstrap configuration", i, l.Type)
		}
		if i == 0 {
			first = l.Data
		} else if !bytes.Equal(l.Data, first) {
			t.Fatalf("node %d bootstrapped another configuration entry than node 1", i)
		}
		ci, err := n.ClusterInfo(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, ni := range ci.Nodes {
			ids = append(ids, ni.ID)
		}
		if fmt.Sprint(ids) != "[n1 n2 n3]" {
			t.Fatalf("node %d lists %v, want [n1 n2 n3]", i, ids)
		}
	}
}
