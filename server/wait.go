package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/raftfsm"
)

// waitQueues holds, on the leader, the callers queued for held locks
// (LOCK.ACQUIRE ... WAIT). Each key has a FIFO queue; only its head tries to
// acquire, and it is woken when the state machine frees the key, so a
// release wakes exactly one waiter and the longest waiter goes first.
type waitQueues struct {
	mu   sync.Mutex
	keys map[string][]*waiter
}

type waiter struct{ wake chan struct{} }

func (q *waitQueues) enqueue(key string) *waiter {
	w := &waiter{wake: make(chan struct{}, 1)}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.keys == nil {
		q.keys = make(map[string][]*waiter)
	}
	q.keys[key] = append(q.keys[key], w)
	if len(q.keys[key]) == 1 {
		signal(w) // the lock may have been freed since the first attempt
	}
	return w
}

// remove takes w out of key's queue and wakes the new head if w led it.
func (q *waitQueues) remove(key string, w *waiter) {
	q.mu.Lock()
	defer q.mu.Unlock()
	ws := q.keys[key]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i], ws[i+1:]...)
			if i == 0 && len(ws) > 0 {
				signal(ws[0])
			}
			break
		}
	}
	if len(ws) == 0 {
		delete(q.keys, key)
	} else {
		q.keys[key] = ws
	}
}

func (q *waitQueues) isHead(key string, w *waiter) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	ws := q.keys[key]
	return len(ws) > 0 && ws[0] == w
}

// freed wakes the head waiter of key. It never blocks: it runs inside the
// state machine's Apply.
func (q *waitQueues) freed(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if ws := q.keys[key]; len(ws) > 0 {
		signal(ws[0])
	}
}

// wakeAll wakes every head (leadership changed: they retry and learn it).
func (q *waitQueues) wakeAll() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, ws := range q.keys {
		signal(ws[0])
	}
}

// count returns how many callers wait for key.
func (q *waitQueues) count(key string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.keys[key])
}

func signal(w *waiter) {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// waitAndAcquire queues for cmd.Key for up to wait and acquires it when the
// caller reaches the head of the queue and the lock is free. It returns
// lockapi.ErrHeld if the wait ends first. Leaving (timeout or a client that
// went away, which cancels ctx) removes the caller from the queue.
func (n *Node) waitAndAcquire(ctx context.Context, cmd raftfsm.Command, wait time.Duration) (raftfsm.Result, error) {
	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	w := n.waits.enqueue(cmd.Key)
	defer n.waits.remove(cmd.Key, w)
	for {
		select {
		case <-waitCtx.Done():
			if ctx.Err() != nil {
				return raftfsm.Result{}, ctx.Err()
			}
			return raftfsm.Result{}, lockapi.ErrHeld
		case <-w.wake:
		}
		if !n.waits.isHead(cmd.Key, w) && n.isLeader() {
			continue
		}
		res, err := n.apply(ctx, cmd)
		if !errors.Is(err, lockapi.ErrHeld) {
			return res, err
		}
	}
}
