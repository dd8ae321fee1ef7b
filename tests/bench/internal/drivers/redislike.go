package drivers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-redsync/redsync/v4"
	rsgoredis "github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"
)

type redisKind int

const (
	kindNative redisKind = iota
	kindSetNX
	kindRedsync
)

// ReleaseScript is the release script from the Redlock page on redis.io.
const ReleaseScript = `if redis.call("get",KEYS[1]) == ARGV[1] then
    return redis.call("del",KEYS[1])
else
    return 0
end`

var releaseScript = redis.NewScript(ReleaseScript)

type redisSystem struct {
	kind    redisKind
	o       Options
	targets []string
	rdbs    []*redis.Client
	rs      []*redsync.Redsync
}

func newRedisClient(addr string, o Options, poolSize int) *redis.Client {
	read := 5 * time.Second
	if o.MaxWait+5*time.Second > read {
		read = o.MaxWait + 5*time.Second
	}
	return redis.NewClient(&redis.Options{
		Addr:            addr,
		Password:        o.Password,
		PoolSize:        poolSize,
		MinIdleConns:    poolSize,
		DialTimeout:     5 * time.Second,
		ReadTimeout:     read,
		WriteTimeout:    5 * time.Second,
		PoolTimeout:     read + 5*time.Second,
		MaxRetries:      -1, // a retried LOCK.ACQUIRE would blur latency; count the error instead
		DisableIdentity: true,
	})
}

func openRedisLike(ctx context.Context, o Options, kind redisKind) (System, error) {
	addrs := o.Addrs
	if o.LeaderOnly {
		leader, err := FindLeader(ctx, o.Addrs, o.Password)
		if err != nil {
			return nil, fmt.Errorf("-leader-only: %w", err)
		}
		addrs = []string{leader}
	}
	s := &redisSystem{kind: kind, o: o, targets: addrs}
	per := (o.Clients + len(addrs) - 1) / len(addrs)
	for _, a := range addrs {
		rdb := newRedisClient(a, o, per+1)
		s.rdbs = append(s.rdbs, rdb)
		if kind == kindRedsync {
			s.rs = append(s.rs, redsync.New(rsgoredis.NewPool(rdb)))
		}
	}
	// Fail fast on an unreachable address, and warm the pools so that
	// connection set-up is not measured.
	for i, rdb := range s.rdbs {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := rdb.Ping(pctx).Err()
		cancel()
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("%s: %w", addrs[i], err)
		}
	}
	return s, nil
}

func (s *redisSystem) Targets() []string { return s.targets }
func (s *redisSystem) HasTokens() bool   { return s.kind == kindNative }

func (s *redisSystem) Close() error {
	var errs []error
	for _, r := range s.rdbs {
		errs = append(errs, r.Close())
	}
	return errors.Join(errs...)
}

func (s *redisSystem) NewClient(ctx context.Context, w int) (Client, error) {
	i := w % len(s.rdbs)
	owner := fmt.Sprintf("%s-w%d", s.o.Owner, w)
	switch s.kind {
	case kindNative:
		return &nativeClient{rdb: s.rdbs[i], owner: owner, o: s.o}, nil
	case kindSetNX:
		return &setnxClient{rdb: s.rdbs[i], owner: owner, o: s.o}, nil
	default:
		return &redsyncClient{rs: s.rs[i], owner: owner, o: s.o, mus: map[string]*redsync.Mutex{}}, nil
	}
}

func millis(d time.Duration) int64 {
	ms := int64((d + time.Millisecond - 1) / time.Millisecond)
	if ms < 1 {
		ms = 1
	}
	return ms
}

// --- native ---

type nativeClient struct {
	rdb   *redis.Client
	owner string
	o     Options
	key   string
	token int64
}

func (c *nativeClient) Acquire(ctx context.Context, key string, wait bool, waitFor time.Duration) (Result, error) {
	args := []any{"LOCK.ACQUIRE", key, c.owner, millis(c.o.TTL)}
	if wait {
		args = append(args, "WAIT", millis(waitFor))
	}
	tok, err := c.rdb.Do(ctx, args...).Int64()
	if err == redis.Nil {
		return Result{Tries: 1}, nil
	}
	if err != nil {
		return Result{Tries: 1}, err
	}
	if tok <= 0 {
		return Result{Tries: 1}, fmt.Errorf("LOCK.ACQUIRE returned token %d", tok)
	}
	c.key, c.token = key, tok
	return Result{Granted: true, Token: uint64(tok), HasToken: true, Tries: 1}, nil
}

func (c *nativeClient) Release(ctx context.Context, key string) error {
	if key != c.key {
		return fmt.Errorf("release of %q, which this client did not acquire", key)
	}
	n, err := c.rdb.Do(ctx, "LOCK.RELEASE", key, c.owner, "TOKEN", c.token).Int64()
	if err != nil {
		return err
	}
	if n != 1 {
		return ErrNotHeld
	}
	return nil
}

func (c *nativeClient) Close() error { return nil }

// --- SET NX PX + Redlock release script (setnx and redis) ---

type setnxClient struct {
	rdb   *redis.Client
	owner string
	o     Options
	seq   uint64
	key   string
	val   string
}

