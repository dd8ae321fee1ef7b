package server

import (
	"net"
	"sync"
	"testing"
	"time"
)

// TestNodeRemovedWhileDownLearnsOfIt: a follower is stopped, removed with
// Leave and restarted from its data directory. Its own configuration still
// lists it, so only the members can tell it of its removal: it must report
// Removed while the cluster keeps its leader, and stop reporting it once
// joined again.
func TestNodeRemovedWhileDownLearnsOfIt(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := ctxT(t)
	lead := c.leader()
	f := c.follower()
	id := c.cfgs[f].ID
	c.stop(f)
	// Until the leader's replication to the removed node ends, it makes one
	// last attempt to send it the configuration without it, after a
	// backoff: a node back in time learns of its removal from that. Stand
	// in for the node on its raft address, refusing every RPC, until that
	// replication has stopped calling.
	calls := refuseRaft(t, c.cfgs[f].RaftAddr)
	if err := c.nodes[lead].Leave(ctx, id); err != nil {
		t.Fatal(err)
	}
	if r := c.nodes[lead].answerMember(id); r.Value == nil || len(r.Value.Elems) != 3 || r.Value.Elems[1].Str != "not_member" {
		t.Fatalf("the leader's answer about a removed node: %+v", r)
	}
	quiet := 20 * c.cfgs[lead].ElectionTimeout
	waitFor(t, 20*time.Second, "the leader to stop calling the removed node", func() bool {
		return time.Since(calls.last()) > quiet
	})
	calls.close()
	c.start(f)
	waitFor(t, 10*time.Second, "the restarted node to learn of its removal", func() bool {
		if !c.nodes[f].isMember() {
			t.Fatal("the restarted node heard of its removal from raft: the test did not wait long enough")
		}
		ci, err := c.nodes[f].ClusterInfo(ctx)
		return err == nil && ci.Removed && ci.LeaderID == ""
	})
	if ci, err := c.nodes[lead].ClusterInfo(ctx); err != nil || ci.LeaderID == "" || ci.LeaderID == id || len(ci.Nodes) != 2 {
		t.Fatalf("the cluster after the removal: %+v, %v", ci, err)
	}
	// Only members that have committed past the asker's log count.
	last := c.nodes[f].raft.LastIndex()
	servers := c.nodes[f].raft.GetConfiguration().Configuration().Servers
	if by, _ := c.nodes[f].askRemoved(servers, last); by == "" {
		t.Fatal("no member answered that the removed node is not listed")
	}
	if by, _ := c.nodes[f].askRemoved(servers, last+1000); by != "" {
		t.Fatalf("%s's answer counted though it has not committed past the asker's log", by)
	}

	if err := c.nodes[c.leader()].Join(ctx, id, c.cfgs[f].RaftAdvertise); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the node joined again to see a leader and no longer report Removed", func() bool {
		ci, err := c.nodes[f].ClusterInfo(ctx)
		return err == nil && ci.LeaderID != "" && !ci.Removed
	})
}

// TestNodeWithoutALeaderIsNotRemoved: members that list a node answer so;
// a node whose peers are down knows no leader, nobody answers its
// question, and it must not report Removed; nor may it answer another
// node's question without a leader.
func TestNodeWithoutALeaderIsNotRemoved(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := ctxT(t)
	lead := c.leader()
	f := c.follower()
	waitFor(t, 10*time.Second, "the follower to know the leader", func() bool {
		_, id := c.nodes[f].raft.LeaderWithID()
		return id != ""
	})
	commit, member, _, err := c.nodes[f].askMember(ctx, c.cfgs[lead].RaftAdvertise)
	if err != nil || !member || commit == 0 {
		t.Fatalf("the leader's answer about a member: commit %d, member %v, %v", commit, member, err)
	}
	servers := c.nodes[f].raft.GetConfiguration().Configuration().Servers
	if by, _ := c.nodes[f].askRemoved(servers, 0); by != "" {
		t.Fatalf("%s answered that a member was removed", by)
	}
	for i := range c.nodes {
		if i != lead {
			c.stop(i)
		}
	}
	waitFor(t, 10*time.Second, "the lone node to lose its leadership", func() bool {
		ci, err := c.nodes[lead].ClusterInfo(ctx)
		return err == nil && ci.LeaderID == ""
	})
	if r := c.nodes[lead].answerMember("n9"); r.Code != "no_leader" {
		t.Fatalf("answer without a leader: %+v, want no_leader", r)
	}
	// Ten times the wait before it first asks.
	deadline := time.Now().Add(10 * removalCheckAfter * c.cfgs[lead].ElectionTimeout)
	for time.Now().Before(deadline) {
		if ci, err := c.nodes[lead].ClusterInfo(ctx); err != nil || ci.Removed {
			t.Fatalf("a node without a leader reports %+v, %v", ci, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	w := &c.nodes[lead].removal
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.leaderless.IsZero() {
		t.Fatal("the check never saw the node without a leader")
	}
}

// refusedCalls is a listener that accepts connections and closes them at
// once, noting when the last one came.
type refusedCalls struct {
	ln   net.Listener
	mu   sync.Mutex
	when time.Time
	done chan struct{}
}

// refuseRaft listens on addr and refuses every connection until close.
func refuseRaft(t *testing.T, addr string) *refusedCalls {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := &refusedCalls{ln: ln, when: time.Now(), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
			r.mu.Lock()
			r.when = time.Now()
			r.mu.Unlock()
		}
	}()
	t.Cleanup(r.close)
	return r
}

// last returns when the last connection came (or the listener started).
func (r *refusedCalls) last() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.when
}

// close stops listening; calls after the first do nothing.
func (r *refusedCalls) close() {
	r.ln.Close()
	<-r.done
}
