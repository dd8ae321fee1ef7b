package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/raftfsm"
)

// membershipTimeout bounds one membership change.
const membershipTimeout = 30 * time.Second

// Join adds a voter to the cluster (CLUSTER.JOIN). It is served by the
// leader; a follower forwards it. Adding a member that is already a voter at
// the same address succeeds.
func (n *Node) Join(ctx context.Context, id, raftAddr string) error {
	if id == "" || raftAddr == "" {
		return lockapi.Invalidf("join needs a node id and its raft address")
	}
	return n.serveMembership(ctx, fwdRequest{Op: "join", NodeID: id, Addr: raftAddr}, func() error { return n.localJoin(ctx, id, raftAddr, 0) })
}

// Leave removes a voter from the cluster (CLUSTER.LEAVE). Removing a member
// that is not in the configuration succeeds.
func (n *Node) Leave(ctx context.Context, id string) error {
	if id == "" {
		return lockapi.Invalidf("leave needs a node id")
	}
	return n.serveMembership(ctx, fwdRequest{Op: "leave", NodeID: id}, func() error { return n.localLeave(ctx, id) })
}

func (n *Node) serveMembership(ctx context.Context, req fwdRequest, local func() error) error {
	addr, isLocal, err := n.route(ctx)
	if err != nil {
		return err
	}
	if isLocal {
		return local()
	}
	_, err = n.forward(ctx, addr, req)
	return err
}

// localJoin adds a voter. version is the protocol version the joining
// node announced, or 0 when it did not (CLUSTER.JOIN by an operator, or a
// build from before versions were announced). While the cluster is at
// protocol version 1 every build may join. Above it, a node older than the
// cluster's version (or that cannot say, when it did not announce its
// version) is refused, since it could not read the log it would
// replicate. The joining node is asked (always: its version, and the id
// of the cluster whose raise it has applied), and refused if that id is
// not this cluster's (which has none yet, or another): its raft port would
// refuse this cluster's leader, and leave a member that never catches up.
// (A raise in its log that it has not applied does not count: it may never
// have been committed, and this cluster's leader overwrites it.)
func (n *Node) localJoin(ctx context.Context, id, raftAddr string, version uint64) error {
	if _, err := n.leaderNow(ctx); err != nil {
		return err
	}
	n.versionMu.Lock()
	defer n.versionMu.Unlock()
	ours := n.clusterID()
	asked, theirs, err := n.askVersion(ctx, raftAddr)
	if err != nil {
		n.log.Warn("could not ask a joining node its protocol version and cluster", "id", id, "raft", raftAddr, "err", err)
	}
	version = max(version, asked)
	if theirs != "" && theirs != ours {
		return lockapi.Invalidf("node %s at %s belongs to another cluster (id %s; this cluster's is %q): "+
			"give it an empty data directory before it joins", id, raftAddr, theirs, ours)
	}
	if cv := n.fsm.ClusterVersion(); max(version, 1) < cv {
		return lockapi.Invalidf("node %s runs protocol version %d (0: it could not be asked), older than the cluster's %d: upgrade it before it joins", id, version, cv)
	}
	if err := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, membershipTimeout).Error(); err != nil {
		return fmt.Errorf("add voter %s at %s: %w", id, raftAddr, raftError(err))
	}
	n.log.Info("voter added", "id", id, "raft", raftAddr)
	return nil
}

func (n *Node) localLeave(ctx context.Context, id string) error {
	if _, err := n.leaderNow(ctx); err != nil {
		return err
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, membershipTimeout).Error(); err != nil {
		return fmt.Errorf("remove voter %s: %w", id, raftError(err))
	}
	n.log.Info("voter removed", "id", id)
	if id == n.cfg.ID {
		return nil // no longer a member: it cannot commit the address removal
	}
	_, err := n.apply(ctx, raftfsm.Command{Op: raftfsm.OpRemoveNode, Key: id})
	return err
}

// protocolVersion is the protocol version this node announces: its build's
// (raftfsm.ProtocolVersion) unless a test says otherwise.
func (n *Node) protocolVersion() uint64 {
	if v := n.cfg.Unsafe.ProtocolVersion; v != 0 {
		return v
	}
	return raftfsm.ProtocolVersion
}

// askVersion asks the node at raftAddr which protocol version it runs and
// the id of the cluster it belongs to ("" if it knows none). The version
// is 1 when it answers that it does not know the question (a build from
// before versions, leading), 0 when it cannot be asked or gives no answer
// (such a build answers no_leader when it does not lead).
func (n *Node) askVersion(ctx context.Context, raftAddr string) (version uint64, cluster string, err error) {
	ctx, cancel := context.WithTimeout(ctx, askVersionTimeout)
	defer cancel()
	resp, err := n.forward(ctx, raftAddr, fwdRequest{Op: "version", Hops: 1})
	switch {
	case err == nil && resp.Value != nil && resp.Value.Int > 0:
		return uint64(resp.Value.Int), resp.Value.Str, nil
	case err == nil:
		return 0, "", errors.New("no version in the answer")
	case errors.Is(err, lockapi.ErrInvalid):
		return 1, "", nil
	}
	return 0, "", err
}

// askVersionTimeout bounds one "version" question.
const askVersionTimeout = 2 * time.Second

// localRegister records a node's client addresses in the replicated node
// table.
func (n *Node) localRegister(ctx context.Context, id, respAddr, httpAddr string) error {
	if id == "" {
		return lockapi.Invalidf("register needs a node id")
	}
	_, err := n.apply(ctx, raftfsm.Command{Op: raftfsm.OpSetNode, Key: id, RESPAddr: respAddr, HTTPAddr: httpAddr})
	return err
}

