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

// waiter is one queued caller. A release by the holder may claim the head
// waiter and hand it the lock in the release's own raft entry (OpHandoff):
// claimed waiters are out of the queue and get their outcome on handed.
type waiter struct {
	owner  string
	ttl    time.Duration
	wake   chan struct{}
	handed chan handoff // one outcome per claim
	trying bool         // proposing its own acquire: not claimable
}

// handoff is what a claimed waiter gets: the lock, an error whose outcome
// is unknown, or retry (the release was refused; the waiter is queued
// again at the head).
type handoff struct {
	res   raftfsm.Result
	err   error
	retry bool
}

func (q *waitQueues) enqueue(key, owner string, ttl time.Duration) *waiter {
	w := &waiter{owner: owner, ttl: ttl, wake: make(chan struct{}, 1), handed: make(chan handoff, 2)}
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
// It returns false if w is not queued (a release claimed it).
func (q *waitQueues) remove(key string, w *waiter) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	ws := q.keys[key]
	found := false
	for i, x := range ws {
		if x == w {
			found = true
			ws = append(ws[:i], ws[i+1:]...)
			if i == 0 && len(ws) > 0 {
				signal(ws[0])
			}
			break
		}
	}
	q.set(key, ws)
	return found
}

func (q *waitQueues) set(key string, ws []*waiter) {
	if len(ws) == 0 {
		delete(q.keys, key)
	} else {
		q.keys[key] = ws
	}
}

// claim takes key's head waiter out of the queue for a handoff, unless it
// is proposing its own acquire right now.
func (q *waitQueues) claim(key string) *waiter {
	q.mu.Lock()
	defer q.mu.Unlock()
	ws := q.keys[key]
	if len(ws) == 0 || ws[0].trying {
		return nil
	}
	w := ws[0]
	q.set(key, ws[1:])
	return w
}

// unclaim puts a claimed waiter back at the head of key's queue (the
// release it was claimed by was refused) and wakes it.
func (q *waitQueues) unclaim(key string, w *waiter) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.keys == nil {
		q.keys = make(map[string][]*waiter)
	}
	q.keys[key] = append([]*waiter{w}, q.keys[key]...)
	signal(w)
}

// startTry marks w as proposing its own acquire if it heads key's queue.
func (q *waitQueues) startTry(key string, w *waiter) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if ws := q.keys[key]; len(ws) == 0 || ws[0] != w {
		return false
	}
	w.trying = true
	return true
}

func (q *waitQueues) endTry(w *waiter) {
	q.mu.Lock()
	defer q.mu.Unlock()
	w.trying = false
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
// caller reaches the head of the queue and the lock is free, or is handed
// the lock by its holder's release. It returns lockapi.ErrHeld if the wait
// ends first. Leaving (timeout or a client that went away, which cancels
// ctx) removes the caller from the queue.
func (n *Node) waitAndAcquire(ctx context.Context, cmd raftfsm.Command, wait time.Duration) (raftfsm.Result, error) {
	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	w := n.waits.enqueue(cmd.Key, cmd.Owner, cmd.TTL)
	for {
		select {
		case <-waitCtx.Done():
			if n.waits.remove(cmd.Key, w) {
				if ctx.Err() != nil {
					return raftfsm.Result{}, ctx.Err()
				}
				return raftfsm.Result{}, lockapi.ErrHeld
			}
			// A release claimed us as the wait ended: take its outcome.
			return n.takeHandoff(ctx, cmd.Key, w, <-w.handed)
		case h := <-w.handed:
			if h.retry {
				continue
			}
			return n.takeHandoff(ctx, cmd.Key, w, h)
		case <-w.wake:
		}
		// Only the head tries; after a leadership change everyone does,
		// to learn of it.
		if leader := n.isLeader(); !n.waits.startTry(cmd.Key, w) && leader {
			continue
		}
		res, err := n.apply(ctx, cmd)
		n.waits.endTry(w)
		if !errors.Is(err, lockapi.ErrHeld) {
			n.waits.remove(cmd.Key, w)
			return res, err
		}
	}
}

// takeHandoff returns the lock a release handed to w. A caller that went
// away meanwhile does not keep it: the lock is released at once, so it does
// not sit unused until its TTL runs out.
func (n *Node) takeHandoff(ctx context.Context, key string, w *waiter, h handoff) (raftfsm.Result, error) {
	if h.retry {
		// The release was refused and w requeued; the wait is over.
		n.waits.remove(key, w)
		if ctx.Err() != nil {
			return raftfsm.Result{}, ctx.Err()
		}
		return raftfsm.Result{}, lockapi.ErrHeld
	}
	if h.err != nil {
		return raftfsm.Result{}, h.err
	}
	if ctx.Err() != nil {
		g := h.res.Granted
		go func() {
			rctx, cancel := context.WithTimeout(n.ctx, applyTimeout)
			defer cancel()
			if _, err := n.apply(rctx, raftfsm.Command{Op: raftfsm.OpRelease, Key: g.Key, Owner: g.Owner, Token: g.Token}); err != nil {
				n.log.Debug("release of a lock handed to a caller that left", "key", g.Key, "err", err)
			}
		}()
		return raftfsm.Result{}, ctx.Err()
	}
	return raftfsm.Result{Lock: h.res.Granted}, nil
}

// releaseWithHandoff releases req's lock; when a caller waits for it, the
// same raft entry grants it to the head waiter (OpHandoff).
func (n *Node) releaseWithHandoff(ctx context.Context, cmd raftfsm.Command) (raftfsm.Result, error) {
	w := n.waits.claim(cmd.Key)
	if w == nil {
		return n.apply(ctx, cmd)
	}
	cmd.Op, cmd.NextOwner, cmd.NextTTL = raftfsm.OpHandoff, w.owner, w.ttl
	res, err := n.apply(ctx, cmd)
	switch {
	case err == nil && res.Granted.Owner != "":
		w.handed <- handoff{res: res}
	case err == nil, errors.Is(err, lockapi.ErrNotHeld), errors.Is(err, lockapi.ErrNotFound),
		errors.Is(err, lockapi.ErrWrongType), errors.Is(err, lockapi.ErrInvalid),
		errors.Is(err, lockapi.ErrTimeout), errors.Is(err, lockapi.ErrNoLeader), errors.Is(err, lockapi.ErrShuttingDown):
		// Nothing was handed (a refusal, or nothing was submitted).
		n.waits.unclaim(cmd.Key, w)
		w.handed <- handoff{retry: true}
	default:
		// The entry may or may not have committed: so may the grant.
		w.handed <- handoff{err: err}
	}
	return res, err
}
