package clients

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestAcquireRetriesUnknownOutcome: the first LOCK.ACQUIRE is applied but
// its answer is lost (the connection drops, or the node says UNKNOWN). The
// client retries with the same owner and gets the grant that was made,
// not a second one.
func TestAcquireRetriesUnknownOutcome(t *testing.T) {
	for _, tc := range []struct {
		name string
		act  action
	}{
		{"dropped connection", action{dropAfter: true}},
		{"UNKNOWN reply", action{errAfter: "UNKNOWN outcome unknown: leadership lost while the request was in flight, retry with the same owner"}},
		{"TIMEOUT reply", action{errAfter: "TIMEOUT request timed out and may still take effect, retry with the same owner"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &fakeState{}
			n := newFakeNode(t, st)
			n.setScript(firstN("LOCK.ACQUIRE", 1, tc.act))
			c := newTestClient(t, Config{}, n)
			l, err := c.Acquire(ctxFor(t), "job", AcquireOptions{TTL: 10 * time.Second, NoAutoRenew: true})
			if err != nil {
				t.Fatalf("Acquire: %v", err)
			}
			acq := st.commands("LOCK.ACQUIRE")
			if len(acq) != 2 || acq[0] != acq[1] || !strings.Contains(acq[0], " "+l.Owner()+" ") {
				t.Fatalf("applied acquires %q, want the same command twice with owner %q", acq, l.Owner())
			}
			if owner, tok := st.holder("job"); owner != l.Owner() || tok != l.Token() || tok != 1 {
				t.Fatalf("fake holds job as %q/%d; lease is %q/%d; want token 1 (one grant)", owner, tok, l.Owner(), l.Token())
			}
			if rel := st.commands("LOCK.RELEASE"); len(rel) != 0 {
				t.Fatalf("a successful acquire released: %q", rel)
			}
		})
	}
}

// TestAcquireFailureAfterUnknownReleases: the first acquire is applied
// and its answer lost, every retry then fails (no quorum). The acquire
// fails, and the client releases under the owner it used, so the grant it
// never heard of is not left behind.
func TestAcquireFailureAfterUnknownReleases(t *testing.T) {
	st := &fakeState{}
	n := newFakeNode(t, st)
	var acquires atomic.Int32
	n.setScript(func(args []string) action {
		if args[0] != "LOCK.ACQUIRE" {
			return action{}
		}
		if acquires.Add(1) == 1 {
			return action{dropAfter: true}
		}
		return action{errText: "CLUSTERDOWN no quorum"}
	})
	c := newTestClient(t, Config{MaxAttempts: 4}, n)
	_, err := c.Acquire(ctxFor(t), "job", AcquireOptions{Owner: "me", TTL: time.Minute})
	if !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("Acquire error = %v, want ErrNoQuorum", err)
	}
	if got := acquires.Load(); got != 4 {
		t.Fatalf("%d acquire attempts, want MaxAttempts=4", got)
	}
	if rel := st.commands("LOCK.RELEASE"); len(rel) != 1 || rel[0] != "LOCK.RELEASE job me" {
		t.Fatalf("releases %q, want one LOCK.RELEASE job me", rel)
	}
	if owner, _ := st.holder("job"); owner != "" {
		t.Fatalf("job still held by %q after the failed acquire", owner)
	}
}

// TestAcquireCancelledAfterUnknownReleases: as above, but the caller's
// context ends while retrying; the cleanup release still goes out.
func TestAcquireCancelledAfterUnknownReleases(t *testing.T) {
	st := &fakeState{}
	n := newFakeNode(t, st)
	n.setScript(func(args []string) action {
		if args[0] != "LOCK.ACQUIRE" {
			return action{}
		}
		if len(st.commands("LOCK.ACQUIRE")) == 0 {
			return action{dropAfter: true}
		}
		return action{hang: true}
	})
	c := newTestClient(t, Config{RequestTimeout: 5 * time.Second}, n)
	ctx, cancel := context.WithTimeout(ctxFor(t), 300*time.Millisecond)
	defer cancel()
	_, err := c.Acquire(ctx, "job", AcquireOptions{Owner: "me"})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("Acquire error = %v, want the deadline and the unknown outcome", err)
	}
	if owner, _ := st.holder("job"); owner != "" {
		t.Fatalf("job still held by %q after the failed acquire", owner)
	}
}

