package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/raftfsm"
)

// waitQueues holds, on the leader, the callers queued for held locks
// (LOCK.ACQUIRE ... WAIT). Each key has a FIFO queue; only its head tries to
// acquire, and it is woken when the state machine frees the key, so a
// release wakes exactly one waiter and the longest waiter goes first. A
// release by the holder may instead claim the head and hand it the lock in
// the release's own raft entry (OpHandoff).
//
// A waiter moves between states only under mu:
//
//	queued  -> trying   (startTry: it heads the queue and proposes an acquire)
//	trying  -> queued   (endTry: refused, still held) or done (anything else)
//	queued  -> claimed  (claim: a release proposes a handoff to it)
//	claimed -> done     (settle: the handoff's outcome is on handed)
//	claimed -> queued   (unclaim: nothing was handed; it kept its place)
//	queued  -> left     (leave: its wait ended)
//
// A claimed waiter stays at the head of its queue until the claim's
// outcome is known, so that a free of the key meanwhile (the lock expiring
// in or just before the handoff's entry) wakes nobody behind it. A claimed
// waiter whose wait ends is marked leaving and waits for the claim's
// outcome; unclaim then ends it instead of queueing it again. So
// exactly one outcome reaches a claimed waiter, and a waiter that left is
// never queued again.
type waitQueues struct {
	mu   sync.Mutex
	keys map[string][]*waiter
}

type waiterState int

const (
	waiterQueued waiterState = iota
	waiterTrying
	waiterClaimed
	waiterDone
	waiterLeft
)

// waiter is one queued caller.
type waiter struct {
	owner  string
	ttl    time.Duration
	wake   chan struct{}
	handed chan handoff // the outcome of a claim, sent once

	state   waiterState // guarded by waitQueues.mu
	leaving bool        // claimed, and its wait ended
}

// handoff is the outcome of a claim: the lock, an error whose outcome is
// unknown, or refused (nothing was handed; only sent to a leaving waiter).
type handoff struct {
	res     raftfsm.Result
	err     error
	refused bool
}

// enqueue adds a waiter for key at the back of its queue and reports
// whether it heads the queue. It does not wake the waiter: a lock freed
// before the waiter was queued woke nobody, so the caller checks the lock
// afterwards (waitAndAcquire).
func (q *waitQueues) enqueue(key, owner string, ttl time.Duration) (*waiter, bool) {
	w := &waiter{owner: owner, ttl: ttl, wake: make(chan struct{}, 1), handed: make(chan handoff, 1)}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.keys == nil {
		q.keys = make(map[string][]*waiter)
	}
	q.keys[key] = append(q.keys[key], w)
	return w, len(q.keys[key]) == 1
}

// unlink takes w out of key's queue, waking the new head if w led it.
// q.mu must be held.
func (q *waitQueues) unlink(key string, w *waiter) {
	if q.remove(key, w) {
		if ws := q.keys[key]; len(ws) > 0 {
			signal(ws[0])
		}
	}
}

// remove takes w out of key's queue without waking anyone, and reports
// whether w led it. q.mu must be held.
func (q *waitQueues) remove(key string, w *waiter) (led bool) {
	ws := q.keys[key]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i], ws[i+1:]...)
			led = i == 0
			break
		}
	}
	if len(ws) == 0 {
		delete(q.keys, key)
	} else {
		q.keys[key] = ws
	}
	return led
}

// leave ends w's wait. It returns false if a release has claimed w: the
// caller must then take the claim's outcome from w.handed.
func (q *waitQueues) leave(key string, w *waiter) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch w.state {
	case waiterQueued:
		q.unlink(key, w)
		w.state = waiterLeft
		return true
	case waiterClaimed:
		w.leaving = true
	}
	return false // claimed, or done with its outcome already on handed
}

// startTry moves w to trying if it heads key's queue, or, when this node
// no longer leads, whatever its place (it tries, to learn of it). A claimed
// waiter never tries: its outcome arrives on handed.
func (q *waitQueues) startTry(key string, w *waiter, leader bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.state != waiterQueued {
		return false
	}
	if ws := q.keys[key]; leader && (len(ws) == 0 || ws[0] != w) {
		return false
	}
	w.state = waiterTrying
	return true
}

