package clients

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// AcquireOptions configures [Client.Acquire]. The zero value asks for a
// lease of [DefaultTTL] under a fresh owner identity, without queueing,
// renewed automatically every TTL/3.
type AcquireOptions struct {
	// TTL is the lease length, at least 1ms and at most the server's
	// --max-ttl; sub-millisecond parts are dropped. Default: [DefaultTTL].
	TTL time.Duration
	// Wait is how long to queue (server side, first come first served)
	// while another owner holds the lock. Zero tries once. At most the
	// server's --max-wait (5m by default).
	Wait time.Duration
	// Owner is the identity the lock is held under. Default: a fresh
	// [NewOwner] per call. Acquiring a lock already held by Owner extends
	// it and returns the same token; so two leases must not share an owner
	// unless they mean to share the lock. Note that an Acquire that fails
	// after an unknown outcome releases the lock under Owner, which frees
	// it also if Owner held it before the call.
	Owner string
	// RenewEvery is the pause between automatic renewals, counted from when
	// the last successful renewal, or the acquire, was sent (as the
	// lease's deadline is). Default: TTL/3. Must be below the time the
	// lease is trusted: TTL less 1% and 2ms (so a TTL of 3ms or less is
	// refused with the default).
	RenewEvery time.Duration
	// NoAutoRenew turns automatic renewal off: the lease then lasts one TTL
	// unless [Lease.Renew] is called.
	NoAutoRenew bool
	// RenewCheck, when set, is called before each automatic renewal. When
	// it returns an error the renewal is skipped (and the check tried again
	// a little later), so a worker that is stuck or unhealthy lets its lease
	// run out instead of holding the lock forever; the lease then ends at
	// its deadline with an error wrapping the check's. It runs on the
	// lease's renewal goroutine and must return quickly.
	RenewCheck func() error
}

// withDefaults fills in defaults and checks o.
func (o AcquireOptions) withDefaults() (AcquireOptions, error) {
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	o.TTL = o.TTL.Truncate(time.Millisecond)
	if o.TTL < time.Millisecond {
		return o, fmt.Errorf("%w: ttl %s is under 1ms", ErrInvalid, o.TTL)
	}
	if o.Wait < 0 {
		return o, fmt.Errorf("%w: negative wait %s", ErrInvalid, o.Wait)
	}
	if o.Owner == "" {
		o.Owner = NewOwner()
	}
	if o.RenewEvery == 0 {
		o.RenewEvery = o.TTL / 3
	}
	if o.RenewEvery <= 0 || o.RenewEvery >= o.TTL {
		return o, fmt.Errorf("%w: renewal interval %s must be positive and below the ttl %s", ErrInvalid, o.RenewEvery, o.TTL)
	}
	if trusted := trustedFor(o.TTL); o.RenewEvery >= trusted {
		return o, fmt.Errorf("%w: a lease of ttl %s is trusted for %s (less 1%% and 2ms for clock drift), which must be longer than the renewal interval %s", ErrInvalid, o.TTL, max(trusted, 0), o.RenewEvery)
	}
	return o, nil
}

// driftMargin is how much of a lease's TTL the client does not trust, as
// Redlock does: 1% of the TTL plus 2ms. The server counts the TTL on its
// leader's clock from when it applies the grant, which is after the
// client sent the request, so the lock cannot expire before send + TTL on
// that clock; the margin covers the client's clock running slower than the
// leader's (clock rates differ by far less than 1% between machines that
// keep time). A TTL of 2ms or less leaves no time to trust.
func driftMargin(ttl time.Duration) time.Duration { return ttl/100 + 2*time.Millisecond }

// trustedFor is how long after a request was sent a lease of ttl granted
// by it can be trusted.
func trustedFor(ttl time.Duration) time.Duration { return ttl - driftMargin(ttl) }

