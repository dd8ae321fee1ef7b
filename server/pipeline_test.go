package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distlock/distlock/lockapi"
)

// TestPipelinedCommandsKeepTheirOrder runs a pipeline's worth of writes the
// way the RESP front end does (each on its own goroutine, chained with
// turns), started in reverse order with random delays, on the leader and
// through a follower. Only if they take effect in sequence order does every
// acquire find the lock free (its previous owner's release came first),
// every token grow, and the last SET win.
func TestPipelinedCommandsKeepTheirOrder(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	lead := c.leader()
	for _, tc := range []struct {
		name string
		node int
	}{{"leader", lead}, {"follower", c.follower()}} {
		t.Run(tc.name, func(t *testing.T) {
			n := c.nodes[tc.node]
			key, seqKey := "pipe-"+tc.name, "seq-"+tc.name
			const rounds = 40
			results := make([]string, 3*rounds)
			var ops []func(context.Context) error
			for i := 0; i < rounds; i++ {
				owner := fmt.Sprintf("owner%d", i%3)
				ops = append(ops,
					func(ctx context.Context) error {
						jitter()
						l, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: key, Owner: owner, TTL: 30 * time.Second})
						results[3*i] = strconv.FormatUint(l.Token, 10)
						return err
					},
					func(ctx context.Context) error {
						jitter()
						results[3*i+1] = "released"
						return n.Release(ctx, lockapi.ReleaseRequest{Key: key, Owner: owner})
					},
					func(ctx context.Context) error {
						jitter()
						v, err := n.Do(ctx, [][]byte{[]byte("SET"), []byte(seqKey), []byte(strconv.Itoa(i))})
						results[3*i+2] = v.String()
						return err
					})
			}
			errs := runInTurn(ctxT(t), 0, ops...)
			var last uint64
			for i := range ops {
				if errs[i] != nil {
					t.Fatalf("command %d (%s): %v", i, results[i], errs[i])
				}
				if i%3 != 0 {
					continue
				}
				tok, err := strconv.ParseUint(results[i], 10, 64)
				if err != nil || tok <= last {
					t.Fatalf("acquire %d: token %q after %d", i/3, results[i], last)
				}
				last = tok
			}
			if v := do(t, c.nodes[lead], "GET", seqKey); v.Str != strconv.Itoa(rounds-1) {
				t.Fatalf("GET %s = %v, want %d", seqKey, v, rounds-1)
			}
		})
	}
}

// jitter sleeps up to 200 µs, so that the goroutines of a run reach the
// service in a shuffled order.
func jitter() { time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond) }

// runInTurn runs ops as one pipelined run: each on its own goroutine with a
// turn chained to the previous one's, started last first (with pause
// between starts, so that later commands really get ahead), and returns
// their errors.
func runInTurn(ctx context.Context, pause time.Duration, ops ...func(context.Context) error) []error {
	turns := make([]*lockapi.Turn, len(ops))
	var prev *lockapi.Turn
	for i := range turns {
		turns[i] = lockapi.NewTurn(prev)
		prev = turns[i]
	}
	errs := make([]error, len(ops))
	var wg sync.WaitGroup
	for i := len(ops) - 1; i >= 0; i-- {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer turns[i].Done()
			errs[i] = ops[i](lockapi.WithTurn(ctx, turns[i]))
		}()
		time.Sleep(pause)
	}
	wg.Wait()
	return errs
}

// TestPipelinedReleaseHandsOffInTurn: A holds k and W waits for it. The
// pipeline RELEASE k A; ACQUIRE k B; RELEASE k B must behave as run one
// after another: A's release hands k to W, B's acquire is refused, B's
// release fails. A release that claimed the waiter before its turn let B
// jump the queue (found in review).
func TestPipelinedReleaseHandsOffInTurn(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ctx := ctxT(t)
	if _, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "A", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	granted := make(chan error, 1)
	go func() {
		_, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "W", TTL: time.Minute, Wait: 5 * time.Second})
		granted <- err
	}()
	waitFor(t, 5*time.Second, "W queued", func() bool { return n.waits.count("k") == 1 })
	errs := runInTurn(ctx, 20*time.Millisecond,
		func(ctx context.Context) error { return n.Release(ctx, lockapi.ReleaseRequest{Key: "k", Owner: "A"}) },
		func(ctx context.Context) error {
			_, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "B", TTL: 10 * time.Second})
			return err
		},
		func(ctx context.Context) error { return n.Release(ctx, lockapi.ReleaseRequest{Key: "k", Owner: "B"}) },
	)
	if errs[0] != nil || !errors.Is(errs[1], lockapi.ErrHeld) || errs[2] == nil {
		t.Fatalf("release A: %v, acquire B: %v (want held), release B: %v (want an error)", errs[0], errs[1], errs[2])
	}
	if err := <-granted; err != nil {
		t.Fatalf("W was not granted k: %v", err)
	}
}

// TestPipelineOrderAcrossLeaderChanges pipelines acquires of fresh keys on
// every node while leadership moves (a lock's token is the index of its
// entry, so tokens show log order). Commands may fail while there is no
// leader, but two that succeed must not be inverted. A node that is no
// longer leader used to pass an ordered request on to the new leader,
// where the next command of the pipeline, sent there directly, could
// arrive first (found in review).
func TestPipelineOrderAcrossLeaderChanges(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.leader()
	var (
		stop       atomic.Bool
		wg         sync.WaitGroup
		violations atomic.Int64
		seq        atomic.Int64
	)
	for _, n := range c.nodes {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					const size = 16
					toks := make([]uint64, size)
					base := seq.Add(size)
					ops := make([]func(context.Context) error, size)
					for i := range ops {
						ops[i] = func(ctx context.Context) error {
							ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
							defer cancel()
							l, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: fmt.Sprintf("o%d", base+int64(i)), Owner: "o", TTL: time.Minute})
							toks[i] = l.Token
							return err
						}
					}
					errs := runInTurn(context.Background(), 0, ops...)
					for i := range size {
						for j := i + 1; j < size; j++ {
							if errs[i] == nil && errs[j] == nil && toks[i] > toks[j] {
								violations.Add(1)
								t.Errorf("command %d (token %d) took effect after command %d (token %d)", i, toks[i], j, toks[j])
							}
						}
					}
				}
			}()
		}
	}
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) && violations.Load() == 0 {
		for _, n := range c.nodes {
			if n.IsLeader() {
				n.raft.LeadershipTransfer()
				break
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
}
