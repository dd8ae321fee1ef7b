package server

import (
	"sync"

	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/lockapi"
)

// applyQueue keeps raft from shutting down with a future in one of its
// queues. raft's apply queue is buffered (BatchApplyCh, for pipelines), so
// is its leader-verify queue, and a future still in either when raft shuts
// down is never answered: its caller would wait forever, and Close with it.
// So every Apply, Barrier and VerifyLeader runs, until its future answers,
// under the read lock, and Close takes the write lock before raft.Shutdown:
// it waits for the futures in flight (raft is still running, so each
// commits, or fails when leadership is lost) and turns later callers away.
type applyQueue struct {
	mu     sync.RWMutex
	closed bool
}

// do runs submit and waits for its future's error, unless the node is
// closing (lockapi.ErrShuttingDown: nothing was submitted). afterSubmit,
// if not nil, runs once the future is queued.
func (q *applyQueue) do(submit func() raft.Future, afterSubmit func()) (raft.Future, error) {
	if err := q.enter(); err != nil {
		return nil, err
	}
	defer q.leave()
	f := submit()
	if afterSubmit != nil {
		afterSubmit()
	}
	return f, f.Error()
}

// enter admits one future (lockapi.ErrShuttingDown once the node is
// closing); the caller submits it and calls leave once it has answered,
// from any goroutine.
func (q *applyQueue) enter() error {
	q.mu.RLock()
	if q.closed {
		q.mu.RUnlock()
		return lockapi.ErrShuttingDown
	}
	return nil
}

// leave ends what enter began.
func (q *applyQueue) leave() { q.mu.RUnlock() }

// close waits for the futures in flight and refuses new ones.
func (q *applyQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
}