// ms formats d as whole milliseconds, the server's bare-integer duration.
func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// Acquire takes the lock named key and returns its lease. When another
// owner holds the lock it queues for up to opts.Wait, then fails with an
// error wrapping [ErrHeld].
//
// A request whose outcome is unknown (dropped connection, UNKNOWN or
// TIMEOUT reply) is retried with the same owner, which is idempotent; if
// the call still fails, the lock is released under that owner (best
// effort) so that a grant the caller never heard of does not linger.
//
// The lease's deadline is its TTL, less a margin for clock drift (1% +
// 2ms), counted from when the successful request was sent. If that leaves
// less than half the TTL (a long queue, slow retries), Acquire renews once
// before returning.
//
// A caller that gives up on a queued acquire (ctx cancelled) returns at
// once, while the abandoned request stays queued on the server until its
// wait ends; if the lock is granted to it meanwhile, the client releases
// that grant right away (the call has failed by then), so that it does not
// sit unused for its TTL.
func (c *Client) Acquire(ctx context.Context, key string, opts AcquireOptions) (*Lease, error) {
	op := fmt.Sprintf("acquire %q", key)
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if key == "" {
		return nil, fmt.Errorf("%s: %w: empty key", op, ErrInvalid)
	}
	waitUntil := time.Now().Add(opts.Wait)
	waitLeft := func() time.Duration {
		if opts.Wait == 0 {
			return 0
		}
		return max(0, time.Until(waitUntil))
	}
	// failed is set, before anything is released, once this call fails. A
	// grant answered to an attempt the call stopped waiting for (it timed
	// out, or the caller gave up) is released by its token only then: had
	// the call succeeded, such a grant (same owner, same token) is the
	// lease's own lock; and one that comes before the call fails is
	// covered by the release under the owner that the failure sends.
	var failed atomic.Bool
	res, err := c.do(ctx, request{
		op: op,
		args: func() []any {
			args := []any{"LOCK.ACQUIRE", key, opts.Owner, ms(opts.TTL)}
			if opts.Wait > 0 {
				args = append(args, "WAIT", ms(waitLeft()))
			}
			return args
		},
		timeout:  func() time.Duration { return c.cfg.RequestTimeout + waitLeft() },
		blocking: opts.Wait > 0,
		late: func(v any) {
			if token, ok := v.(int64); ok && token > 0 && failed.Load() {
				c.forget(context.Background(), key, opts.Owner, uint64(token))
			}
		},
	})
	var token uint64
	switch {
	case err != nil:
	case res.val == nil:
		err = fmt.Errorf("%s: %w", op, ErrHeld)
	default:
		if token, err = asUint(res.val); err != nil {
			err = fmt.Errorf("%s: %w", op, err)
		}
	}
	if err != nil {
		failed.Store(true)
		if res.unknown {
			c.forget(ctx, key, opts.Owner, 0)
		}
		return nil, err
	}
	l := &Lease{
		c: c, key: key, owner: opts.Owner, token: token, ttl: opts.TTL, opts: opts,
		deadline: res.sent.Add(trustedFor(opts.TTL)), lastSent: res.sent, done: make(chan struct{}),
	}
	if time.Until(l.deadline) < opts.TTL/2 {
		// The grant happened at the latest just now, so it lasts at most
		// one TTL from now: no point trying longer.
		cctx, cancel := context.WithTimeout(ctx, opts.TTL)
		err := l.renewOnce(cctx)
		cancel()
		if err != nil {
			failed.Store(true)
			c.forget(ctx, key, opts.Owner, token)
			return nil, fmt.Errorf("%s: granted, but the lease could not be confirmed before it ran out: %w", op, err)
		}
	}
	if !c.track(l) {
		failed.Store(true)
		c.forget(ctx, key, opts.Owner, token)
		return nil, fmt.Errorf("%s: %w", op, ErrClosed)
	}
	return l, nil
}

// forget releases key under owner, best effort, after an acquire that
// failed but may have taken effect: with the grant's token when it is
// known (so that another grant under the same owner is left alone),
// without when the outcome was unknown (token 0). The caller's context may
// have ended, which is often why the acquire failed: forget gets its own
// time.
func (c *Client) forget(ctx context.Context, key, owner string, token uint64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.RequestTimeout)
	defer cancel()
	c.do(ctx, request{
		op: fmt.Sprintf("release %q", key),
		args: func() []any {
			if token != 0 {
				return []any{"LOCK.RELEASE", key, owner, "TOKEN", strconv.FormatUint(token, 10)}
			}
			return []any{"LOCK.RELEASE", key, owner}
		},
	})
}

// track registers a new lease with c and starts its deadline timer and
// renewals; it reports false when c is closed. (Lock order: a lease's mu
// before c.mu, never the other way.)
func (c *Client) track(l *Lease) bool {
	l.loopCtx, l.loopCancel = context.WithCancel(c.ctx)
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		l.loopCancel()
		return false
	}
	if c.leases == nil {
		c.leases = make(map[*Lease]struct{})
	}
	c.leases[l] = struct{}{}
	if !l.opts.NoAutoRenew {
		c.wg.Add(1)
	}
	c.mu.Unlock()
	l.mu.Lock()
	l.timer = time.AfterFunc(time.Until(l.deadline), l.onDeadline)
	l.mu.Unlock()
	if !l.opts.NoAutoRenew {
		go l.keepAlive()
	}
	return true
}

