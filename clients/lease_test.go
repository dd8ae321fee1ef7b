package clients

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// waitDone waits up to d for l.Done and reports when it closed.
func waitDone(t *testing.T, l *Lease, d time.Duration) time.Time {
	t.Helper()
	select {
	case <-l.Done():
		return time.Now()
	case <-time.After(d):
		t.Fatalf("lease still not done after %s (err %v)", d, l.Err())
		return time.Time{}
	}
}

// TestLeaseRenews: a 600ms lease held for 1.2s stays valid with the same
// token, renewed about every 200ms.
func TestLeaseRenews(t *testing.T) {
	st := &fakeState{}
	c := newTestClient(t, Config{}, newFakeNode(t, st))
	l, err := c.Acquire(ctxFor(t), "job", AcquireOptions{TTL: 600 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Done():
		t.Fatalf("lease lost: %v", l.Err())
	case <-time.After(1200 * time.Millisecond):
	}
	if l.Err() != nil {
		t.Fatalf("Err = %v", l.Err())
	}
	renews := st.commands("LOCK.RENEW")
	if len(renews) < 3 {
		t.Fatalf("%d renewals in 1.2s, want about 6", len(renews))
	}
	if want := "LOCK.RENEW job " + l.Owner() + " 600 TOKEN 1"; renews[0] != want {
		t.Fatalf("renewal %q, want %q", renews[0], want)
	}
	if owner, tok := st.holder("job"); owner != l.Owner() || tok != l.Token() {
		t.Fatalf("held by %q/%d", owner, tok)
	}
	if err := l.Release(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, l, time.Second)
	if !errors.Is(l.Err(), ErrReleased) {
		t.Fatalf("Err after Release = %v", l.Err())
	}
	n := len(st.commands("LOCK.RENEW"))
	time.Sleep(500 * time.Millisecond) // long enough for two more renewals, were they still running
	if m := len(st.commands("LOCK.RENEW")); m != n {
		t.Fatalf("%d renewals after Release", m-n)
	}
}

// TestLeaseLostWhenRefused: someone else takes the lock; the next renewal
// is refused and Done closes at once with ErrLeaseLost and ErrNotHeld.
func TestLeaseLostWhenRefused(t *testing.T) {
	st := &fakeState{}
	c := newTestClient(t, Config{}, newFakeNode(t, st))
	l, err := c.Acquire(ctxFor(t), "job", AcquireOptions{TTL: 10 * time.Second, RenewEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	st.steal("job", "thief")
	waitDone(t, l, 2*time.Second)
	if err := l.Err(); !errors.Is(err, ErrLeaseLost) || !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Err = %v, want ErrLeaseLost and ErrNotHeld", err)
	}
	if err := l.Release(ctxFor(t)); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Release of a stolen lock: %v, want ErrNotHeld", err)
	}
	if owner, _ := st.holder("job"); owner != "thief" {
		t.Fatalf("the release freed the thief's lock: holder %q", owner)
	}
}

// TestLeaseDeadlineFromSendTime: the acquire's answer takes 300ms and then
// no renewal is ever answered. The lease must end one TTL after the
// acquire was *sent*, not after it was answered.
func TestLeaseDeadlineFromSendTime(t *testing.T) {
	st := &fakeState{}
	n := newFakeNode(t, st)
	n.setScript(func(args []string) action {
		switch args[0] {
		case "LOCK.ACQUIRE":
			return action{delay: 300 * time.Millisecond}
		case "LOCK.RENEW":
			return action{hang: true}
		}
		return action{}
	})
	c := newTestClient(t, Config{}, n)
	const ttl = time.Second
	before := time.Now()
	l, err := c.Acquire(ctxFor(t), "job", AcquireOptions{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	answered := time.Now()
	trusted := ttl - 12*time.Millisecond // less the drift margin, 1% + 2ms
	if d := l.Deadline().Sub(before); d < trusted || d > trusted+100*time.Millisecond {
		t.Fatalf("deadline %s after the send, want the TTL less 1%% and 2ms (%s)", d, trusted)
	}
	done := waitDone(t, l, 3*time.Second)
	if done.Before(before.Add(trusted)) {
		t.Fatalf("lease ended %s after the send, before its TTL less the margin", done.Sub(before))
	}
	if late := done.Sub(answered.Add(ttl)); late >= 0 {
		t.Fatalf("lease ended %s after answer+TTL: the deadline was counted from the answer", late)
	}
	if err := l.Err(); !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("Err = %v, want ErrLeaseLost at the deadline", err)
	}
}

// TestLeaseErrAtDeadline: Err reports the loss as soon as the deadline has
// passed, without waiting for the timer.
func TestLeaseErrAtDeadline(t *testing.T) {
	c := newTestClient(t, Config{}, newFakeNode(t, &fakeState{}))
	l, err := c.Acquire(ctxFor(t), "job", AcquireOptions{TTL: 300 * time.Millisecond, NoAutoRenew: true})
	if err != nil {
		t.Fatal(err)
	}
	if l.Err() != nil {
		t.Fatalf("Err before the deadline = %v", l.Err())
	}
	for time.Now().Before(l.Deadline()) {
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(l.Err(), ErrLeaseLost) {
		t.Fatalf("Err past the deadline = %v", l.Err())
	}
	waitDone(t, l, time.Second)
}

// TestRenewCheck: while the check fails no renewal is sent and the lease
// runs out at its deadline, with the check's error as the cause.
func TestRenewCheck(t *testing.T) {
	st := &fakeState{}
	c := newTestClient(t, Config{}, newFakeNode(t, st))
	var stuck atomic.Bool
	errStuck := errors.New("worker stuck")
	l, err := c.Acquire(ctxFor(t), "job", AcquireOptions{TTL: time.Second, RenewCheck: func() error {
		if stuck.Load() {
			return errStuck
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(st.commands("LOCK.RENEW")) < 2 { // a couple of renewals go through
		if time.Now().After(deadline) || l.Err() != nil {
			t.Fatalf("no two renewals within 5s (err %v)", l.Err())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stuck.Store(true)
	before := len(st.commands("LOCK.RENEW"))
	waitDone(t, l, 3*time.Second)
	if err := l.Err(); !errors.Is(err, ErrLeaseLost) || !errors.Is(err, errStuck) {
		t.Fatalf("Err = %v, want ErrLeaseLost wrapping the check's error", err)
	}
	if after := len(st.commands("LOCK.RENEW")); after > before+1 {
		t.Fatalf("renewals: %d before the check failed, %d after; want at most one in flight", before, after)
	}
}

// TestLongWaitConfirms: an acquire that queued for most of the TTL is
// renewed before Acquire returns, so the lease has a fresh deadline.
func TestLongWaitConfirms(t *testing.T) {
	st := &fakeState{}
	n := newFakeNode(t, st)
	n.setScript(firstN("LOCK.ACQUIRE", 1, action{delay: 700 * time.Millisecond}))
	c := newTestClient(t, Config{}, n)
	l, err := c.Acquire(ctxFor(t), "job", AcquireOptions{TTL: time.Second, Wait: 5 * time.Second, NoAutoRenew: true})
	if err != nil {
		t.Fatal(err)
	}
	if renews := st.commands("LOCK.RENEW"); len(renews) != 1 {
		t.Fatalf("renewals %q, want one confirming renewal", renews)
	}
	if left := time.Until(l.Deadline()); left < 800*time.Millisecond {
		t.Fatalf("%s left on the lease after Acquire, want a fresh TTL", left)
	}
}

// TestRenewRetriesOnAnotherNode: renewals survive a node that stops
// answering (the client moves on) and a node that answers CLUSTERDOWN
// for a while (a leader election).
func TestRenewRetriesOnAnotherNode(t *testing.T) {
	st := &fakeState{}
	a, b := newFakeNode(t, st), newFakeNode(t, st)
	c := newTestClient(t, Config{}, a, b)
	l, err := c.Acquire(ctxFor(t), "job", AcquireOptions{TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	a.setScript(func([]string) action { return action{hang: true} })
	b.setScript(firstN("LOCK.RENEW", 3, action{errText: "CLUSTERDOWN no leader"}))
	time.Sleep(2500 * time.Millisecond)
	if l.Err() != nil {
		t.Fatalf("lease lost: %v", l.Err())
	}
	if owner, tok := st.holder("job"); owner != l.Owner() || tok != l.Token() {
		t.Fatalf("held by %q/%d", owner, tok)
	}
}

// TestReleaseAfterUnknownOutcome: the release is applied but its answer
// lost; the retry finds the lock free, which counts as released.
func TestReleaseAfterUnknownOutcome(t *testing.T) {
	st := &fakeState{}
	n := newFakeNode(t, st)
	c := newTestClient(t, Config{}, n)
	l, err := c.Acquire(ctxFor(t), "job", AcquireOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.setScript(firstN("LOCK.RELEASE", 1, action{dropAfter: true}))
	if err := l.Release(ctxFor(t)); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if rel := st.commands("LOCK.RELEASE"); len(rel) != 2 {
		t.Fatalf("releases %q, want two", rel)
	}
	if !errors.Is(l.Err(), ErrReleased) {
		t.Fatalf("Err = %v", l.Err())
	}
}

// TestCloseEndsLeases: Close ends every lease with ErrClosed and stops
// their renewals; it does not release them.
func TestCloseEndsLeases(t *testing.T) {
	st := &fakeState{}
	c := newTestClient(t, Config{}, newFakeNode(t, st))
	l1, err := c.Acquire(ctxFor(t), "a", AcquireOptions{TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	l2, err := c.Acquire(ctxFor(t), "b", AcquireOptions{NoAutoRenew: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, l := range []*Lease{l1, l2} {
		select {
		case <-l.Done():
		default:
			t.Fatalf("lease %s not done after Close", l.Key())
		}
		if err := l.Err(); !errors.Is(err, ErrLeaseLost) || !errors.Is(err, ErrClosed) {
			t.Fatalf("Err = %v", err)
		}
	}
	if rel := st.commands("LOCK.RELEASE"); len(rel) != 0 {
		t.Fatalf("Close released: %q", rel)
	}
	if err := l1.Renew(ctxFor(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Renew after Close: %v", err)
	}
}

// TestManualRenew: with NoAutoRenew the lease lasts one TTL unless Renew
// is called; a refused Renew ends it.
func TestManualRenew(t *testing.T) {
	st := &fakeState{}
	c := newTestClient(t, Config{}, newFakeNode(t, st))
	l, err := c.Acquire(ctxFor(t), "job", AcquireOptions{TTL: 5 * time.Second, NoAutoRenew: true})
	if err != nil {
		t.Fatal(err)
	}
	d0 := l.Deadline()
	time.Sleep(5 * time.Millisecond)
	if err := l.Renew(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	if !l.Deadline().After(d0) {
		t.Fatalf("Renew did not move the deadline")
	}
	if n := len(st.commands("LOCK.RENEW")); n != 1 {
		t.Fatalf("%d renewals, want exactly the manual one", n)
	}
	st.steal("job", "thief")
	if err := l.Renew(ctxFor(t)); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Renew of a stolen lock: %v", err)
	}
	waitDone(t, l, time.Second)
	if !errors.Is(l.Err(), ErrLeaseLost) {
		t.Fatalf("Err = %v", l.Err())
	}
}

// TestTrustedFor: a lease is trusted for its TTL less 1% and 2ms, and a
// TTL too short for that margin is not trusted at all.
func TestTrustedFor(t *testing.T) {
	tests := []struct {
		ttl, want time.Duration
	}{
		{15 * time.Second, 15*time.Second - 152*time.Millisecond},
		{time.Second, 988 * time.Millisecond},
		{100 * time.Millisecond, 97 * time.Millisecond},
		{2 * time.Millisecond, -20 * time.Microsecond},
	}
	for _, tt := range tests {
		if got := trustedFor(tt.ttl); got != tt.want {
			t.Errorf("trustedFor(%s) = %s, want %s", tt.ttl, got, tt.want)
		}
	}
}

// TestLeaseDeadlineLeavesADriftMargin: a 10s lease is trusted until 9.898s
// after its acquire was sent, not for the whole TTL.
func TestLeaseDeadlineLeavesADriftMargin(t *testing.T) {
	n := newFakeNode(t, &fakeState{})
	c := newTestClient(t, Config{}, n)
	const ttl = 10 * time.Second
	before := time.Now()
	l, err := c.Acquire(ctxFor(t), "job", AcquireOptions{TTL: ttl, NoAutoRenew: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctxFor(t))
	after := time.Now()
	trusted := ttl - 102*time.Millisecond
	if d := l.Deadline(); d.Before(before.Add(trusted)) || d.After(after.Add(trusted)) {
		t.Fatalf("deadline %s after the call began (it took %s), want %s after the send", d.Sub(before), after.Sub(before), trusted)
	}
}
