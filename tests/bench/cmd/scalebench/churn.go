package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// maxChurnCycles bounds each churn client's acquire+release cycles, beside
// the -churn duration.
const maxChurnCycles = 10_000_000

// churnResult is what the load after the restart measured.
type churnResult struct {
	dur      time.Duration
	cycles   int64
	rssMax   int64   // largest VmRSS sampled during the load
	hwm      int64   // VmHWM at the end (peak since the restart)
	memLimit float64 // Go's soft memory limit at the end (go_gc_gomemlimit_bytes)
}

// churn loads the restarted node, still holding every filled lock: each of
// c.churnConns clients acquires and releases a key of its own for c.churn,
// while VmRSS is sampled. Right after a fill or a restore the heap has just
// been collected; under load it grows to the memory governor's soft limit
// between collections, and the target holds only if RSS stays under it
// while the node serves.
func (b *bench) churn(n *node) (churnResult, error) {
	c := b.cfg
	var res churnResult
	rdb := redis.NewClient(&redis.Options{
		Addr: fmt.Sprintf("127.0.0.1:%d", b.resp), PoolSize: c.churnConns, Protocol: 2, DisableIdentity: true,
		DialTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, MaxRetries: -1,
	})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.churn)
	defer cancel()
	var (
		cycles   atomic.Int64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		if ctx.Err() != nil {
			return // the load's end cut a command short
		}
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	start := time.Now()
	for i := range c.churnConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key, owner := fmt.Sprintf("churn:%04d", i), fmt.Sprintf("churner-%04d", i)
			for k := 0; k < maxChurnCycles && ctx.Err() == nil; k++ {
				if err := rdb.Do(ctx, "LOCK.ACQUIRE", key, owner, "30000").Err(); err != nil {
					fail(fmt.Errorf("churn LOCK.ACQUIRE %s: %w", key, err))
					return
				}
				if err := rdb.Do(ctx, "LOCK.RELEASE", key, owner).Err(); err != nil {
					fail(fmt.Errorf("churn LOCK.RELEASE %s: %w", key, err))
					return
				}
				cycles.Add(1)
			}
		}()
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
sample:
	for {
		select {
		case <-ctx.Done():
			break sample
		case <-tick.C:
			if n.exited() {
				fail(errors.New("the node exited during the load"))
				break sample
			}
			rss, _ := procMem(n.pid())
			res.rssMax = max(res.rssMax, rss)
		}
	}
	wg.Wait()
	res.dur, res.cycles = time.Since(start), cycles.Load()
	_, res.hwm = procMem(n.pid())
	res.memLimit = b.metric("go_gc_gomemlimit_bytes")
	return res, firstErr
}
