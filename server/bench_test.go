package server

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distlock/distlock/lockapi"
)

// BenchmarkAcquireRelease measures acquire+release cycles through the
// service API on a one-node cluster with fsync on: the raft apply path,
// the state machine and the walstore, without a network front end.
func BenchmarkAcquireRelease(b *testing.B) {
	for _, parallel := range []int{1, 64} {
		b.Run(fmt.Sprintf("clients=%d", parallel), func(b *testing.B) {
			n := startNode(&testing.T{}, b.TempDir(), nil)
			defer n.Close()
			var id atomic.Int64
			b.SetParallelism(parallel)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				key := fmt.Sprint("k", id.Add(1))
				ctx := context.Background()
				for pb.Next() {
					l, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: key, Owner: key, TTL: time.Minute})
					if err != nil {
						b.Error(err)
						return
					}
					if err := n.Release(ctx, lockapi.ReleaseRequest{Key: key, Owner: key, Token: l.Token}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cycles/s")
		})
	}
}