// registerLoop keeps this node's client addresses in the node table, so any
// node can name them; it registers whenever the table disagrees (first
// start, changed ports, a member re-added). On the leader it also raises
// the cluster's protocol version once every member runs it (raiseVersion);
// on a node without a leader it finds out whether it was removed while it
// was down (checkRemoved).
func (n *Node) registerLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.ElectionTimeout * 2)
	defer t.Stop()
	want := raftfsm.NodeAddrs{RESP: n.respAddr, HTTP: n.httpAddr}
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		n.raiseVersion()
		n.keepClusterID()
		n.checkRemoved()
		if got, ok := n.fsm.Nodes()[n.cfg.ID]; ok && got == want {
			continue
		}
		if !n.isMember() || !n.caughtUp() {
			continue
		}
		ctx, cancel := context.WithTimeout(n.ctx, applyTimeout)
		err := n.serveMembership(ctx, fwdRequest{Op: "register", NodeID: n.cfg.ID, RESPAddr: want.RESP, HTTPAddr: want.HTTP},
			func() error { return n.localRegister(ctx, n.cfg.ID, want.RESP, want.HTTP) })
		cancel()
		if err != nil && !errors.Is(err, lockapi.ErrShuttingDown) {
			n.log.Debug("registering client addresses", "err", err)
		}
	}
}

// raiseVersion, on the leader, moves the cluster to the newest protocol
// version that every member of the raft configuration says it runs: from
// then on entries may use formats that older builds cannot read. The
// members are asked at that moment (the "version" request), not looked up
// in a table, so a node rolled back to an older build, or one that cannot
// answer, holds the raise back. Joins (localJoin) hold the same lock, so no
// older node can slip in between the question and the entry. The raise to
// version 3 also names the cluster with a fresh random id (clusterid.go).
func (n *Node) raiseVersion() {
	if n.fsm.ClusterVersion() >= n.protocolVersion() || !n.IsLeader() {
		return
	}
	n.versionMu.Lock()
	defer n.versionMu.Unlock()
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, applyTimeout)
	defer cancel()
	target := n.protocolVersion()
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(n.cfg.ID) {
			continue
		}
		v, theirs, err := n.askVersion(ctx, string(s.Address))
		if ours := n.clusterID(); theirs != "" && theirs != ours {
			// Its raft port refuses this cluster: say where to look (at
			// most once a minute per member).
			n.refusals.note(n.log, string(s.ID), fmt.Sprintf("member %s at %s answers as a node of another cluster (id %s; "+
				"this cluster's is %q): does --peers, or a CLUSTER.JOIN, name the wrong address?", s.ID, s.Address, theirs, ours))
		}
		if v <= n.fsm.ClusterVersion() {
			n.log.Debug("not raising the protocol version yet", "member", s.ID, "version", v, "err", err)
			return
		}
		target = min(target, v)
	}
	// Draw an id only as the ready leader, whose state machine has applied
	// every entry of its log (its barrier): a raise of an earlier term may
	// have named the cluster while the members were asked.
	if _, err := n.leaderNow(ctx); err != nil {
		return
	}
	raise := raftfsm.Command{Op: raftfsm.OpSetVersion, Token: target}
	if target >= 3 && n.fsm.ClusterID() == "" {
		raise.Key = newClusterID()
	}
	if _, err := n.apply(ctx, raise); err != nil {
		n.log.Debug("raising the cluster's protocol version", "err", err)
		return
	}
	n.log.Info("cluster protocol version raised", "version", target, "cluster_id", n.fsm.ClusterID())
}

// caughtUp reports whether this node's state machine has (very likely)
// applied everything committed: a ready leader has by its barrier; a
// follower has been handed every entry up to the commit index it knows.
// It only avoids registering needlessly while a restarted node replays its
// log; a duplicate registration would be harmless.
func (n *Node) caughtUp() bool {
	if n.isLeader() {
		return n.IsLeader()
	}
	_, id := n.raft.LeaderWithID()
	return id != "" && n.raft.AppliedIndex() >= n.raft.CommitIndex() && n.raft.CommitIndex() > 0
}

// isMember reports whether this node is in the raft configuration.
func (n *Node) isMember() bool {
	f := n.raft.GetConfiguration()
	return f.Error() == nil && listed(f.Configuration().Servers, n.cfg.ID)
}

// listed reports whether servers holds the server id.
func listed(servers []raft.Server, id string) bool {
	return slices.ContainsFunc(servers, func(s raft.Server) bool { return s.ID == raft.ServerID(id) })
}

// joinLoop asks the cluster at cfg.Join to add this node, until it is a
// member.
func (n *Node) joinLoop() {
	defer n.wg.Done()
	for attempt := 0; !n.isMember(); attempt++ {
		ctx, cancel := context.WithTimeout(n.ctx, membershipTimeout)
		_, err := n.forward(ctx, n.cfg.Join, fwdRequest{Op: "join", NodeID: n.cfg.ID, Addr: n.RaftAddr(), Token: n.protocolVersion()})
		cancel()
		if err == nil {
			n.log.Info("joined the cluster", "via", n.cfg.Join)
			return
		}
		n.log.Warn("join failed, retrying", "via", n.cfg.Join, "err", err)
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(min(time.Second<<min(attempt, 4), 10*time.Second)):
		}
	}
}
