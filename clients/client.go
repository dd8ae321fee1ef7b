package clients

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Defaults of [Config] and [AcquireOptions].
const (
	// DefaultAddr is the node address used when [Config.Addrs] is empty.
	DefaultAddr = "127.0.0.1:6379"
	// DefaultTTL is the lease length used when [AcquireOptions.TTL] is zero.
	DefaultTTL = 15 * time.Second

	defaultDialTimeout    = 2 * time.Second
	defaultRequestTimeout = 5 * time.Second
	defaultMinBackoff     = 50 * time.Millisecond
	defaultMaxBackoff     = time.Second
)

// Config configures a [Client]. The zero value talks to one node at
// [DefaultAddr] without a password.
type Config struct {
	// Addrs lists RESP addresses (host:port) of the cluster's nodes. Any
	// node serves any command; the client uses one at a time and moves to
	// the next when a connection fails or the node answers CLUSTERDOWN.
	// Default: [DefaultAddr].
	Addrs []string
	// Password is sent with AUTH (the nodes' --requirepass). Default: none.
	Password string
	// TLSConfig, when set, connects over TLS (nodes run with --tls-*); the
	// server name defaults to each address's host. Default: plain TCP.
	TLSConfig *tls.Config
	// DialTimeout bounds connecting to one node. Default: 2s.
	DialTimeout time.Duration
	// RequestTimeout bounds one attempt of one command on one node, not
	// counting the time an acquire queues (its Wait). An attempt that runs
	// out of time has an unknown outcome and is retried. Default: 5s.
	RequestTimeout time.Duration
	// MaxAttempts bounds the attempts of one call (acquire, release, info,
	// list...), over all nodes. Renewals are bounded by their lease's
	// deadline instead. Default: 3 per address, at least 6.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the pause between retries, which
	// doubles (with jitter) from MinBackoff up to MaxBackoff. A retry on
	// another node after CLUSTERDOWN or a refused connection does not wait
	// until every node was tried. Defaults: 50ms and 1s.
	MinBackoff, MaxBackoff time.Duration
}

// withDefaults returns c with defaults filled in, or an error wrapping
// ErrInvalid.
func (c Config) withDefaults() (Config, error) {
	if len(c.Addrs) == 0 {
		c.Addrs = []string{DefaultAddr}
	}
	c.Addrs = append([]string(nil), c.Addrs...)
	for i, a := range c.Addrs {
		c.Addrs[i] = strings.TrimSpace(a)
		if c.Addrs[i] == "" {
			return c, fmt.Errorf("%w: empty node address", ErrInvalid)
		}
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = defaultDialTimeout
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = defaultRequestTimeout
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = max(6, 3*len(c.Addrs))
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = defaultMinBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = defaultMaxBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	return c, nil
}

// Client talks to a distlock cluster. It is safe for concurrent use; make
// one per process and share it.
type Client struct {
	cfg Config
	// nodes[i] is node i's connection pool; waitNodes[i] is another one
	// for acquires that queue (WAIT), which hold a connection for as long
	// as they wait and must not hold up renewals.
	nodes, waitNodes []*redis.Client
	// cur is the index of the node requests go to.
	cur atomic.Int64
	// shunned[i] is when node i may be chosen again (unix ns) after it
	// could not be reached or did not answer in time.
	shunned []atomic.Int64
	// ctx is cancelled by Close; lease goroutines and requests watch it.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts lease goroutines.
	wg        sync.WaitGroup
	closeOnce sync.Once

	mu     sync.Mutex
	leases map[*Lease]struct{} // leases that have not ended
}

// New returns a client of the cluster whose nodes cfg lists. It does not
// connect until the first request.
func New(cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, shunned: make([]atomic.Int64, len(cfg.Addrs))}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	for _, addr := range cfg.Addrs {
		c.nodes = append(c.nodes, newRedis(addr, cfg, 0, 0))
		c.waitNodes = append(c.waitNodes, newRedis(addr, cfg, waitPoolSize, 10*runtime.GOMAXPROCS(0)))
	}
	return c, nil
}

