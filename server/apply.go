package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/raftfsm"
)

// applyTimeout bounds a command's wait to enter the raft queue when its
// context has no deadline.
const applyTimeout = 10 * time.Second

// apply stamps c with the leader's cluster time, submits it to raft through
// the packer (packer.go, the only place in the code base that calls
// raft.Apply) and returns the state machine's result. The returned error is a lockapi sentinel (wrapped):
// either a refusal decided by the state machine or a failure to commit.
//
// A command that is one of an ordered sequence (a client's pipeline: ctx
// carries a [lockapi.Turn]) enters the packer's queue after its predecessor
// and lets its successor in as soon as it is queued, so a pipeline's
// commands keep their order in the log and share entries or raft's batches.
func (n *Node) apply(ctx context.Context, c raftfsm.Command) (raftfsm.Result, error) {
	return n.applyNotify(ctx, c, nil)
}

// applyNotify is apply that also calls early, when it is not nil, with the
// same outcome as soon as the entry has been applied or has failed, from
// the goroutine that answers the entry and before apply's caller wakes, so
// early must not block. early is not called when apply fails before its
// command reached raft, or when the node closes with it still queued.
func (n *Node) applyNotify(ctx context.Context, c raftfsm.Command, early func(raftfsm.Result, error)) (raftfsm.Result, error) {
	turn := lockapi.TurnFrom(ctx)
	defer turn.Done()
	if err := turn.Wait(ctx); err != nil {
		return raftfsm.Result{}, fmt.Errorf("%w waiting for the commands pipelined before this one", lockapi.ErrTimeout)
	}
	now, err := n.leaderNow(ctx)
	if err != nil {
		return raftfsm.Result{}, err
	}
	c.Now = now
	p := &proposal{data: raftfsm.Encode(nil, c), done: make(chan struct{})}
	if early != nil {
		p.notifyEarly(early)
	}
	p.deadline, _ = ctx.Deadline()
	if !p.deadline.IsZero() && time.Until(p.deadline) <= 0 {
		return raftfsm.Result{}, fmt.Errorf("%w before the command was submitted", lockapi.ErrTimeout)
	}
	start := time.Now()
	err = n.propose(ctx, p, turn.Done)
	if err == nil {
		n.metrics.observeApply(start)
	}
	return outcome(p.res, err)
}

// applyAsync is apply for a caller that must not block (the loop reading a
// forwarded connection): it queues c for raft and returns true, and calls
// then with apply's result when the entry is applied or has failed, from the
// packer's goroutines, so then must not block either. It returns false,
// having queued nothing, where apply would wait: this node is not a leader
// ready to serve, or the packer's queue is full. c must not be one of a
// pipeline. A node that closes with c still queued never calls then; its
// forwarded connections close with it.
func (n *Node) applyAsync(c raftfsm.Command, deadline time.Time, then func(raftfsm.Result, error)) bool {
	if n.Err() != nil {
		return false
	}
	now, ready, _ := n.readyNow()
	if !ready {
		return false
	}
	c.Now = now
	p := &proposal{data: raftfsm.Encode(nil, c), deadline: deadline}
	start := time.Now()
	p.then = func() {
		if p.err == nil {
			n.metrics.observeApply(start)
		}
		then(outcome(p.res, p.err))
	}
	select {
	case n.pack.in <- p:
		return true
	default:
		return false
	}
}

// outcome turns what a proposal came back with into apply's answer: the
// state machine's result and refusal, or a lockapi sentinel that says
// whether the command may have taken effect.
func outcome(res raftfsm.Result, err error) (raftfsm.Result, error) {
	switch {
	case errors.Is(err, lockapi.ErrShuttingDown), errors.Is(err, lockapi.ErrTimeout):
		return raftfsm.Result{}, err // never submitted
	case err != nil:
		return raftfsm.Result{}, raftError(err)
	case errors.Is(res.Err, raftfsm.ErrHalted):
		// Committed, so the peers applied it; this node could not.
		return raftfsm.Result{}, fmt.Errorf("%w: %v", lockapi.ErrUnknownOutcome, res.Err)
	}
	return res, res.Err
}

// raftError turns an error from a raft future into a lockapi sentinel that
// says whether the outcome is known.
func raftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		// Never dispatched: a definite failure.
		return fmt.Errorf("%w: this node is not the leader", lockapi.ErrNoLeader)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		// Never entered the log: a definite failure.
		return fmt.Errorf("%w: raft did not accept the command in time", lockapi.ErrTimeout)
	case errors.Is(err, raft.ErrLeadershipTransferInProgress):
		// Refused at the door of the log while leadership moves: definite.
		return fmt.Errorf("%w: leadership is being transferred", lockapi.ErrNoLeader)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrAbortedByRestore):
		return lockapi.ErrUnknownOutcome
	case errors.Is(err, raft.ErrRaftShutdown):
		// The command may already be in the log: its outcome is unknown,
		// not a definite refusal (CLUSTERDOWN would say nothing happened).
		return fmt.Errorf("%w (the node shut down with the command in flight)", lockapi.ErrUnknownOutcome)
	}
	return fmt.Errorf("raft: %w", err)
}

// readLinearizable runs read against the state machine and returns nil only
// if the result may be served as linearizable:
//
//  1. this node leads and has committed its term's barrier (leaderNow), so
//     every entry committed in earlier terms is applied;
//  2. read runs; every write acknowledged on this leader is already in the
//     state machine, since raft answers a write only after applying it;
//  3. a heartbeat round to a majority confirms no newer leader could have
//     acknowledged anything before the read (VerifyLeader).
//
// The state is read before leadership is confirmed, not after: confirming
// first would let a leader paused between the two steps serve state that a
// newer leader has already changed (hashicorp/raft#603).
func (n *Node) readLinearizable(ctx context.Context, read func(now time.Duration)) error {
	now, err := n.leaderNow(ctx)
	if err != nil {
		return err
	}
	read(now)
	if _, err := n.queue.do(n.raft.VerifyLeader, nil); err != nil {
		if errors.Is(err, lockapi.ErrShuttingDown) {
			return err
		}
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return fmt.Errorf("%w: leadership could not be confirmed", lockapi.ErrNoLeader)
		}
		return raftError(err)
	}
	return nil
}