// endTry records the outcome of w's own acquire: refused (still held)
// puts it back in the queue; anything else ends its wait. It reports
// whether the wait is over.
func (q *waitQueues) endTry(key string, w *waiter, err error) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if errors.Is(err, lockapi.ErrHeld) {
		w.state = waiterQueued
		return false
	}
	q.unlink(key, w)
	w.state = waiterDone
	return true
}

// claim marks key's head waiter as claimed for a handoff, unless it is
// proposing its own acquire right now. It stays at the head of the queue
// until the handoff's outcome is known, so that a free of the key meanwhile
// (the lock expiring in or before the handoff's entry) wakes nobody behind
// it: the waiters behind it keep their place (FIFO).
func (q *waitQueues) claim(key string) *waiter {
	q.mu.Lock()
	defer q.mu.Unlock()
	ws := q.keys[key]
	if len(ws) == 0 || ws[0].state != waiterQueued {
		return nil
	}
	w := ws[0]
	w.state = waiterClaimed
	return w
}

// settle gives a claimed waiter the outcome of its handoff and takes it
// out of the queue. The next waiter is not woken: the key was handed over,
// or the outcome is unknown (an attempt of its own would be refused).
func (q *waitQueues) settle(key string, w *waiter, h handoff) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.remove(key, w)
	w.state = waiterDone
	w.handed <- h // never blocks: one outcome per waiter
}

// unclaim gives a claimed waiter its place back (nothing was handed; it
// is still at the head), or ends it if its wait ended meanwhile.
func (q *waitQueues) unclaim(key string, w *waiter) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.leaving {
		q.unlink(key, w) // wakes the next waiter: the key may be free
		w.state = waiterLeft
		w.handed <- handoff{refused: true}
		return
	}
	w.state = waiterQueued
	signal(w)
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