// waitPoolSize bounds the connections of a node's pool for acquires that
// queue: each one holds a connection for as long as it waits, so this is
// how many of a Client's acquires can wait on one node at once (go-redis's
// default, 10 per CPU, held the rest back until a connection was free or
// their time ran out). Connections are opened as needed; after a burst,
// those over go-redis's default pool size are closed as they come back.
const waitPoolSize = 1000

// newRedis returns a go-redis client of one node, with at most poolSize
// connections (0: go-redis's default, 10 per CPU) of which maxIdle stay
// open idle (0: all). It does not connect until first used.
func newRedis(addr string, cfg Config, poolSize, maxIdle int) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:         addr,
		PoolSize:     poolSize,
		MaxIdleConns: maxIdle,
		Password:     cfg.Password,
		TLSConfig:    cfg.TLSConfig,
		Protocol:     3,
		// Retries are ours: go-redis would retry CLUSTERDOWN on the same
		// node, and writes whose outcome it cannot know.
		MaxRetries:    -1,
		DialerRetries: 1,
		DialTimeout:   cfg.DialTimeout,
		// Every attempt carries a context deadline; go-redis follows it.
		ReadTimeout:           -1,
		WriteTimeout:          -1,
		ContextTimeoutEnabled: true,
		DisableIdentity:       true,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	})
}

// Close ends every lease of c (their Done channels close and Err reports
// [ErrLeaseLost] wrapping [ErrClosed]) and closes the connections. It does
// not release the locks: release them first, or they expire after their
// TTL. Calls after the first do nothing.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.cancel()
		leases := make([]*Lease, 0, len(c.leases))
		for l := range c.leases {
			leases = append(leases, l)
		}
		c.mu.Unlock()
		for _, l := range leases {
			l.end(fmt.Errorf("%w: %w", ErrLeaseLost, ErrClosed))
		}
		c.wg.Wait()
		for i := range c.nodes {
			err = errors.Join(err, c.nodes[i].Close(), c.waitNodes[i].Close())
		}
	})
	return err
}

// Addrs returns the node addresses c uses, in order.
func (c *Client) Addrs() []string { return append([]string(nil), c.cfg.Addrs...) }

// request is one logical command, which do may attempt several times.
type request struct {
	// op names the call in errors, such as `acquire "k"`.
	op string
	// args returns the command for the next attempt.
	args func() []any
	// timeout returns the time allowed for the next attempt; nil means
	// Config.RequestTimeout.
	timeout func() time.Duration
	// attempts overrides Config.MaxAttempts when positive.
	attempts int
	// maxBackoff lowers Config.MaxBackoff when positive.
	maxBackoff time.Duration
	// blocking: the command may wait server side (LOCK.ACQUIRE WAIT).
	blocking bool
	// elsewhere: an error reply other than NOTHELD moves on to the next
	// node instead of ending the call (renewals: one node answering
	// "ERR internal error", or WRONGPASS while a password is rolled out,
	// must not cost a lease that another node would renew).
	elsewhere bool
	// late, when set, is called (on a goroutine of its own) with the
	// reply of an attempt the caller stopped waiting for: an acquire
	// releases what it was granted after its caller gave up.
	late func(v any)
}

