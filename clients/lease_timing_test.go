package clients

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLongWaitConfirmGetsRealTimeout: an acquire that queued for longer
// than the TTL (Wait > TTL is allowed) is confirmed by a renewal before
// Acquire returns. The lease's provisional deadline (send time of the
// queued acquire + TTL) is already past then, yet each confirming attempt
// must get a real timeout (it had 10ms, so a cluster whose RENEW takes
// 40ms could never confirm, and Acquire released a healthy grant).
func TestLongWaitConfirmGetsRealTimeout(t *testing.T) {
	st := &fakeState{}
	n := newFakeNode(t, st)
	n.setScript(func(args []string) action {
		switch args[0] {
		case "LOCK.ACQUIRE":
			if len(st.commands("LOCK.ACQUIRE")) == 0 {
				return action{delay: 1500 * time.Millisecond} // queued 1.5s, then granted
			}
		case "LOCK.RENEW":
			return action{delay: 40 * time.Millisecond} // commit latency
		}
		return action{}
	})
	c := newTestClient(t, Config{}, n) // RequestTimeout 1s
	l, err := c.Acquire(ctxFor(t), "job", AcquireOptions{TTL: time.Second, Wait: 5 * time.Second, NoAutoRenew: true})
	if err != nil {
		t.Fatalf("Acquire after a 1.5s queue with 40ms renewals: %v (renewals applied: %d)", err, len(st.commands("LOCK.RENEW")))
	}
	l.Release(ctxFor(t))
}