// untrack forgets an ended lease.
func (c *Client) untrack(l *Lease) {
	c.mu.Lock()
	delete(c.leases, l)
	c.mu.Unlock()
}

// Lease is a held lock. Its methods are safe for concurrent use.
type Lease struct {
	c          *Client
	key, owner string
	token      uint64
	ttl        time.Duration
	opts       AcquireOptions

	loopCtx    context.Context // ends the renewal goroutine
	loopCancel context.CancelFunc

	mu       sync.Mutex
	deadline time.Time // lastSent + trustedFor(ttl): trust ends here
	lastSent time.Time // send time of the last successful acquire or renew
	lastErr  error     // the last renewal failure, for the deadline error
	err      error     // why the lease ended; nil while it lasts
	done     chan struct{}
	timer    *time.Timer // fires at deadline
}

// Key returns the lock's name.
func (l *Lease) Key() string { return l.key }

// Owner returns the identity the lock is held under.
func (l *Lease) Owner() string { return l.owner }

// Token returns the fencing token of the grant: strictly larger than the
// token of any earlier grant of the same key, unchanged by renewals.
// Give it to the resource the lock protects, which should refuse a request
// carrying a token lower than the highest it has seen.
func (l *Lease) Token() uint64 { return l.token }

// TTL returns the lease length asked for.
func (l *Lease) TTL() time.Duration { return l.ttl }

// Deadline returns when the lease stops being trustworthy unless renewed:
// the send time of the last successful acquire or renew plus the TTL, less
// a margin for clock drift (1% of the TTL plus 2ms, as Redlock allows).
// The server cannot expire the lock earlier.
func (l *Lease) Deadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline
}

// Done returns a channel that is closed when the lease ends: lost (a
// renewal was refused, or none was confirmed before the deadline),
// released, or ended by [Client.Close]. Stop the work the lock protects
// when it closes.
func (l *Lease) Done() <-chan struct{} { return l.done }

// Err returns nil while the lease lasts. Afterwards it returns why it
// ended: an error wrapping [ErrLeaseLost] (with [ErrNotHeld] when a renewal
// was refused, or [ErrClosed] after [Client.Close]), or [ErrReleased]. Past
// the deadline it reports the loss even if the timer that closes Done has
// not fired yet.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil && !time.Now().Before(l.deadline) {
		l.expireLocked()
	}
	return l.err
}

// endLocked ends the lease with err unless it already ended; l.mu is held.
func (l *Lease) endLocked(err error) {
	if l.err != nil {
		return
	}
	l.err = err
	close(l.done)
	if l.timer != nil {
		l.timer.Stop()
	}
	if l.loopCancel != nil {
		l.loopCancel()
	}
	l.c.untrack(l)
}

// end ends the lease with err unless it already ended.
func (l *Lease) end(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.endLocked(err)
}

// expireLocked ends the lease because its deadline passed; l.mu is held.
func (l *Lease) expireLocked() {
	err := fmt.Errorf("%w: no renewal confirmed before the deadline (%s after the last one was sent)", ErrLeaseLost, trustedFor(l.ttl))
	if l.lastErr != nil {
		err = fmt.Errorf("%w; last renewal error: %w", err, l.lastErr)
	}
	l.endLocked(err)
}

// onDeadline runs when the deadline timer fires.
func (l *Lease) onDeadline() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return
	}
	if left := time.Until(l.deadline); left > 0 {
		l.timer.Reset(left) // extended meanwhile
		return
	}
	l.expireLocked()
}

// extend records a successful renewal sent at sent; it reports false if
// the lease had already ended.
func (l *Lease) extend(sent time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return false
	}
	if sent.After(l.lastSent) {
		l.lastSent = sent
		l.deadline = sent.Add(trustedFor(l.ttl))
		if l.timer != nil {
			l.timer.Reset(time.Until(l.deadline))
		}
	}
	l.lastErr = nil
	return true
}

// renewTimeout bounds one renewal attempt on one node to half the time
// left before ctx's deadline (the lease's, for the renewals that keep it;
// a fresh TTL for the one that confirms a grant made after a long queue,
// whose lease's provisional deadline may have passed already), so that a
// hung node leaves time to try another.
func (l *Lease) renewTimeout(ctx context.Context) func() time.Duration {
	return func() time.Duration {
		end := l.Deadline()
		if d, ok := ctx.Deadline(); ok {
			end = d
		}
		return min(l.c.cfg.RequestTimeout, max(time.Until(end)/2, 10*time.Millisecond))
	}
}

