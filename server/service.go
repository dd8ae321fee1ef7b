package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/raftfsm"
)

var _ lockapi.Service = (*Node)(nil)

// isLeader reports whether raft considers this node the leader.
func (n *Node) isLeader() bool { return n.raft.State() == raft.Leader }

// route decides where a request is served: here (this node leads) or at the
// leader's raft address. While no leader is known it waits up to two
// election timeouts (an election in progress), then fails fast with
// ErrNoLeader.
func (n *Node) route(ctx context.Context) (addr string, local bool, err error) {
	deadline := time.Now().Add(2 * n.cfg.ElectionTimeout)
	for {
		if n.isLeader() {
			return "", true, nil
		}
		if a, _ := n.raft.LeaderWithID(); a != "" {
			return string(a), false, nil
		}
		if time.Now().After(deadline) {
			return "", false, n.noLeaderError()
		}
		select {
		case <-ctx.Done():
			return "", false, fmt.Errorf("%w waiting for a leader", lockapi.ErrTimeout)
		case <-n.ctx.Done():
			return "", false, lockapi.ErrShuttingDown
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Acquire implements [lockapi.Service].
func (n *Node) Acquire(ctx context.Context, req lockapi.AcquireRequest) (lockapi.Lock, error) {
	err := errors.Join(n.checkLockArgs(req.Key, req.Owner, req.TTL), lockapi.CheckWait(req.Wait, n.cfg.MaxWait))
	var l lockapi.Lock
	if err == nil {
		l, err = n.serveLock(ctx, fwdRequest{Op: "acquire", Key: req.Key, Owner: req.Owner, TTL: req.TTL, Wait: req.Wait},
			func() (lockapi.Lock, error) { return n.localAcquire(ctx, req) })
	}
	if err != nil {
		return lockapi.Lock{}, n.fail("acquire", err)
	}
	n.metrics.acquires.Inc()
	return l, nil
}

// Renew implements [lockapi.Service].
func (n *Node) Renew(ctx context.Context, req lockapi.RenewRequest) (lockapi.Lock, error) {
	err := n.checkLockArgs(req.Key, req.Owner, req.TTL)
	var l lockapi.Lock
	if err == nil {
		l, err = n.serveLock(ctx, fwdRequest{Op: "renew", Key: req.Key, Owner: req.Owner, TTL: req.TTL, Token: req.Token},
			func() (lockapi.Lock, error) { return n.localRenew(ctx, req) })
	}
	if err != nil {
		return lockapi.Lock{}, n.fail("renew", err)
	}
	n.metrics.renews.Inc()
	return l, nil
}

// Release implements [lockapi.Service].
func (n *Node) Release(ctx context.Context, req lockapi.ReleaseRequest) error {
	err := errors.Join(lockapi.CheckKey(req.Key), lockapi.CheckOwner(req.Owner))
	if err == nil {
		_, err = n.serveLock(ctx, fwdRequest{Op: "release", Key: req.Key, Owner: req.Owner, Token: req.Token},
			func() (lockapi.Lock, error) { return lockapi.Lock{}, n.localRelease(ctx, req) })
	}
	if err != nil {
		return n.fail("release", err)
	}
	n.metrics.releases.Inc()
	return nil
}

// Info implements [lockapi.Service]. The read is linearizable.
func (n *Node) Info(ctx context.Context, key string) (lockapi.Lock, error) {
	if err := lockapi.CheckKey(key); err != nil {
		return lockapi.Lock{}, n.fail("info", err)
	}
	if n.cfg.Unsafe.StaleReads {
		return n.staleInfo(key) // planted bug
	}
	l, err := n.serveLock(ctx, fwdRequest{Op: "info", Key: key}, func() (lockapi.Lock, error) { return n.localInfo(ctx, key) })
	if err != nil && !errors.Is(err, lockapi.ErrNotFound) {
		return lockapi.Lock{}, n.fail("info", err)
	}
	return l, err
}

// List implements [lockapi.Service]. The read is linearizable.
func (n *Node) List(ctx context.Context) ([]lockapi.Lock, error) {
	if n.cfg.Unsafe.StaleReads {
		return n.staleList(), nil // planted bug
	}
	addr, local, err := n.route(ctx)
	if err != nil {
		return nil, n.fail("list", err)
	}
	if local {
		locks, err := n.localList(ctx)
		if err != nil {
			return nil, n.fail("list", err)
		}
		return locks, nil
	}
	resp, err := n.forward(ctx, addr, fwdRequest{Op: "list"})
	if err != nil {
		return nil, n.fail("list", err)
	}
	if resp.Locks == nil {
		resp.Locks = []lockapi.Lock{}
	}
	return resp.Locks, nil
}

// serveLock runs local on the leader, or forwards req to the leader.
func (n *Node) serveLock(ctx context.Context, req fwdRequest, local func() (lockapi.Lock, error)) (lockapi.Lock, error) {
	addr, isLocal, err := n.route(ctx)
	if err != nil {
		return lockapi.Lock{}, err
	}
	if isLocal {
		return local()
	}
	resp, err := n.forward(ctx, addr, req)
	if err != nil {
		return lockapi.Lock{}, err
	}
	if resp.Lock == nil {
		return lockapi.Lock{}, nil
	}
	return *resp.Lock, nil
}

func (n *Node) localAcquire(ctx context.Context, req lockapi.AcquireRequest) (lockapi.Lock, error) {
	cmd := raftfsm.Command{Op: raftfsm.OpAcquire, Key: req.Key, Owner: req.Owner, TTL: req.TTL}
	var res raftfsm.Result
	var err error
	if req.Wait > 0 {
		res, err = n.acquireOrWait(ctx, cmd, req.Wait)
	} else {
		res, err = n.apply(ctx, cmd)
	}
	if err != nil {
		return lockapi.Lock{}, err
	}
	return n.resultLock(res.Lock), nil
}

func (n *Node) localRenew(ctx context.Context, req lockapi.RenewRequest) (lockapi.Lock, error) {
	res, err := n.apply(ctx, raftfsm.Command{Op: raftfsm.OpRenew, Key: req.Key, Owner: req.Owner, TTL: req.TTL, Token: req.Token})
	if err != nil {
		return lockapi.Lock{}, err
	}
	return n.resultLock(res.Lock), nil
}

func (n *Node) localRelease(ctx context.Context, req lockapi.ReleaseRequest) error {
	_, err := n.releaseWithHandoff(ctx, raftfsm.Command{Op: raftfsm.OpRelease, Key: req.Key, Owner: req.Owner, Token: req.Token})
	return err
}

func (n *Node) localInfo(ctx context.Context, key string) (lockapi.Lock, error) {
	var (
		l  raftfsm.LockState
		ok bool
		at time.Duration
	)
	if err := n.readLinearizable(ctx, func(now time.Duration) { l, ok = n.fsm.Get(key); at = now }); err != nil {
		return lockapi.Lock{}, err
	}
	if !ok || l.Deadline <= at {
		return lockapi.Lock{}, lockapi.ErrNotFound
	}
	if l.IsHash() {
		return lockapi.Lock{}, lockapi.ErrWrongType
	}
	return n.toLock(l, at), nil
}

func (n *Node) localList(ctx context.Context) ([]lockapi.Lock, error) {
	var (
		all []raftfsm.LockState
		at  time.Duration
	)
	if err := n.readLinearizable(ctx, func(now time.Duration) { all = n.fsm.List(); at = now }); err != nil {
		return nil, err
	}
	out := make([]lockapi.Lock, 0, len(all))
	for _, l := range all {
		// An expire entry for a lock past its deadline may not be applied
		// yet. Hash keys are not locks.
		if l.Deadline > at && !l.IsHash() {
			out = append(out, n.toLock(l, at))
		}
	}
	return out, nil
}

// ClusterInfo implements [lockapi.Service]. It answers without a quorum.
func (n *Node) ClusterInfo(ctx context.Context) (lockapi.ClusterInfo, error) {
	info := lockapi.ClusterInfo{Term: n.raft.CurrentTerm()}
	_, leaderID := n.raft.LeaderWithID()
	info.LeaderID = string(leaderID)
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return info, raftError(err)
	}
	voters := 0
	addrs := n.fsm.Nodes()
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
		a := addrs[string(s.ID)]
		ni := lockapi.NodeInfo{ID: string(s.ID), Address: string(s.Address), State: "unknown", RESPAddr: a.RESP, HTTPAddr: a.HTTP}
		switch {
		case s.ID == raft.ServerID(n.cfg.ID):
			ni.State = strings.ToLower(n.raft.State().String())
			ni.RESPAddr, ni.HTTPAddr = n.respAddr, n.httpAddr
		case s.ID == leaderID:
			ni.State = "leader"
		case leaderID != "":
			ni.State = "follower"
		}
		info.Nodes = append(info.Nodes, ni)
	}
	// One order on every node (a cluster bootstrapped by an older build
	// may list its members in another order on each).
	slices.SortFunc(info.Nodes, func(a, b lockapi.NodeInfo) int { return strings.Compare(a.ID, b.ID) })
	info.QuorumSize = voters/2 + 1
	info.ClusterID = n.clusterID()
	info.HasQuorum = n.hasQuorum(leaderID)
	info.Removed = leaderID == "" && n.removal.isRemoved()
	return info, nil
}

// hasQuorum reports whether this node can see a leader backed by a majority:
// a leader confirms with a heartbeat round, a follower trusts a leader it
// heard from within two election timeouts.
func (n *Node) hasQuorum(leaderID raft.ServerID) bool {
	if n.raft.State() == raft.Leader {
		_, err := n.queue.do(n.raft.VerifyLeader, nil)
		return err == nil
	}
	return leaderID != "" && time.Since(n.raft.LastContact()) < 2*n.cfg.ElectionTimeout
}

func (n *Node) checkLockArgs(key, owner string, ttl time.Duration) error {
	return errors.Join(lockapi.CheckKey(key), lockapi.CheckOwner(owner), lockapi.CheckTTL(ttl, n.cfg.MaxTTL))
}

// toLock converts a state machine lock into the service's view, with the
// remaining lease measured at cluster time now.
func (n *Node) toLock(l raftfsm.LockState, now time.Duration) lockapi.Lock {
	out := lockapi.Lock{Key: l.Key, Owner: l.Owner, Token: l.Token, Version: l.Version, TTL: l.TTL, Waiters: n.waits.count(l.Key)}
	if !l.HasTTL() {
		out.Persistent = true
		return out
	}
	out.Remaining = max(l.Deadline-now, 0)
	out.ExpiresAt = n.clock.Now().Add(out.Remaining).UTC()
	return out
}

// resultLock converts the lock a command produced; its lease starts at the
// entry's cluster time, which is the state machine's time after applying it.
func (n *Node) resultLock(l raftfsm.LockState) lockapi.Lock {
	return n.toLock(l, l.Deadline-l.TTL)
}

// fail counts a failed request by reason and returns err unchanged.
func (n *Node) fail(op string, err error) error {
	n.metrics.failures.WithLabelValues(op, errorCode(err)).Inc()
	return err
}

// staleInfo and staleList answer from this node's own state with its own
// idea of time: the planted bug of UnsafeHooks.StaleReads.
func (n *Node) staleInfo(key string) (lockapi.Lock, error) {
	l, ok := n.fsm.Get(key)
	now := n.fsm.Now()
	if !ok || l.Deadline <= now || l.IsHash() {
		return lockapi.Lock{}, lockapi.ErrNotFound
	}
	return n.toLock(l, now), nil
}

func (n *Node) staleList() []lockapi.Lock {
	now := n.fsm.Now()
	out := []lockapi.Lock{}
	for _, l := range n.fsm.List() {
		if l.Deadline > now && !l.IsHash() {
			out = append(out, n.toLock(l, now))
		}
	}
	return out
}