// TestAcquireHeld: another owner holds the lock; no retry, no release.
func TestAcquireHeld(t *testing.T) {
	st := &fakeState{}
	st.steal("job", "someone-else")
	n := newFakeNode(t, st)
	c := newTestClient(t, Config{}, n)
	_, err := c.Acquire(ctxFor(t), "job", AcquireOptions{Wait: 50 * time.Millisecond})
	if !errors.Is(err, ErrHeld) || !errors.Is(err, ErrLocked) {
		t.Fatalf("Acquire error = %v, want ErrHeld", err)
	}
	acq := st.commands("LOCK.ACQUIRE")
	if len(acq) != 1 || !strings.HasSuffix(acq[0], " WAIT 50") && !strings.HasSuffix(acq[0], " WAIT 49") {
		t.Fatalf("acquires %q, want one with WAIT 50", acq)
	}
	if rel := st.commands("LOCK.RELEASE"); len(rel) != 0 {
		t.Fatalf("releases %q after a definite refusal", rel)
	}
}

// TestFailover: requests move to the next node when one refuses
// connections or answers CLUSTERDOWN, and stay there.
func TestFailover(t *testing.T) {
	st := &fakeState{}
	down := newFakeNode(t, st)
	down.ln.Close() // connection refused
	minority := newFakeNode(t, st)
	minority.setScript(func([]string) action { return action{errText: "CLUSTERDOWN no leader"} })
	good := newFakeNode(t, st)
	c := newTestClient(t, Config{}, down, minority, good)
	l, err := c.Acquire(ctxFor(t), "job", AcquireOptions{NoAutoRenew: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.cur.Load(); got != 2 {
		t.Fatalf("current node %d, want 2 (the good one)", got)
	}
	if err := l.Release(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	if got := len(st.commands("LOCK.ACQUIRE")) + len(st.commands("LOCK.RELEASE")); got != 2 {
		t.Fatalf("%d commands applied, want 2", got)
	}
}

// TestErrorReplies: each error reply maps to its sentinel; definite
// errors are not retried, CLUSTERDOWN is, up to MaxAttempts.
func TestErrorReplies(t *testing.T) {
	for _, tc := range []struct {
		reply    string
		want     error
		attempts int32
	}{
		{"ERR ttl 2h exceeds the maximum 1h", ErrInvalid, 1},
		{"NOAUTH Authentication required.", ErrAuth, 1},
		{"WRONGPASS invalid username-password pair", ErrAuth, 1},
		{"CLUSTERDOWN no quorum", ErrNoQuorum, 3},
		{"UNKNOWN outcome unknown", ErrUnknownOutcome, 3},
		{"TIMEOUT request timed out", ErrTimeout, 3},
	} {
		t.Run(tc.reply, func(t *testing.T) {
			n := newFakeNode(t, &fakeState{})
			var calls atomic.Int32
			n.setScript(func([]string) action { calls.Add(1); return action{errText: tc.reply} })
			c := newTestClient(t, Config{MaxAttempts: 3}, n)
			_, err := c.Info(ctxFor(t), "k")
			if !errors.Is(err, tc.want) {
				t.Fatalf("Info error = %v, want %v", err, tc.want)
			}
			var se *ServerError
			if !errors.As(err, &se) || se.Addr != n.addr || !strings.HasPrefix(tc.reply, se.Code+" ") {
				t.Fatalf("Info error %v is not a ServerError from %s", err, n.addr)
			}
			if got := calls.Load(); got != tc.attempts {
				t.Fatalf("%d attempts, want %d", got, tc.attempts)
			}
		})
	}
}

// TestPassword: the client authenticates; a wrong password is ErrAuth.
func TestPassword(t *testing.T) {
	n := newFakeNode(t, &fakeState{})
	n.password = "s3cret"
	c := newTestClient(t, Config{Password: "s3cret"}, n)
	if _, err := c.List(ctxFor(t)); err != nil {
		t.Fatalf("List with the password: %v", err)
	}
	bad := newTestClient(t, Config{Password: "wrong"}, n)
	if _, err := bad.List(ctxFor(t)); !errors.Is(err, ErrAuth) {
		t.Fatalf("List with a wrong password: %v, want ErrAuth", err)
	}
	none := newTestClient(t, Config{}, n)
	if _, err := none.List(ctxFor(t)); !errors.Is(err, ErrAuth) {
		t.Fatalf("List without a password: %v, want ErrAuth", err)
	}
}

// TestInfoListClusterInfo reads the RESP2 shapes (the fake speaks RESP2).
func TestInfoListClusterInfo(t *testing.T) {
	st := &fakeState{}
	n := newFakeNode(t, st)
	c := newTestClient(t, Config{}, n)
	ctx := ctxFor(t)
	if _, err := c.Info(ctx, "job"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Info of a free lock: %v, want ErrNotFound", err)
	}
	l, err := c.Acquire(ctx, "job", AcquireOptions{Owner: "me", TTL: time.Minute, NoAutoRenew: true})
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	if info.Key != "job" || info.Owner != "me" || info.Token != l.Token() || info.Version != 1 ||
		info.TTL <= 50*time.Second || info.TTL > time.Minute || time.Until(info.ExpiresAt) < 50*time.Second {
		t.Fatalf("Info = %+v", info)
	}
	list, err := c.List(ctx)
	if err != nil || len(list) != 1 || list[0] != *info && list[0].Owner != "me" {
		t.Fatalf("List = %+v, %v", list, err)
	}
	ci, err := c.ClusterInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ci.LeaderID != "f1" || ci.Term != 7 || ci.QuorumSize != 1 || !ci.HasQuorum || ci.ClusterID != "c0ffee" || len(ci.Nodes) != 1 ||
		ci.Nodes[0] != (NodeInfo{ID: "f1", State: "leader", Address: "localhost:1", RESPAddress: "127.0.0.1:2", HTTPAddress: "127.0.0.1:3"}) {
		t.Fatalf("ClusterInfo = %+v", ci)
	}
}

// TestParseRESP3 reads the RESP3 shapes go-redis returns for maps.
func TestParseRESP3(t *testing.T) {
	l, err := parseLock(map[any]any{"key": "k", "owner": "o", "fencing_token": int64(9), "version": int64(2),
		"ttl_ms": int64(1500), "expires_at": int64(1764111030000), "waiters": int64(3)})
	if err != nil || l.Token != 9 || l.Version != 2 || l.TTL != 1500*time.Millisecond || l.Waiters != 3 || l.ExpiresAt.UnixMilli() != 1764111030000 {
		t.Fatalf("parseLock = %+v, %v", l, err)
	}
	ci, err := parseCluster(map[any]any{"leader_id": "n1", "term": int64(3), "quorum_size": int64(2), "has_quorum": true,
		"nodes": []any{map[any]any{"id": "n1", "state": "leader"}, map[any]any{"id": "n2", "state": "follower"}}})
	if err != nil || !ci.HasQuorum || len(ci.Nodes) != 2 || ci.Nodes[1].State != "follower" {
		t.Fatalf("parseCluster = %+v, %v", ci, err)
	}
	if _, err := parseLock([]any{"key"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("odd array: %v, want ErrInvalid", err)
	}
	if _, err := parseLock(map[any]any{"fencing_token": "x"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad token: %v, want ErrInvalid", err)
	}
}

// TestConfigAndOptionsChecked: bad configuration fails before sending.
func TestConfigAndOptionsChecked(t *testing.T) {
	if _, err := New(Config{Addrs: []string{" "}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("New with an empty address: %v", err)
	}
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Addrs(); len(got) != 1 || got[0] != DefaultAddr {
		t.Fatalf("default Addrs = %v", got)
	}
	for _, o := range []AcquireOptions{
		{TTL: time.Microsecond},
		{Wait: -1},
		{TTL: time.Second, RenewEvery: time.Second},
		// Trusted for 988ms only (the drift margin): the first renewal
		// would come after the deadline.
		{TTL: time.Second, RenewEvery: 990 * time.Millisecond},
		// Trusted for no time at all, or for less than TTL/3.
		{TTL: 2 * time.Millisecond},
		{TTL: 3 * time.Millisecond},
	} {
		if _, err := c.Acquire(context.Background(), "k", o); !errors.Is(err, ErrInvalid) {
			t.Errorf("Acquire(%+v): %v, want ErrInvalid", o, err)
		}
	}
	if _, err := c.Acquire(context.Background(), "", AcquireOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Acquire with an empty key: %v, want ErrInvalid", err)
	}
	if a, b := NewOwner(), NewOwner(); a == b || a == "" {
		t.Errorf("NewOwner returned %q twice", a)
	}
}

// TestClosedClient: calls after Close fail with ErrClosed.
func TestClosedClient(t *testing.T) {
	n := newFakeNode(t, &fakeState{})
	c := newTestClient(t, Config{}, n)
	c.Close()
	if _, err := c.List(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("List after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
