//go:build unix

package tests

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
)

// redlockRelease is the redis.io release script Redlock clients send.
const redlockRelease = `if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end`

// TestPipelineThroughFollower sends go-redis pipelines of Redlock-style
// cycles (SET NX PX, the release script) and native ones to a follower of a
// 3-node cluster. The writes of a pipeline run concurrently on the server,
// but must take effect in order: every SET NX and LOCK.ACQUIRE finds the
// key free only because the release before it was applied first.
func TestPipelineThroughFollower(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader()
	follower := c.others(lead)[0]
	ctx := ctxFor(t)
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			rdb := follower.redis(proto)
			key, native, seq := fmt.Sprintf("pl-%d", proto), fmt.Sprintf("pln-%d", proto), fmt.Sprintf("pls-%d", proto)
			const rounds = 50
			var sets, releases, acquires, nreleases []redis.Cmder
			_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i := 0; i < rounds; i++ {
					owner := fmt.Sprintf("owner-%d", i)
					sets = append(sets, p.SetArgs(ctx, key, owner, redis.SetArgs{Mode: "NX", TTL: 30e9}))
					releases = append(releases, p.Eval(ctx, redlockRelease, []string{key}, owner))
					acquires = append(acquires, p.Do(ctx, "LOCK.ACQUIRE", native, owner, "30000"))
					nreleases = append(nreleases, p.Do(ctx, "LOCK.RELEASE", native, owner))
					p.Set(ctx, seq, i, 0)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("pipeline: %v", err)
			}
			var last int64
			for i := 0; i < rounds; i++ {
				if v, err := sets[i].(*redis.StatusCmd).Result(); err != nil || v != "OK" {
					t.Fatalf("round %d: SET NX = %q, %v", i, v, err)
				}
				if v, err := releases[i].(*redis.Cmd).Int64(); err != nil || v != 1 {
					t.Fatalf("round %d: release script = %d, %v", i, v, err)
				}
				tok, err := acquires[i].(*redis.Cmd).Int64()
				if err != nil || tok <= last {
					t.Fatalf("round %d: LOCK.ACQUIRE = %d, %v (previous token %d)", i, tok, err, last)
				}
				last = tok
				if v, err := nreleases[i].(*redis.Cmd).Int64(); err != nil || v != 1 {
					t.Fatalf("round %d: LOCK.RELEASE = %d, %v", i, v, err)
				}
			}
			if v, err := rdb.Get(ctx, seq).Result(); err != nil || v != strconv.Itoa(rounds-1) {
				t.Fatalf("GET %s = %q, %v; want %d", seq, v, err, rounds-1)
			}
		})
	}
}
