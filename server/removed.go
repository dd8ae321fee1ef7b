package server

import (
	"context"
	"sync"
	"time"

	"github.com/distlock/distlock/lockapi"
	"github.com/hashicorp/raft"
)

// hashicorp/raft tells a node of its removal (CLUSTER.LEAVE) only if the
// node is up when the leader commits it. A node that was down then restarts
// with the configuration it had, which still lists it; it campaigns in vain
// (the members reject the votes of a non-member) and would only ever report
// that it sees no leader. So a node that has known no leader for
// removalCheckAfter asks the other servers of its configuration whether it
// is still a member (the "member" request). A server that knows a leader,
// has committed past the end of this node's log (so its configuration is
// at least as new as any this node holds: hashicorp/raft takes a
// configuration on from the moment it is in the log) and no longer lists
// this node, settles the question: the node logs it once and reports it
// (ClusterInfo.Removed, and so readiness). Seeing a leader again (after a
// CLUSTER.JOIN) clears it. An answer can be wrong in narrow windows (an
// answerer holding a removal that never commits, or one that has not yet
// heard of the node's re-addition); it then costs only the reason readiness
// gives while the node has no leader anyway, and a warning, which so asks
// the operator to check before acting.

// removalCheckAfter is how many election timeouts a node goes without a
// leader before it asks the members about itself; an election normally
// ends well within it.
const removalCheckAfter = 3

// removalWatch is a node's record of whether it was removed while down.
type removalWatch struct {
	mu         sync.Mutex
	leaderless time.Time // when this node last found itself without a leader; zero while it has one
	removed    bool
}

// isRemoved reports whether a member answered that this node was removed
// and the node has seen no leader since.
func (w *removalWatch) isRemoved() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.removed
}

// checkRemoved runs on each tick of registerLoop: it notes whether this
// node has a leader and, once it has had none for removalCheckAfter
// election timeouts, asks the other servers of its configuration about
// itself until one says it was removed.
func (n *Node) checkRemoved() {
	w := &n.removal
	_, leader := n.raft.LeaderWithID()
	w.mu.Lock()
	switch {
	case leader != "":
		w.leaderless, w.removed = time.Time{}, false
	case w.leaderless.IsZero():
		w.leaderless = time.Now()
	}
	ask := leader == "" && !w.removed && time.Since(w.leaderless) >= removalCheckAfter*n.cfg.ElectionTimeout
	w.mu.Unlock()
	if !ask {
		return
	}
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	servers := f.Configuration().Servers
	if !listed(servers, n.cfg.ID) {
		return // readiness already says so: its configuration does not list it
	}
	by, index := n.askRemoved(servers, n.raft.LastIndex())
	if by == "" {
		return
	}
	w.mu.Lock()
	_, leader = n.raft.LeaderWithID()
	if leader == "" && !w.leaderless.IsZero() { // still without a leader
		w.removed = true
	}
	removed := w.removed
	w.mu.Unlock()
	if removed {
		n.log.Warn("this node is not in the cluster's configuration (was it removed while it was down?): "+
			"check CLUSTER.INFO on a member, then CLUSTER.JOIN this node again, or stop it",
			"answered_by", by, "their_commit_index", index, "our_last_index", n.raft.LastIndex())
	}
}

// askRemoved asks every other server in servers at once, and returns the
// id of one that answered that its configuration no longer lists this node
// and its commit index, past ours (this node's last log index); or "" when
// none did.
func (n *Node) askRemoved(servers []raft.Server, ours uint64) (by string, index uint64) {
	ctx, cancel := context.WithTimeout(n.ctx, min(askVersionTimeout, 2*n.cfg.ElectionTimeout))
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range servers {
		if s.ID == raft.ServerID(n.cfg.ID) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			idx, member, cluster, err := n.askMember(ctx, string(s.Address))
			if err != nil || member || idx <= ours {
				return
			}
			if ourID := n.clusterID(); ourID != "" && cluster != "" && cluster != ourID {
				return // a node of another cluster: its configuration is not ours
			}
			mu.Lock()
			by, index = string(s.ID), idx
			mu.Unlock()
		}()
	}
	wg.Wait()
	return by, index
}

// askMember sends the "member" request to the node at raftAddr: its commit
// index, whether its raft configuration lists this node, and its cluster
// id. It fails when that node knows no leader (its configuration may be as
// stale as ours), runs a build without the request, or cannot be reached.
func (n *Node) askMember(ctx context.Context, raftAddr string) (commit uint64, member bool, cluster string, err error) {
	resp, err := n.forward(ctx, raftAddr, fwdRequest{Op: "member", NodeID: n.cfg.ID, Hops: 1})
	if err != nil {
		return 0, false, "", err
	}
	v := resp.Value
	if v == nil || v.Kind != lockapi.KindArray || len(v.Elems) != 3 || v.Elems[0].Int <= 0 {
		return 0, false, "", lockapi.Invalidf("malformed answer to a member request")
	}
	return uint64(v.Elems[0].Int), v.Elems[1].Str == "member", v.Elems[2].Str, nil
}

// answerMember answers node id's "member" request (askMember) from this
// node's own view; no_leader when it knows no leader.
func (n *Node) answerMember(id string) fwdResponse {
	if _, leader := n.raft.LeaderWithID(); leader == "" {
		return fwdResponse{Code: "no_leader", Error: n.noLeaderError().Error()}
	}
	// The commit index first: the configuration read after it is at least
	// as new as every entry up to it.
	commit := n.raft.CommitIndex()
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		err = raftError(err)
		return fwdResponse{Code: errorCode(err), Error: err.Error()}
	}
	answer := "not_member"
	if listed(f.Configuration().Servers, id) {
		answer = "member"
	}
	v := lockapi.ArrayValue(lockapi.IntValue(int64(commit)), lockapi.BulkValue(answer), lockapi.BulkValue(n.clusterID()))
	return fwdResponse{Value: &v}
}
