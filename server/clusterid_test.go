package server

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
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
	for _, tt := range []struct {
		name                 string
		stored               string
		wantStored, wantLogs string
	}{{"stored", id, id, ""}, {"not stored", "", "", id}, {"stored, another", "other", "other", ""}} {
		if err := store.Set([]byte(clusterIDKey), []byte(tt.stored)); err != nil {
			t.Fatal(err)
		}
		if stored, logged, err := startClusterID(store); err != nil || stored != tt.wantStored || logged.id != tt.wantLogs {
			t.Errorf("%s: startClusterID = %q, %+v, %v; want %q, %q", tt.name, stored, logged, err, tt.wantStored, tt.wantLogs)
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

// v2ClusterStopped starts 3 nodes announcing the previous protocol version
// (2), waits until every log ends at the same (index, term), stops them all,
// makes them this build again (at their next start) and returns the
// cluster, the index of the node that led, and that last (index, term).
func v2ClusterStopped(t *testing.T) (c *testCluster, l int, k, term uint64) {
	t.Helper()
	c = newTestCluster(t, 3, func(cfg *Config) { cfg.Unsafe.ProtocolVersion = 2 })
	waitFor(t, 10*time.Second, "the cluster at version 2, registered", func() bool {
		for _, n := range c.nodes {
			if n.fsm.ClusterVersion() != 2 || len(n.fsm.Nodes()) != 3 {
				return false
			}
		}
		return true
	})
	l = c.leader()
	waitFor(t, 10*time.Second, "equal logs", func() bool {
		for _, n := range c.nodes {
			if n.raft.LastIndex() != c.nodes[l].raft.LastIndex() || n.raft.AppliedIndex() != n.raft.LastIndex() {
				return false
			}
		}
		return true
	})
	for i := range c.nodes {
		if i != l {
			c.stop(i)
		}
	}
	c.stop(l)
	for i := range c.cfgs {
		c.cfgs[i].Unsafe.ProtocolVersion = 0 // all upgraded to this build
		s := openStore(t, c.cfgs[i])
		last, _ := s.LastIndex()
		var e raft.Log
		if err := s.GetLog(last, &e); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			k, term = last, e.Term
		} else if last != k || e.Term != term {
			t.Fatalf("logs differ: (%d,%d) vs (%d,%d)", last, e.Term, k, term)
		}
		s.Close()
	}
	return c, l, k, term
}

func openStore(t *testing.T, cfg Config) *walstore.Store {
	t.Helper()
	s, err := walstore.Open(filepath.Join(cfg.DataDir, cfg.ID, "raft"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writeRaise writes to the log of the stopped node of cfg, at idx, a raise
// to protocol version 3 with cluster id, as a leader that crashed before it
// replicated it would leave it.
func writeRaise(t *testing.T, cfg Config, idx, term uint64, id string) {
	t.Helper()
	s := openStore(t, cfg)
	defer s.Close()
	if err := s.StoreLogs([]*raft.Log{raiseEntry(idx, term, id)}); err != nil {
		t.Fatal(err)
	}
}

// startAllBut starts every node of c but node i.
func (c *testCluster) startAllBut(i int) {
	for j := range c.nodes {
		if j != i {
			c.start(j)
		}
	}
}

func raiseEntry(idx, term uint64, id string) *raft.Log {
	return &raft.Log{Index: idx, Term: term, Type: raft.LogCommand,
		Data: raftfsm.Encode(nil, raftfsm.Command{Op: raftfsm.OpSetVersion, Token: 3, Key: id})}
}

func hasLeader(c *testCluster) bool {
	for _, n := range c.nodes {
		if n != nil && n.IsLeader() {
			return true
		}
	}
	return false
}

// TestUnappliedRaiseDoesNotBlockAnElection: a running node whose log holds
// the committed raise, not yet applied, announces the id, so the node that
// applied (and stored) it admits it. (It announced none, and was refused:
// with the third node down, the two live nodes never elected a leader, as
// a could not win c's vote, c's log being newer, and refused c's RPCs.)
func TestUnappliedRaiseDoesNotBlockAnElection(t *testing.T) {
	c, a, k, term := v2ClusterStopped(t)
	ci, bi := (a+1)%3, (a+2)%3
	x := newClusterID()
	// a led term `term`: it appended the raise at k+1, b acknowledged it,
	// a committed, applied and stored the id, then crashed.
	s := openStore(t, c.cfgs[a])
	if err := s.StoreLogs([]*raft.Log{raiseEntry(k+1, term, x)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte(clusterIDKey), []byte(x)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// c runs; b, elected in a later term, replicates the raise and its
	// no-op to c, then crashes before c hears the commit index.
	c.start(ci)
	tr, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 5*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	bigT := term + 10
	req := raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(c.cfgs[bi].ID), Addr: []byte(c.cfgs[bi].RaftAddr)},
		Term:      bigT, PrevLogEntry: k, PrevLogTerm: term, LeaderCommitIndex: k,
		Entries: []*raft.Log{raiseEntry(k+1, term, x), {Index: k + 2, Term: bigT, Type: raft.LogNoop}},
	}
	var resp raft.AppendEntriesResponse
	if err := tr.AppendEntries(raft.ServerID(c.cfgs[ci].ID), raft.ServerAddress(c.cfgs[ci].RaftAddr), &req, &resp); err != nil || !resp.Success {
		t.Fatalf("append to c: %v, %+v", err, resp)
	}
	if id, logged := c.nodes[ci].clusterID(), c.nodes[ci].announcedClusterID(); id != "" || logged != x {
		t.Fatalf("c, before applying the raise: enforces %q, announces %q; want none and %q", id, logged, x)
	}
	c.start(a)
	deadline := time.Now().Add(5 * time.Second) // 50 election timeouts
	for !hasLeader(c) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !hasLeader(c) {
		t.Fatalf("2 of 3 nodes up, no leader after 5s: a refuses c (refusals: %v)", c.nodes[a].refusals.last)
	}
}

// TestUncommittedRaiseDoesNotShutANodeOut: a leader that wrote a raise (id
// x) it never replicated, then crashed, finds x in its log at start but
// does not enforce it, since it may not be committed: the rest of the
// cluster, which went on and raised with its own id y, overwrites the
// entry and the node catches up. (Enforcing x, it refused every connection
// of the real leader, with no id and then y, for good.)
func TestUncommittedRaiseDoesNotShutANodeOut(t *testing.T) {
	c, a, k, term := v2ClusterStopped(t)
	writeRaise(t, c.cfgs[a], k+1, term, newClusterID())
	c.startAllBut(a)
	l := c.leader()
	c.start(a)
	waitFor(t, 10*time.Second, "the cluster at version 3", func() bool { return c.nodes[l].fsm.ClusterID() != "" })
	want := c.nodes[l].fsm.ClusterID()
	deadline := time.Now().Add(10 * time.Second)
	for c.nodes[a].clusterID() != want || c.nodes[a].raft.AppliedIndex() <= k {
		if time.Now().After(deadline) {
			t.Fatalf("restarted former leader after 10s: id %q (cluster's %q), applied %d (log had %d): shut out; refusals %v",
				c.nodes[a].clusterID(), want, c.nodes[a].raft.AppliedIndex(), k, c.nodes[a].refusals.last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestJoinRefusesANodeOfANamedCluster: a node of a cluster with an id is
// not joined to a cluster that has none yet (at version 2 here): it would
// refuse every raft connection of its new leader, a voter that never
// catches up (and a build of version 2 in the cluster would be sent its
// announcement).
func TestJoinRefusesANodeOfANamedCluster(t *testing.T) {
	a := newTestCluster(t, 3, nil)
	waitClusterID(t, a)
	b := newTestCluster(t, 3, func(cfg *Config) {
		if cfg.ID == "n3" {
			cfg.Unsafe.ProtocolVersion = 2
		}
	})
	waitFor(t, 10*time.Second, "b at version 2", func() bool { return b.nodes[0].fsm.ClusterVersion() == 2 })
	stray := a.nodes[a.follower()]
	lb := b.nodes[b.leader()]
	err := lb.Join(ctxT(t), "stray", stray.RaftAddr())
	if !errors.Is(err, lockapi.ErrInvalid) || !strings.Contains(err.Error(), "another cluster") {
		t.Fatalf("joining a node of cluster %s to a cluster with no id: %v, want ErrInvalid naming another cluster", stray.clusterID(), err)
	}
	if len(lb.raft.GetConfiguration().Configuration().Servers) != 3 {
		t.Fatal("the node was added")
	}
}

// TestOverwrittenRaiseIsNoLongerAnnounced: a former leader wrote a raise
// (id x) it never replicated; the cluster goes on without it and stays at
// version 2 (a voter runs 2). Once the new leader has overwritten the
// raise, the node announces no id, and CLUSTER.LEAVE then CLUSTER.JOIN of
// it works. (It announced x for good, as raft's deletion of the entry went
// unseen, and the join was refused as "another cluster".)
func TestOverwrittenRaiseIsNoLongerAnnounced(t *testing.T) {
	c, a, k, term := v2ClusterStopped(t)
	h := (a + 1) % 3
	c.cfgs[h].Unsafe.ProtocolVersion = 2 // holds the cluster at version 2
	x := newClusterID()
	writeRaise(t, c.cfgs[a], k+1, term, x)
	c.startAllBut(a)
	l := c.leader()
	c.start(a)
	n := c.nodes[a]
	waitFor(t, 10*time.Second, "the raise overwritten on a, a caught up", func() bool {
		var e raft.Log
		if err := n.store.GetLog(k+1, &e); err != nil || e.Term == term {
			return false
		}
		return n.raft.AppliedIndex() >= c.nodes[l].raft.AppliedIndex()
	})
	if got := n.announcedClusterID(); got != "" {
		t.Errorf("a's log holds no raise, yet a announces %q", got)
	}
	ctx := ctxT(t)
	lead := c.nodes[l]
	if err := lead.Leave(ctx, n.cfg.ID); err != nil {
		t.Fatal(err)
	}
	if err := lead.Join(ctx, n.cfg.ID, n.RaftAddr()); err != nil {
		t.Errorf("LEAVE then JOIN of a member of this cluster: %v", err)
	}
}

// TestRemovedNodeWithAnUncommittedRaiseRejoins: a leader wrote a raise (x)
// it never replicated and crashed; the operator removed it while it was
// down, and the cluster raised with its own id y. Restarted, the node's
// log still holds x (no leader has overwritten it), yet CLUSTER.JOIN adds
// it, since x was never committed, and the node catches up to y. (The
// join was refused as "another cluster", at every start.)
func TestRemovedNodeWithAnUncommittedRaiseRejoins(t *testing.T) {
	c, a, k, term := v2ClusterStopped(t)
	writeRaise(t, c.cfgs[a], k+1, term, newClusterID())
	c.startAllBut(a)
	lead := c.nodes[c.leader()]
	ctx := ctxT(t)
	if err := lead.Leave(ctx, c.cfgs[a].ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the cluster named", func() bool { return lead.fsm.ClusterID() != "" })
	c.start(a)
	if err := lead.Join(ctx, c.cfgs[a].ID, c.cfgs[a].RaftAddr); err != nil {
		t.Fatalf("re-joining the removed member (announces %q, enforces %q): %v",
			c.nodes[a].announcedClusterID(), c.nodes[a].clusterID(), err)
	}
	waitFor(t, 10*time.Second, "the re-joined node to apply the cluster's id", func() bool {
		return c.nodes[a].clusterID() == lead.fsm.ClusterID()
	})
}

// TestLoggedRaiseAtStartAndRunning: of a log that holds two raises (ids x
// then y), a running node (noteLogged, whether the entries come in one
// write or two) and the same node after a restart (loggedClusterID)
// announce the same id, the one the state machine sets when it applies
// the log: the first.
func TestLoggedRaiseAtStartAndRunning(t *testing.T) {
	dir := t.TempDir()
	store, err := walstore.Open(filepath.Join(dir, "raft"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	logs := []*raft.Log{raiseEntry(1, 1, "x"), raiseEntry(2, 1, "y")}
	if err := store.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	atStart, err := loggedClusterID(store)
	if err != nil {
		t.Fatal(err)
	}
	f := raftfsm.New()
	for _, l := range logs {
		f.Apply(l)
	}
	one, two := &Node{fsm: raftfsm.New()}, &Node{fsm: raftfsm.New()}
	one.noteLogged(logs)
	two.noteLogged(logs[:1])
	two.noteLogged(logs[1:])
	for _, running := range []string{one.announcedClusterID(), two.announcedClusterID()} {
		if atStart.id != running || running != f.ClusterID() || running != "x" {
			t.Errorf("announced at start %q, while running %q; applied %q", atStart.id, running, f.ClusterID())
		}
	}
}

// TestConnectionAdmittedBeforeTheIDIsClosed: a raft connection a node
// admitted while it knew no id (announcing none, from a sender outside its
// cluster) is closed once the node enforces its id, as a new connection
// like it is refused. (It stayed open, its RPCs reaching raft.)
func TestConnectionAdmittedBeforeTheIDIsClosed(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		if cfg.ID == "n3" {
			cfg.Unsafe.ProtocolVersion = 2
		}
	})
	waitFor(t, 10*time.Second, "the cluster at version 2", func() bool { return c.nodes[0].fsm.ClusterVersion() == 2 })
	target := c.nodes[0]
	rpc := func(conn net.Conn) error {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte{0}); err != nil { // rpcAppendEntries
			return err
		}
		req := raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax,
			ID: []byte("b1"), Addr: []byte("127.0.0.1:1")}, Term: 0}
		if err := codec.NewEncoder(conn, &codec.MsgpackHandle{}).Encode(&req); err != nil {
			return err
		}
		dec := codec.NewDecoder(bufio.NewReader(conn), &codec.MsgpackHandle{})
		var rpcErr string
		var resp raft.AppendEntriesResponse
		if err := dec.Decode(&rpcErr); err != nil {
			return err
		}
		return dec.Decode(&resp)
	}
	old, err := net.Dial("tcp", target.RaftAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := rpc(old); err != nil {
		t.Fatalf("before the id: %v", err)
	}
	c.stop(2)
	c.cfgs[2].Unsafe.ProtocolVersion = 0
	c.start(2)
	id := waitClusterID(t, c)
	if target.clusterID() != id {
		t.Fatal("target does not enforce the id")
	}
	fresh, err := net.Dial("tcp", target.RaftAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if err := rpc(fresh); err == nil {
		t.Fatal("a new connection announcing no id was admitted")
	}
	if err := rpc(old); err == nil {
		t.Fatalf("node enforcing cluster id %s still answers raft RPCs from b1 on a connection that announced no id", id)
	}
}