func (c *setnxClient) try(ctx context.Context, key string) (bool, error) {
	c.seq++
	val := c.owner + "-" + strconv.FormatUint(c.seq, 10)
	err := c.rdb.Do(ctx, "SET", key, val, "NX", "PX", millis(c.o.TTL)).Err()
	if err == redis.Nil {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	c.key, c.val = key, val
	return true, nil
}

func (c *setnxClient) Acquire(ctx context.Context, key string, wait bool, waitFor time.Duration) (Result, error) {
	var deadline time.Time
	if wait {
		deadline = time.Now().Add(waitFor)
	}
	for tries := 1; ; tries++ {
		ok, err := c.try(ctx, key)
		if err != nil || ok || !wait {
			return Result{Granted: ok, Tries: tries}, err
		}
		if time.Now().Add(c.o.Poll).After(deadline) || !sleepCtx(ctx, c.o.Poll) {
			return Result{Tries: tries}, nil
		}
	}
}

func (c *setnxClient) Release(ctx context.Context, key string) error {
	if key != c.key {
		return fmt.Errorf("release of %q, which this client did not acquire", key)
	}
	n, err := releaseScript.Run(ctx, c.rdb, []string{key}, c.val).Int64()
	if err != nil {
		return err
	}
	if n != 1 {
		return ErrNotHeld
	}
	return nil
}

func (c *setnxClient) Close() error { return nil }

// --- redsync ---

type redsyncClient struct {
	rs    *redsync.Redsync
	owner string
	o     Options
	mus   map[string]*redsync.Mutex
	tries int
}

func (c *redsyncClient) mutex(key string) *redsync.Mutex {
	m := c.mus[key]
	if m == nil {
		poll := c.o.Poll
		if poll <= 0 {
			poll = time.Millisecond
		}
		m = c.rs.NewMutex(key,
			redsync.WithExpiry(c.o.TTL),
			redsync.WithTries(1<<30), // bounded by the caller's context instead
			redsync.WithRetryDelayFunc(func(int) time.Duration {
				c.tries++
				return poll
			}))
		c.mus[key] = m
	}
	return m
}

func (c *redsyncClient) Acquire(ctx context.Context, key string, wait bool, waitFor time.Duration) (Result, error) {
	m := c.mutex(key)
	c.tries = 1
	var err error
	if wait {
		wctx, cancel := context.WithTimeout(ctx, waitFor)
		err = m.LockContext(wctx)
		cancel()
	} else {
		err = m.TryLockContext(ctx)
	}
	r := Result{Tries: c.tries}
	var taken *redsync.ErrTaken
	switch {
	case err == nil:
		r.Granted = true
		return r, nil
	case errors.As(err, &taken), errors.Is(err, redsync.ErrFailed):
		return r, nil
	}
	return r, err
}

func (c *redsyncClient) Release(ctx context.Context, key string) error {
	m := c.mus[key]
	if m == nil {
		return fmt.Errorf("release of %q, which this client did not acquire", key)
	}
	ok, err := m.UnlockContext(ctx)
	if errors.Is(err, redsync.ErrLockAlreadyExpired) {
		return ErrNotHeld
	}
	if err != nil {
		return err
	}
	if !ok {
		return ErrNotHeld
	}
	return nil
}

func (c *redsyncClient) Close() error { return nil }

// FindLeader asks the nodes at addrs (RESP) for CLUSTER.INFO and returns the
// leader's RESP address.
func FindLeader(ctx context.Context, addrs []string, password string) (string, error) {
	var errs []error
	for _, a := range addrs {
		rdb := redis.NewClient(&redis.Options{Addr: a, Password: password, Protocol: 2,
			DialTimeout: 3 * time.Second, ReadTimeout: 3 * time.Second, MaxRetries: -1,
			PoolSize: 1, DisableIdentity: true})
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := rdb.Do(cctx, "CLUSTER.INFO").Result()
		cancel()
		rdb.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a, err))
			continue
		}
		leader, err := leaderRESPAddr(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a, err))
			continue
		}
		return leader, nil
	}
	return "", errors.Join(errs...)
}

// leaderRESPAddr reads a CLUSTER.INFO reply (a RESP2 flat field/value
// array or a RESP3 map).
func leaderRESPAddr(v any) (string, error) {
	info, ok := asMap(v)
	if !ok {
		return "", fmt.Errorf("CLUSTER.INFO: unexpected reply %T", v)
	}
	id, _ := info["leader_id"].(string)
	if id == "" {
		return "", errors.New("CLUSTER.INFO: no leader")
	}
	nodes, _ := info["nodes"].([]any)
	for _, n := range nodes {
		nm, ok := asMap(n)
		if !ok {
			continue
		}
		if nm["id"] == id {
			if a, _ := nm["resp_address"].(string); a != "" {
				return a, nil
			}
			return "", fmt.Errorf("CLUSTER.INFO: leader %s has no resp_address", id)
		}
	}
	return "", fmt.Errorf("CLUSTER.INFO: leader %s not among nodes", id)
}

func asMap(v any) (map[string]any, bool) {
	switch t := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			if ks, ok := k.(string); ok {
				m[ks] = x
			}
		}
		return m, true
	case []any:
		if len(t)%2 != 0 {
			return nil, false
		}
		m := make(map[string]any, len(t)/2)
		for i := 0; i < len(t); i += 2 {
			if ks, ok := t[i].(string); ok {
				m[ks] = t[i+1]
			}
		}
		return m, true
	}
	return nil, false
}
