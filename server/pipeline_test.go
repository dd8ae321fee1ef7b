package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
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
			type op func(ctx context.Context) (string, error)
			var ops []op
			for i := 0; i < rounds; i++ {
				owner := fmt.Sprintf("owner%d", i%3)
				ops = append(ops,
					func(ctx context.Context) (string, error) {
						l, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: key, Owner: owner, TTL: 30 * time.Second})
						return strconv.FormatUint(l.Token, 10), err
					},
					func(ctx context.Context) (string, error) {
						return "released", n.Release(ctx, lockapi.ReleaseRequest{Key: key, Owner: owner})
					},
					func(ctx context.Context) (string, error) {
						v, err := n.Do(ctx, [][]byte{[]byte("SET"), []byte(seqKey), []byte(strconv.Itoa(i))})
						return v.String(), err
					})
			}
			turns := make([]*lockapi.Turn, len(ops))
			var prev *lockapi.Turn
			for i := range turns {
				turns[i] = lockapi.NewTurn(prev)
				prev = turns[i]
			}
			results := make([]string, len(ops))
			errs := make([]error, len(ops))
			var wg sync.WaitGroup
			for i := len(ops) - 1; i >= 0; i-- {
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer turns[i].Done()
					time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
					results[i], errs[i] = ops[i](lockapi.WithTurn(ctxT(t), turns[i]))
				}()
			}
			wg.Wait()
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