// doCancelable runs one command on pool and returns its reply, or ctx's
// error as soon as ctx ends. go-redis bounds a command by its context's
// deadline only (as socket deadlines) and does not notice a cancellation,
// so a caller that gives up (Ctrl-C in lockctl, Release, Close) would wait
// out the attempt's whole timeout. The command abandoned then ends on its
// own at that deadline, or when Close closes the pools, and its connection
// goes back to the pool or is dropped as go-redis decides; if it gets a
// reply after all, late (when not nil) is called with it. Each reply goes
// either to the caller or to late, never both.
func doCancelable(ctx context.Context, pool *redis.Client, args []any, late func(any)) (any, error) {
	type reply struct {
		v   any
		err error
	}
	const (
		waiting = iota
		answered
		abandoned
	)
	var state atomic.Int32
	got := make(chan reply, 1)
	go func() {
		v, err := pool.Do(ctx, args...).Result()
		if state.CompareAndSwap(waiting, answered) {
			got <- reply{v, err}
			return
		}
		if late != nil && err == nil {
			late(v)
		}
	}()
	select {
	case r := <-got:
		return r.v, r.err
	case <-ctx.Done():
		if state.CompareAndSwap(waiting, abandoned) {
			return nil, ctx.Err()
		}
		r := <-got // answered just now
		return r.v, r.err
	}
}

// result is what do returns for a request that got an answer.
type result struct {
	// val is the reply; nil for a null reply.
	val any
	// sent is when the attempt that was answered was sent.
	sent time.Time
	// unknown reports that an earlier attempt had an unknown outcome.
	unknown bool
}

// do runs r against the cluster: on the current node, moving to the next
// on connection failures and CLUSTERDOWN, retrying untouched and
// unknown-outcome failures with backoff until an answer, a fatal error, the
// attempt limit, or the end of ctx. The returned result's unknown field is
// also meaningful when err is not nil.
func (c *Client) do(ctx context.Context, r request) (result, error) {
	var res result
	if c.ctx.Err() != nil {
		return res, fmt.Errorf("%s: %w", r.op, ErrClosed)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.ctx, cancel)()
	attempts := c.cfg.MaxAttempts
	if r.attempts > 0 {
		attempts = r.attempts
	}
	n := len(c.nodes)
	var last error
	var refused uint64  // nodes (by index, the first 64) that refused the TLS connection
	tried, step := 0, 0 // nodes tried since the last pause; pauses so far
	for i := 0; i < attempts; i++ {
		if i > 0 && tried >= n {
			pause := c.backoff(step)
			if r.maxBackoff > 0 {
				pause = min(pause, r.maxBackoff)
			}
			if !sleep(ctx, pause) {
				break
			}
			step++
			tried = 0
		}
		idx := int(c.cur.Load()) % n
		timeout := c.cfg.RequestTimeout
		if r.timeout != nil {
			timeout = r.timeout()
		}
		actx, acancel := context.WithTimeout(ctx, timeout)
		args := r.args()
		sent := time.Now()
		pool := c.nodes[idx]
		if r.blocking {
			pool = c.waitNodes[idx]
		}
		v, err := doCancelable(actx, pool, args, r.late)
		aerr := actx.Err()
		acancel()
		if err == nil || err == redis.Nil {
			res.val, res.sent = v, sent
			return res, nil
		}
		if c.ctx.Err() != nil {
			return res, fmt.Errorf("%s: %w", r.op, ErrClosed)
		}
		k, werr := classify(c.cfg.Addrs[idx], err, aerr != nil)
		last = werr
		var se *ServerError
		if k == fatal && r.elsewhere && errors.As(werr, &se) && se.Code != "NOTHELD" {
			k = untouched
		}
		if tlsRefusal(err) && idx < 64 {
			refused |= 1 << idx
			if bits.OnesCount64(refused) == n { // every node refuses this client: that will not change
				k = fatal
			}
		}
		if k == fatal {
			return res, fmt.Errorf("%s: %w", r.op, werr)
		}
		if k == unknown {
			res.unknown = true
		}
		// A node that answered UNKNOWN or TIMEOUT is alive and connected
		// to the cluster: stay. Otherwise try the next node, and avoid one
		// that did not answer at all for a while (unless the caller's own
		// deadline cut the attempt short).
		switch {
		case ctx.Err() != nil:
		case !errors.As(werr, &se):
			c.shunned[idx].Store(time.Now().Add(shunTime).UnixNano())
			c.moveOn(idx)
			tried++
		case k == untouched:
			c.moveOn(idx)
			tried++
		default:
			tried = n
		}
		if ctx.Err() != nil {
			break
		}
	}
	switch {
	case c.ctx.Err() != nil:
		return res, fmt.Errorf("%s: %w", r.op, ErrClosed)
	case ctx.Err() != nil && last != nil:
		return res, fmt.Errorf("%s: %w (last error: %w)", r.op, ctx.Err(), last)
	case ctx.Err() != nil:
		return res, fmt.Errorf("%s: %w", r.op, ctx.Err())
	}
	return res, fmt.Errorf("%s: gave up after %d attempts: %w", r.op, attempts, last)
}

