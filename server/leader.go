package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/raftfsm"
)

// leadership is this node's view of its own leadership and, while it leads,
// the cluster clock it stamps into commands.
//
// Cluster time continues from the last applied entry: when the node wins an
// election it first commits a barrier (so every earlier entry is applied),
// then starts its clock at the state machine's time. Entries it proposes
// carry base + (monotonic now - monotonic start). Because the state machine
// keeps the maximum of the times it has seen, cluster time never runs
// backwards across leaders; a failover pauses it (locks live a little
// longer, never shorter; Config.ClockCheckpoint bounds by how much).
type leadership struct {
	mu      sync.Mutex
	ready   bool
	base    time.Duration
	start   time.Duration
	changed chan struct{} // closed and replaced on every change
	cancel  context.CancelFunc
}

// leaderNow returns the current cluster time if this node is a leader ready
// to serve. A leader still committing its first barrier makes the caller
// wait (bounded by ctx); a non-leader fails at once with ErrNoLeader.
func (n *Node) leaderNow(ctx context.Context) (time.Duration, error) {
	if n.Err() != nil {
		// Its state machine stopped: it must not serve what it holds.
		return 0, fmt.Errorf("%w: the node stopped at an entry it cannot apply", lockapi.ErrShuttingDown)
	}
	for {
		now, ready, changed := n.readyNow()
		if ready {
			return now, nil
		}
		if n.raft.State() != raft.Leader {
			return 0, n.noLeaderError()
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return 0, fmt.Errorf("%w waiting for the new leader to become ready", lockapi.ErrTimeout)
		case <-n.ctx.Done():
			return 0, lockapi.ErrShuttingDown
		case <-time.After(n.cfg.ElectionTimeout):
		}
	}
}

// readyNow returns the current cluster time and true if this node is a
// leader ready to serve; otherwise a channel closed at the next change.
func (n *Node) readyNow() (now time.Duration, ready bool, changed <-chan struct{}) {
	n.lead.mu.Lock()
	defer n.lead.mu.Unlock()
	if !n.lead.ready {
		return 0, false, n.lead.changed
	}
	now = n.lead.base + n.clock.Monotonic() - n.lead.start
	if n.cfg.Unsafe.WallClockExpiry {
		now = time.Duration(n.clock.Now().UnixNano()) // planted bug
	}
	return now, true, nil
}

// noLeaderError says who leads, if anyone, for a request this node cannot
// serve itself.
func (n *Node) noLeaderError() error {
	if _, id := n.raft.LeaderWithID(); id != "" {
		return fmt.Errorf("%w: this node is not the leader (leader is %s)", lockapi.ErrNoLeader, id)
	}
	return fmt.Errorf("%w: no leader elected (quorum may be lost)", lockapi.ErrNoLeader)
}

// setNotReady records that this node no longer serves as leader and
// wakes waiters.
func (n *Node) setNotReady() {
	n.lead.mu.Lock()
	defer n.lead.mu.Unlock()
	n.setReadyLocked(false, 0, 0)
}

// setReadyLocked records a leadership change and wakes waiters; n.lead.mu
// must be held.
func (n *Node) setReadyLocked(ready bool, base, start time.Duration) {
	n.lead.ready, n.lead.base, n.lead.start = ready, base, start
	close(n.lead.changed)
	n.lead.changed = make(chan struct{})
}

// becomeReady records that this node leads, ready to serve with cluster
// time base at monotonic time start, unless ctx (the term) has ended. The
// check and the change are one step: stopLeading cancels ctx before it
// marks the node not ready, so a term that ends meanwhile cannot leave its
// node ready after it.
func (n *Node) becomeReady(ctx context.Context, base, start time.Duration) bool {
	n.lead.mu.Lock()
	defer n.lead.mu.Unlock()
	if ctx.Err() != nil {
		return false
	}
	n.setReadyLocked(true, base, start)
	return true
}

// watchLeadership follows raft's leadership notifications until ch closes.
func (n *Node) watchLeadership(ch <-chan bool) {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			n.stopLeading()
			return
		case isLeader := <-ch:
			n.stopLeading()
			if isLeader {
				ctx, cancel := context.WithCancel(n.ctx)
				n.lead.mu.Lock()
				n.lead.cancel = cancel
				n.lead.mu.Unlock()
				n.wg.Add(1)
				go n.leadTerm(ctx)
			}
		}
	}
}

func (n *Node) stopLeading() {
	n.lead.mu.Lock()
	cancel := n.lead.cancel
	n.lead.cancel = nil
	n.lead.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	n.setNotReady()
	// Waiters queued here retry at once and learn there is no leader
	// here any more, instead of sleeping out their WAIT.
	n.waits.wakeAll()
}

// leadTerm runs while this node leads: it commits a barrier, starts the
// cluster clock, then proposes expiry entries whenever a lock falls due.
func (n *Node) leadTerm(ctx context.Context) {
	defer n.wg.Done()
	for {
		_, err := n.queue.do(func() raft.Future { return n.raft.Barrier(n.cfg.ElectionTimeout * 10) }, nil)
		if err == nil {
			break
		}
		n.log.Warn("leader barrier failed", "err", err)
		if ctx.Err() != nil || n.raft.State() != raft.Leader {
			return
		}
	}
	base := n.fsm.Now()
	if !n.becomeReady(ctx, base, n.clock.Monotonic()) {
		return
	}
	n.log.Info("leading", "term", n.raft.CurrentTerm(), "cluster_time", base, "applied_index", n.fsm.AppliedIndex())
	n.expireLoop(ctx)
}

// maxExpiryCheck bounds how long the expiry loop sleeps, so a lock granted
// with a nearer deadline than the one it waits for is noticed promptly.
const maxExpiryCheck = 10 * time.Millisecond

// defaultClockCheckpoint is Config.ClockCheckpoint's default: how far the
// state machine's cluster time may fall behind the leader's clock while
// locks are held before the expiry loop proposes an entry that only
// carries time. Cluster time moves only with entries, and a new leader
// starts from the last one, so without these a failover after a quiet
// spell of d would give every lock d more time (etcd, which restarts every
// lease's TTL on a leader change, bounds the same with its lease
// checkpoints). With them a lock outlives its TTL by at most this much plus
// the time with no leader, for an entry a second while locks are held and
// nothing else is written.
const defaultClockCheckpoint = time.Second

// expireLoop proposes an expire entry whenever the earliest lock deadline
// has passed in cluster time, or the state machine's cluster time lags the
// leader's by Config.ClockCheckpoint while a lock is held. It proposes
// nothing while no lock is held.
func (n *Node) expireLoop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		wait := maxExpiryCheck
		if next, ok := n.fsm.NextDeadline(); ok {
			now, err := n.leaderNow(ctx)
			if err != nil {
				return
			}
			if next <= now || now-n.fsm.Now() >= n.cfg.ClockCheckpoint {
				actx, cancel := context.WithTimeout(ctx, applyTimeout)
				_, err := n.apply(actx, raftfsm.Command{Op: raftfsm.OpExpire})
				cancel()
				if err != nil && !errors.Is(err, context.Canceled) {
					n.log.Debug("expire entry failed", "err", err)
					wait = n.cfg.ElectionTimeout
				} else {
					wait = 0
				}
			} else {
				wait = min(wait, next-now)
			}
		}
		timer.Reset(wait)
	}
}