// wakeAll wakes every waiter (leadership changed: they try and learn it).
func (q *waitQueues) wakeAll() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, ws := range q.keys {
		for _, w := range ws {
			signal(w)
		}
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

// acquireOrWait acquires cmd.Key, waiting up to wait while another owner
// holds it. The caller tries at once, unless the key is held by another
// owner and others already queue for it: its attempt would be refused, and
// the queue serves them first anyway, so it queues without a raft entry.
// On a hot key that halves the entries per handover (a release handing
// over, and no refused attempt of the caller queueing again), and a
// handover no longer waits behind such attempts' fsyncs.
func (n *Node) acquireOrWait(ctx context.Context, cmd raftfsm.Command, wait time.Duration) (raftfsm.Result, error) {
	if n.waits.count(cmd.Key) > 0 && n.heldByAnother(ctx, cmd) {
		return n.waitAndAcquire(ctx, cmd, wait, false)
	}
	res, err := n.apply(ctx, cmd)
	if errors.Is(err, lockapi.ErrHeld) {
		return n.waitAndAcquire(ctx, cmd, wait, true)
	}
	return res, err
}

// heldByAnother reports whether, as this leader last applied, another
// owner holds cmd.Key with time left. It decides only when to try, never
// an answer: a grant comes from a raft entry, and so does a refusal
// (waitAndAcquire tries once when the wait ends if it never tried). False,
// also when leadership is in doubt, means "try".
func (n *Node) heldByAnother(ctx context.Context, cmd raftfsm.Command) bool {
	now, err := n.leaderNow(ctx)
	if err != nil {
		return false // the attempt learns what is wrong
	}
	l, ok := n.fsm.Get(cmd.Key)
	return ok && !l.IsHash() && l.Owner != cmd.Owner && l.Deadline > now
}

// waitAndAcquire queues for cmd.Key for up to wait and acquires it when the
// caller reaches the head of the queue and the lock is free, or is handed
// the lock by its holder's release. It returns lockapi.ErrHeld if the wait
// ends first; a caller that has not tried yet (tried false) tries once
// then, so that the refusal is raft's, as of the end of the wait. Leaving
// (timeout or a client that went away, which cancels ctx) removes the
// caller from the queue.
func (n *Node) waitAndAcquire(ctx context.Context, cmd raftfsm.Command, wait time.Duration, tried bool) (raftfsm.Result, error) {
	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	w, head := n.waits.enqueue(cmd.Key, cmd.Owner, cmd.TTL)
	// The lock may have been freed between the caller's attempt (or its
	// look at the lock) and now, waking nobody; a release or expiry from
	// now on wakes the head. Looking at the lock only after queueing
	// closes that gap, and a head that finds it still held by another
	// owner waits without a second, refused attempt.
	if head && !n.heldByAnother(ctx, cmd) {
		signal(w)
	}
	for {
		select {
		case <-waitCtx.Done():
			if n.waits.leave(cmd.Key, w) {
				if ctx.Err() != nil {
					return raftfsm.Result{}, ctx.Err()
				}
				if !tried {
					return n.apply(ctx, cmd)
				}
				return raftfsm.Result{}, lockapi.ErrHeld
			}
			// A release claimed us as the wait ended: its outcome decides.
			return handedResult(ctx, <-w.handed)
		case h := <-w.handed:
			return handedResult(ctx, h)
		case <-w.wake:
		}
		if !n.waits.startTry(cmd.Key, w, n.isLeader()) {
			continue // not our turn, or claimed: the outcome comes on handed
		}
		res, err := n.apply(ctx, cmd)
		tried = true
		if n.waits.endTry(cmd.Key, w, err) {
			return res, err
		}
	}
}

// handedResult is what a claimed waiter answers. A lock handed to a caller
// that went away meanwhile stays granted until its TTL runs out, as any
// grant whose answer is lost: releasing it here could free a lock the same
// owner has since been granted again (a retried acquire extends it, with
// the same token).
func handedResult(ctx context.Context, h handoff) (raftfsm.Result, error) {
	switch {
	case h.err != nil:
		return raftfsm.Result{}, h.err
	case h.refused && ctx.Err() != nil:
		return raftfsm.Result{}, ctx.Err()
	case h.refused:
		return raftfsm.Result{}, lockapi.ErrHeld
	case ctx.Err() != nil:
		return raftfsm.Result{}, ctx.Err()
	}
	return raftfsm.Result{Lock: h.res.Granted}, nil
}

// releaseWithHandoff releases cmd's lock; when a caller waits for it, the
// same raft entry grants it to the head waiter (OpHandoff).
func (n *Node) releaseWithHandoff(ctx context.Context, cmd raftfsm.Command) (raftfsm.Result, error) {
	// A pipelined release claims the head waiter in its turn, not before
	// the commands pipelined ahead of it (a release of the same key among
	// them hands the lock to that waiter first).
	if err := lockapi.TurnFrom(ctx).Wait(ctx); err != nil {
		return raftfsm.Result{}, fmt.Errorf("%w waiting for the commands pipelined before this one", lockapi.ErrTimeout)
	}
	w := n.waits.claim(cmd.Key)
	if w == nil {
		return n.apply(ctx, cmd)
	}
	cmd.Op, cmd.NextOwner, cmd.NextTTL = raftfsm.OpHandoff, w.owner, w.ttl
	// The waiter hears of its grant from the goroutine that answers the
	// entry, not after this caller has woken: one hand-off less per
	// handover. When the command never reached raft, it hears here.
	var once sync.Once
	decide := func(res raftfsm.Result, err error) {
		once.Do(func() {
			switch {
			case err == nil && res.Granted.Owner != "":
				n.waits.settle(cmd.Key, w, handoff{res: res})
			case err == nil, definiteFailure(err):
				// Nothing was handed: a refusal, or nothing was submitted.
				n.waits.unclaim(cmd.Key, w)
			default:
				// The entry may or may not have committed: so may the grant.
				n.waits.settle(cmd.Key, w, handoff{err: err})
			}
		})
	}
	res, err := n.applyNotify(ctx, cmd, decide)
	decide(res, err)
	return res, err
}

// definiteFailure reports whether err from apply means the command was
// refused by the state machine or never submitted.
func definiteFailure(err error) bool {
	for _, e := range []error{lockapi.ErrNotHeld, lockapi.ErrNotFound, lockapi.ErrWrongType, lockapi.ErrInvalid,
		lockapi.ErrHeld, lockapi.ErrTimeout, lockapi.ErrNoLeader, lockapi.ErrShuttingDown} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