// shunTime is how long a node that could not be reached, or did not
// answer in time, is passed over while another node may do.
const shunTime = 2 * time.Second

// moveOn makes the first node after idx that is not shunned the current
// node (idx itself if it is the only one; the next one if all are),
// unless another request moved on already.
func (c *Client) moveOn(idx int) {
	n := len(c.nodes)
	next := (idx + 1) % n
	now := time.Now().UnixNano()
	for j := 1; j <= n; j++ {
		if cand := (idx + j) % n; c.shunned[cand].Load() <= now {
			next = cand
			break
		}
	}
	c.cur.CompareAndSwap(int64(idx), int64(next))
}

// backoff returns the pause before retry round step: MinBackoff doubling
// up to MaxBackoff, with up to half of it taken off at random.
func (c *Client) backoff(step int) time.Duration {
	d := c.cfg.MaxBackoff
	if step < 30 && c.cfg.MinBackoff<<step < d {
		d = c.cfg.MinBackoff << step
	}
	return d - time.Duration(mrand.Int64N(int64(d)/2+1))
}

// sleep waits d or until ctx ends; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Info describes the lock held under key. It returns an error wrapping
// [ErrNotFound] when the lock is free. The read is linearizable.
func (c *Client) Info(ctx context.Context, key string) (*LockInfo, error) {
	op := fmt.Sprintf("info %q", key)
	res, err := c.do(ctx, request{op: op, args: func() []any { return []any{"LOCK.INFO", key} }})
	if err != nil {
		return nil, err
	}
	if res.val == nil {
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	l, err := parseLock(res.val)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return &l, nil
}

// List describes every held lock, in key order.
func (c *Client) List(ctx context.Context) ([]LockInfo, error) {
	res, err := c.do(ctx, request{op: "list", args: func() []any { return []any{"LOCK.LIST"} }})
	if err != nil {
		return nil, err
	}
	items, ok := res.val.([]any)
	if !ok && res.val != nil {
		return nil, fmt.Errorf("list: %w: %T is not an array", errReply, res.val)
	}
	out := make([]LockInfo, 0, len(items))
	for _, it := range items {
		l, err := parseLock(it)
		if err != nil {
			return nil, fmt.Errorf("list: %w", err)
		}
		out = append(out, l)
	}
	return out, nil
}

// ClusterInfo describes the cluster as the node the client is using sees
// it (CLUSTER.INFO). A node without a leader still answers, with an empty
// LeaderID and HasQuorum false.
func (c *Client) ClusterInfo(ctx context.Context) (*ClusterInfo, error) {
	res, err := c.do(ctx, request{op: "cluster info", args: func() []any { return []any{"CLUSTER.INFO"} }})
	if err != nil {
		return nil, err
	}
	ci, err := parseCluster(res.val)
	if err != nil {
		return nil, fmt.Errorf("cluster info: %w", err)
	}
	return &ci, nil
}

// NewOwner returns a fresh owner identity: host name, process id and 64
// random bits, such as "build-7.example-4242-9f86d081884c7d65"; two calls,
// in any processes, practically never return the same identity.
func NewOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand.Read never fails on supported platforms
	}
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}