// TestFirstRenewalCountedFromSend: keepAlive's first pause is RenewEvery
// counted from the send time of the acquire (which the deadline counts
// from), not from when Acquire returned. A slow acquire (here 450ms of a
// 1s TTL: below the TTL/2 that triggers the confirming renewal) with
// RenewEvery 550ms put the first renewal past the deadline, and the lease
// was lost with every node healthy.
func TestFirstRenewalCountedFromSend(t *testing.T) {
	st := &fakeState{}
	n := newFakeNode(t, st)
	n.setScript(firstN("LOCK.ACQUIRE", 1, action{delay: 450 * time.Millisecond}))
	c := newTestClient(t, Config{}, n)
	l, err := c.Acquire(ctxFor(t), "job", AcquireOptions{TTL: time.Second, RenewEvery: 550 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Done():
		t.Fatalf("lease lost with a healthy node: %v (renewals applied: %q)", l.Err(), st.commands("LOCK.RENEW"))
	case <-time.After(1500 * time.Millisecond):
	}
}

// TestFirstRenewalDefaultInterval: the same with the default RenewEvery
// (TTL/3): the first renewal goes out TTL/3 after the acquire was sent,
// keeping the margin that is there to retry on another node.
func TestFirstRenewalDefaultInterval(t *testing.T) {
	st := &fakeState{}
	n := newFakeNode(t, st)
	var mu sync.Mutex
	var firstRenew time.Time
	n.setScript(func(args []string) action {
		switch args[0] {
		case "LOCK.ACQUIRE":
			return action{delay: 550 * time.Millisecond}
		case "LOCK.RENEW":
			mu.Lock()
			if firstRenew.IsZero() {
				firstRenew = time.Now()
			}
			mu.Unlock()
		}
		return action{}
	})
	c := newTestClient(t, Config{}, n)
	sent := time.Now()
	l, err := c.Acquire(ctxFor(t), "job", AcquireOptions{TTL: 1200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctxFor(t))
	time.Sleep(1100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if firstRenew.IsZero() {
		t.Fatal("no renewal")
	}
	if at := firstRenew.Sub(sent); at > 400*time.Millisecond+250*time.Millisecond {
		t.Fatalf("first renewal %s after the acquire was sent (deadline at 1.2s), want about TTL/3 = 400ms", at.Round(time.Millisecond))
	}
}

// TestFatalReplyOnOneNode: one node answers renewals with an error other
// than NOTHELD (here the server's own panic reply "ERR internal error");
// the other node is healthy. The renewal must move on to it (it retried
// the same node until the deadline, and the lease was lost).
func TestFatalReplyOnOneNode(t *testing.T) {
	st := &fakeState{}
	a, b := newFakeNode(t, st), newFakeNode(t, st)
	c := newTestClient(t, Config{}, a, b)
	l, err := c.Acquire(ctxFor(t), "job", AcquireOptions{TTL: 600 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	a.setScript(func(args []string) action {
		if args[0] == "LOCK.RENEW" {
			return action{errText: "ERR internal error"}
		}
		return action{}
	})
	select {
	case <-l.Done():
		t.Fatalf("lease lost while node b would renew: %v", l.Err())
	case <-time.After(1500 * time.Millisecond):
	}
	if !errors.Is(l.Err(), nil) {
		t.Fatal(l.Err())
	}
}

// TestCancelInterruptsQueuedAcquire: the caller cancels (no deadline: a ^C
// in lockctl) an Acquire that is queued server side. go-redis watches only
// deadlines, not ctx.Done: the call must still end at once (it went on
// until the attempt's deadline, RequestTimeout + Wait).
func TestCancelInterruptsQueuedAcquire(t *testing.T) {
	st := &fakeState{}
	n := newFakeNode(t, st)
	n.setScript(func(args []string) action {
		if args[0] == "LOCK.ACQUIRE" {
			return action{delay: 20 * time.Second} // queued behind a holder
		}
		return action{}
	})
	c := newTestClient(t, Config{}, n)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.Acquire(ctx, "job", AcquireOptions{TTL: time.Second, Wait: 4 * time.Second})
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Fatalf("Acquire returned %s after being cancelled at 200ms (err %v)", took.Round(10*time.Millisecond), err)
	}
}

// TestCancelledAcquireReleasesALateGrant: the caller gives up on a queued
// Acquire, which stays queued on the server; the lock is granted to it
// later. Nobody will use that grant, so the client releases it (by its
// token) instead of leaving the lock taken for its TTL.
func TestCancelledAcquireReleasesALateGrant(t *testing.T) {
	st := &fakeState{}
	n := newFakeNode(t, st)
	n.setScript(func(args []string) action {
		if args[0] == "LOCK.ACQUIRE" {
			return action{delay: 500 * time.Millisecond} // queued, then granted
		}
		return action{}
	})
	c := newTestClient(t, Config{}, n)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := c.Acquire(ctx, "job", AcquireOptions{Owner: "w", TTL: 30 * time.Second, Wait: 4 * time.Second}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire = %v, want context.Canceled", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		owner, _ := st.holder("job")
		if owner == "" && len(st.commands("LOCK.ACQUIRE")) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5s after the grant: job held by %q; acquires %v, releases %v", owner, st.commands("LOCK.ACQUIRE"), st.commands("LOCK.RELEASE"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if rel := st.commands("LOCK.RELEASE"); len(rel) == 0 || !strings.Contains(rel[len(rel)-1], "TOKEN") {
		t.Fatalf("releases %v, want the late grant released by its token", rel)
	}
}

// TestCloseWithHungRenewal: Release and Close end promptly while a
// renewal hangs on a node.
func TestCloseWithHungRenewal(t *testing.T) {
	st := &fakeState{}
	n := newFakeNode(t, st)
	c := newTestClient(t, Config{RequestTimeout: 5 * time.Second}, n)
	l, err := c.Acquire(ctxFor(t), "job", AcquireOptions{TTL: 20 * time.Second, RenewEvery: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	n.setScript(func(args []string) action {
		if args[0] == "LOCK.RENEW" {
			return action{hang: true}
		}
		return action{}
	})
	time.Sleep(300 * time.Millisecond) // a renewal is now hung
	start := time.Now()
	rel := l.Release(ctxFor(t))
	c.Close()
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Release+Close took %s (release err %v)", took.Round(10*time.Millisecond), rel)
	}
}

// TestManyQueuedAcquiresAtOnce: every queued acquire holds a connection of
// its own while it waits, so many callers queueing at once on one node
// must all be waiting on the server together, not held back by the size
// of a connection pool (go-redis's default: 10 per CPU).
func TestManyQueuedAcquiresAtOnce(t *testing.T) {
	st := &fakeState{}
	n := newFakeNode(t, st)
	var inFlight, most atomic.Int64
	release := make(chan struct{})
	n.setScript(func(args []string) action {
		if args[0] == "LOCK.ACQUIRE" {
			now := inFlight.Add(1)
			for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
			}
			<-release // all queued until the test lets them through
			inFlight.Add(-1)
		}
		return action{}
	})
	c := newTestClient(t, Config{}, n)
	const callers = 64
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := c.Acquire(ctxFor(t), fmt.Sprint("job", i), AcquireOptions{TTL: time.Minute, Wait: 10 * time.Second})
			if err == nil {
				err = l.Release(ctxFor(t))
			}
			errs <- err
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for inFlight.Load() < callers && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := most.Load(); got != callers {
		t.Fatalf("at most %d of %d queued acquires reached the node at once", got, callers)
	}
}
