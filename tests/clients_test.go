//go:build unix

package tests

import (
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distlock/distlock/clients"
	"github.com/redis/go-redis/v9"
)

// clientOf returns a clients.Client of the cluster's nodes, first listed
// first (the node it starts with); it is closed at cleanup.
func clientOf(t *testing.T, c *cluster, first *proc) *clients.Client {
	t.Helper()
	addrs := []string{first.respAddr()}
	for _, p := range c.others(first) {
		addrs = append(addrs, p.respAddr())
	}
	cl, err := clients.New(clients.Config{Addrs: addrs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// waitReadyAuth is proc.waitReady for a node with a password: its health
// endpoints want the password as a bearer token.
func waitReadyAuth(p *proc, password string) {
	p.t.Helper()
	poll(p.t, 20*time.Second, p.id+" ready", func() bool {
		req, _ := http.NewRequest(http.MethodGet, p.url("/health/ready"), nil)
		req.Header.Set("Authorization", "Bearer "+password)
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// holdFor fails the test if l ends within d.
func holdFor(t *testing.T, l *clients.Lease, d time.Duration) {
	t.Helper()
	select {
	case <-l.Done():
		t.Fatalf("lease on %q lost: %v", l.Key(), l.Err())
	case <-time.After(d):
	}
}

// TestClientAutoRenewal: a 1s lease held for 4s through a 3-node cluster
// keeps its token; the server shows it renewed.
func TestClientAutoRenewal(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader()
	follower := c.others(lead)[0]
	ctx := ctxFor(t)
	cl := clientOf(t, c, follower)
	l, err := cl.Acquire(ctx, "renewed", clients.AcquireOptions{TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tok := l.Token()
	holdFor(t, l, 4*time.Second)
	if l.Token() != tok || l.Err() != nil {
		t.Fatalf("token %d -> %d, err %v", tok, l.Token(), l.Err())
	}
	info := infoMap(t, lead.redis(2).Do(ctx, "LOCK.INFO", "renewed"))
	if info["owner"] != l.Owner() || fmt.Sprint(info["fencing_token"]) != fmt.Sprint(tok) {
		t.Fatalf("server shows %v, lease is %s/%d", info, l.Owner(), tok)
	}
	if v, _ := info["version"].(int64); v < 6 {
		t.Fatalf("version %d after 4s of renewals every 333ms, want >= 6", v)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lead.redis(2).Do(ctx, "LOCK.INFO", "renewed").Err(); err != redis.Nil {
		t.Fatalf("LOCK.INFO after Release: %v, want nil", err)
	}
}

// TestClientLeaderKilled: the client talks to the leader, which is killed
// with SIGKILL. The lease survives: renewals move to the other nodes once
// they have elected a leader, Done stays open, the token is unchanged and
// the new leader shows the same owner.
func TestClientLeaderKilled(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader()
	ctx := ctxFor(t)
	cl := clientOf(t, c, lead)
	l, err := cl.Acquire(ctx, "survivor", clients.AcquireOptions{TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tok := l.Token()
	holdFor(t, l, 500*time.Millisecond)
	lead.kill()
	newLead := c.leader()
	t.Logf("killed %s; %s leads", lead.id, newLead.id)
	before := infoMap(t, newLead.redis(2).Do(ctx, "LOCK.INFO", "survivor"))
	holdFor(t, l, 4*time.Second) // two TTLs after the election
	if l.Token() != tok || l.Err() != nil {
		t.Fatalf("token %d -> %d, err %v", tok, l.Token(), l.Err())
	}
	after := infoMap(t, newLead.redis(2).Do(ctx, "LOCK.INFO", "survivor"))
	if after["owner"] != l.Owner() || fmt.Sprint(after["fencing_token"]) != fmt.Sprint(tok) {
		t.Fatalf("new leader shows %v, lease is %s/%d", after, l.Owner(), tok)
	}
	if after["version"].(int64) <= before["version"].(int64) {
		t.Fatalf("no renewal reached the new leader: version %v -> %v", before["version"], after["version"])
	}
	info, err := cl.Info(ctx, "survivor")
	if err != nil || info.Owner != l.Owner() || info.Token != tok {
		t.Fatalf("client Info = %+v, %v", info, err)
	}
}

// TestClientSuspendedRenewals: renewals are suspended (as if the process
// were paused) and the lease runs out. Done closes at the lease's local
// deadline, which is no later than the moment the cluster lets another
// owner take the lock.
func TestClientSuspendedRenewals(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader()
	ctx := ctxFor(t)
	cl := clientOf(t, c, c.others(lead)[0])
	var paused atomic.Bool
	errPaused := errors.New("paused by the test")
	l, err := cl.Acquire(ctx, "paused", clients.AcquireOptions{TTL: time.Second, RenewCheck: func() error {
		if paused.Load() {
			return errPaused
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	holdFor(t, l, 1500*time.Millisecond)
	paused.Store(true)
	var doneAt time.Time
	select {
	case <-l.Done():
		doneAt = time.Now()
	case <-time.After(3 * time.Second):
		t.Fatalf("lease not lost 3s after renewals stopped (TTL 1s); Err %v", l.Err())
	}
	if err := l.Err(); !errors.Is(err, clients.ErrLeaseLost) || !errors.Is(err, errPaused) {
		t.Fatalf("Err = %v, want ErrLeaseLost caused by the pause", err)
	}
	if doneAt.Before(l.Deadline()) {
		t.Fatalf("Done closed %s before the deadline", l.Deadline().Sub(doneAt))
	}
	// Another owner gets it once the cluster expires it, never before the
	// paused client stopped trusting its lease.
	rdb := lead.redis(2)
	var next int64
	poll(t, 10*time.Second, "another owner to get the expired lock", func() bool {
		next, err = rdb.Do(ctx, "LOCK.ACQUIRE", "paused", "next-owner", "10s").Int64()
		return err == nil
	})
	if takenAt := time.Now(); takenAt.Before(doneAt) {
		t.Fatalf("another owner got the lock %s before Done closed", doneAt.Sub(takenAt))
	}
	if next <= int64(l.Token()) {
		t.Fatalf("next token %d, want above %d", next, l.Token())
	}
	if err := l.Release(ctx); !errors.Is(err, clients.ErrNotHeld) {
		t.Fatalf("Release of an expired lease: %v, want ErrNotHeld", err)
	}
}

// TestClientSingleNode covers the rest against one real node with a
// password: authentication, ErrHeld, queueing with Wait, Info/List, a dead
// address in the list, and the error sentinels.
func TestClientSingleNode(t *testing.T) {
	p := newProc(t, "node1", "--requirepass", "s3cret")
	p.launch()
	waitReadyAuth(p, "s3cret")
	ctx := ctxFor(t)
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	newClient := func(pass string) *clients.Client {
		cl, err := clients.New(clients.Config{Addrs: []string{dead, p.respAddr()}, Password: pass})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		return cl
	}
	if _, err := newClient("wrong").List(ctx); !errors.Is(err, clients.ErrAuth) {
		t.Fatalf("List with a wrong password: %v, want ErrAuth", err)
	}
	cl := newClient("s3cret")
	a, err := cl.Acquire(ctx, "single", clients.AcquireOptions{TTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Acquire(ctx, "single", clients.AcquireOptions{}); !errors.Is(err, clients.ErrHeld) {
		t.Fatalf("second Acquire: %v, want ErrHeld", err)
	}
	same, err := cl.Acquire(ctx, "single", clients.AcquireOptions{Owner: a.Owner(), NoAutoRenew: true})
	if err != nil || same.Token() != a.Token() {
		t.Fatalf("re-acquire by the same owner: %v, token %d want %d", err, same.Token(), a.Token())
	}
	// A waiter queues server-side and gets the lock when it is released.
	got := make(chan *clients.Lease, 1)
	go func() {
		b, err := cl.Acquire(ctx, "single", clients.AcquireOptions{Wait: 10 * time.Second})
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	poll(t, 5*time.Second, "the waiter to queue", func() bool {
		info, err := cl.Info(ctx, "single")
		return err == nil && info.Waiters == 1
	})
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	b := <-got
	if b == nil || b.Token() <= a.Token() {
		t.Fatalf("waiter's lease %v, want a token above %d", b, a.Token())
	}
	list, err := cl.List(ctx)
	if err != nil || len(list) != 1 || list[0].Owner != b.Owner() {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Info(ctx, "single"); !errors.Is(err, clients.ErrNotFound) {
		t.Fatalf("Info after release: %v, want ErrNotFound", err)
	}
	if _, err := cl.Acquire(ctx, "single", clients.AcquireOptions{TTL: 48 * time.Hour}); !errors.Is(err, clients.ErrInvalid) {
		t.Fatalf("Acquire over --max-ttl: %v, want ErrInvalid", err)
	}
	var ci *clients.ClusterInfo
	poll(t, 10*time.Second, "CLUSTER.INFO with a cluster id", func() bool {
		ci, err = cl.ClusterInfo(ctx)
		return err == nil && ci.ClusterID != ""
	})
	if ci.LeaderID != "node1" || !ci.HasQuorum || len(ci.Nodes) != 1 || ci.Nodes[0].RESPAddress == "" || len(ci.ClusterID) != 32 {
		t.Fatalf("ClusterInfo = %+v, %v", ci, err)
	}
}
