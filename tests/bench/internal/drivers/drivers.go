// Package drivers adapts each lock system the benchmark compares to one
// small interface: acquire a key (once, or waiting), release it.
//
//   - native:  this server's LOCK.ACQUIRE / LOCK.RELEASE ... TOKEN (go-redis)
//   - setnx:   SET key val NX PX ttl + EVALSHA of the Redlock release script
//   - redis:   the same commands against a redis-server
//   - redsync: github.com/go-redsync/redsync/v4 over one go-redis pool
//   - etcd:    clientv3 concurrency.Session + concurrency.Mutex
package drivers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Systems lists the names Open accepts.
var Systems = []string{"native", "setnx", "redsync", "redis", "etcd"}

// Options configure a system.
type Options struct {
	// Addrs are host:port addresses: RESP ports for native, setnx,
	// redsync and redis; client URLs' host:port for etcd.
	Addrs []string
	// LeaderOnly sends every request to the raft leader (native, setnx,
	// redsync against this server), found with CLUSTER.INFO.
	LeaderOnly bool
	// Clients is the number of workers that will call NewClient.
	Clients int
	// TTL is the lease of each lock.
	TTL time.Duration
	// MaxWait is the longest waitFor a worker will pass to Acquire.
	MaxWait time.Duration
	// Poll is the delay between tries for systems with no server-side
	// waiting (setnx, redis, redsync) in wait mode.
	Poll time.Duration
	// Owner prefixes owner names and lock values (unique per run).
	Owner string
	// Password for AUTH, if any.
	Password string
}

// Result is one acquire's outcome.
type Result struct {
	// Granted is false when the lock was held by someone else (and, when
	// waiting, stayed held until waitFor ran out).
	Granted bool
	// Token is the fencing token, when HasToken.
	Token    uint64
	HasToken bool
	// Tries is the number of acquire round trips made (1 for a try, more
	// for client-side polling).
	Tries int
}

// Client is one worker's connection to a system. A Client is used by one
// goroutine and holds at most one lock at a time.
type Client interface {
	// Acquire tries once (wait false) or waits until the lock is granted,
	// waitFor passes or ctx ends (wait true; neither is an error).
	Acquire(ctx context.Context, key string, wait bool, waitFor time.Duration) (Result, error)
	// Release releases the lock the last successful Acquire of key got.
	// It returns ErrNotHeld when the lock was no longer ours.
	Release(ctx context.Context, key string) error
	Close() error
}

// System is a connected lock system.
type System interface {
	// NewClient returns worker w's client.
	NewClient(ctx context.Context, w int) (Client, error)
	// Targets describes where requests go (for the report).
	Targets() []string
	// HasTokens tells whether Acquire returns fencing tokens.
	HasTokens() bool
	Close() error
}

// ErrNotHeld is returned by Release when the lock was not held any more.
var ErrNotHeld = errors.New("release: lock not held (expired or taken)")

// Open connects to a system by name.
func Open(ctx context.Context, name string, o Options) (System, error) {
	if len(o.Addrs) == 0 {
		return nil, errors.New("no addresses")
	}
	if o.Clients < 1 {
		o.Clients = 1
	}
	if o.TTL <= 0 {
		o.TTL = 10 * time.Second
	}
	switch name {
	case "native":
		return openRedisLike(ctx, o, kindNative)
	case "setnx":
		return openRedisLike(ctx, o, kindSetNX)
	case "redis":
		if o.LeaderOnly {
			return nil, errors.New("-leader-only applies to this server, not redis")
		}
		return openRedisLike(ctx, o, kindSetNX)
	case "redsync":
		return openRedisLike(ctx, o, kindRedsync)
	case "etcd":
		return openEtcd(ctx, o)
	}
	return nil, fmt.Errorf("unknown system %q (want one of %s)", name, strings.Join(Systems, ", "))
}

// Probe runs one acquire/release cycle on key so that a system lacking a
// command fails once, clearly, before any worker starts.
func Probe(ctx context.Context, s System, key string) error {
	c, err := s.NewClient(ctx, 0)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	r, err := c.Acquire(ctx, key, false, 0)
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	if !r.Granted {
		return fmt.Errorf("acquire of a fresh key %q was refused", key)
	}
	if err := c.Release(ctx, key); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return nil
}

// sleepCtx sleeps for d or until ctx ends; it reports whether it slept the
// whole time.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