// renewOnce sends LOCK.RENEW (with the token), retrying until an answer or
// the end of ctx, and extends the deadline on success.
func (l *Lease) renewOnce(ctx context.Context) error {
	op := fmt.Sprintf("renew %q", l.key)
	res, err := l.c.do(ctx, request{
		op: op,
		args: func() []any {
			return []any{"LOCK.RENEW", l.key, l.owner, ms(l.ttl), "TOKEN", strconv.FormatUint(l.token, 10)}
		},
		timeout:    l.renewTimeout(ctx),
		elsewhere:  true,
		attempts:   1 << 20, // bounded by ctx, which ends at the deadline
		maxBackoff: max(l.ttl/8, time.Millisecond),
	})
	if err != nil {
		return err
	}
	tok, err := asUint(res.val)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if tok != l.token {
		return fmt.Errorf("%s: %w: token %d, the lease has %d", op, ErrNotHeld, tok, l.token)
	}
	if !l.extend(res.sent) {
		return l.Err()
	}
	return nil
}

// Renew extends the lease by its TTL now. Automatic renewal makes calling
// it unnecessary; with [AcquireOptions.NoAutoRenew] it is how the lease is
// kept. It gives up at the lease's deadline. A refused renewal ends the
// lease with an error wrapping [ErrLeaseLost] and [ErrNotHeld].
func (l *Lease) Renew(ctx context.Context) error {
	if err := l.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithDeadline(ctx, l.Deadline())
	defer cancel()
	err := l.renewOnce(ctx)
	l.noteRenewal(err)
	return err
}

// noteRenewal ends the lease if err is a refusal, and otherwise remembers
// err for the deadline error.
func (l *Lease) noteRenewal(err error) {
	switch {
	case err == nil:
	case errors.Is(err, ErrNotHeld):
		l.end(fmt.Errorf("%w: renewal refused: %w", ErrLeaseLost, err))
	default:
		l.mu.Lock()
		if !errors.Is(err, ErrClosed) && !errors.Is(err, context.Canceled) {
			l.lastErr = err
		}
		l.mu.Unlock()
	}
}

// keepAlive renews the lease every RenewEvery until it ends.
func (l *Lease) keepAlive() {
	defer l.c.wg.Done()
	ctx := l.loopCtx
	next := l.untilRenewal() // from when the acquire was sent
	failures := 0
	for {
		if !sleep(ctx, next) {
			if l.c.ctx.Err() != nil {
				l.end(fmt.Errorf("%w: %w", ErrLeaseLost, ErrClosed))
			}
			return
		}
		if l.opts.RenewCheck != nil {
			if err := l.opts.RenewCheck(); err != nil {
				l.mu.Lock()
				l.lastErr = fmt.Errorf("renewal check: %w", err)
				l.mu.Unlock()
				next = max(l.opts.RenewEvery/4, time.Millisecond)
				continue
			}
		}
		rctx, cancel := context.WithDeadline(ctx, l.Deadline())
		err := l.renewOnce(rctx)
		cancel()
		l.noteRenewal(err)
		if l.Err() != nil {
			return
		}
		if err != nil {
			// Only fatal replies get here (renewOnce moves on to another
			// node after any but NOTHELD, so every node refused): try
			// again later; the deadline ends the lease if they persist.
			failures++
			next = min(l.c.backoff(failures), l.opts.RenewEvery)
			continue
		}
		failures = 0
		next = l.untilRenewal()
	}
}

// untilRenewal is the time left until the next automatic renewal:
// RenewEvery after the last successful renewal, or the acquire, was sent.
func (l *Lease) untilRenewal() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Until(l.lastSent.Add(l.opts.RenewEvery))
}

// Release frees the lock (LOCK.RELEASE with the token) and ends the lease:
// renewals stop, Done closes and Err reports [ErrReleased] (unless the
// lease had already ended). It returns an error wrapping [ErrNotHeld] when
// the lock was no longer held under this lease (it had expired or been
// taken), and nil when an earlier attempt of this call had an unknown
// outcome and the lock is free of this lease now. A release that fails
// for other reasons leaves the lock to expire after its TTL.
func (l *Lease) Release(ctx context.Context) error {
	l.end(ErrReleased)
	op := fmt.Sprintf("release %q", l.key)
	res, err := l.c.do(ctx, request{
		op: op,
		args: func() []any {
			return []any{"LOCK.RELEASE", l.key, l.owner, "TOKEN", strconv.FormatUint(l.token, 10)}
		},
	})
	if err != nil {
		return err
	}
	if n, _ := asInt(res.val); n == 1 || res.unknown {
		return nil
	}
	return fmt.Errorf("%s: %w", op, ErrNotHeld)
}
