//go:build unix

package tests

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// cluster is n node processes that list each other in --peers, as in the
// seed's three terminal commands (peers named localhost:port).
type cluster struct {
	t     *testing.T
	procs []*proc
}

func newCluster(t *testing.T, n int, extra ...string) *cluster {
	t.Helper()
	c := &cluster{t: t}
	for i := 0; i < n; i++ {
		c.procs = append(c.procs, newProc(t, fmt.Sprintf("node%d", i+1), extra...))
	}
	for i, p := range c.procs {
		var peers []string
		for j, q := range c.procs {
			if j != i {
				peers = append(peers, fmt.Sprintf("%s:localhost:%d", q.id, q.raftPort))
			}
		}
		p.extra = append(p.extra, "--peers", strings.Join(peers, ","))
	}
	// Start them in reverse order: the order must not matter.
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].launch()
	}
	for _, p := range c.procs {
		p.waitReady()
	}
	return c
}

// leader returns the node every live node agrees leads.
func (c *cluster) leader() *proc {
	c.t.Helper()
	var lead *proc
	poll(c.t, 20*time.Second, "agreement on one leader", func() bool {
		lead = nil
		ids := map[string]bool{}
		for _, p := range c.procs {
			if p.cmd.ProcessState != nil {
				continue
			}
			code, m := httpJSONQuiet(p.url("/cluster/info"))
			if code != 200 || m["leader_id"] == "" || m["leader_id"] == nil {
				return false
			}
			ids[fmt.Sprint(m["leader_id"])] = true
		}
		if len(ids) != 1 {
			return false
		}
		for _, p := range c.procs {
			if ids[p.id] && p.cmd.ProcessState == nil {
				lead = p
			}
		}
		return lead != nil
	})
	return lead
}

func (c *cluster) others(not *proc) []*proc {
	var out []*proc
	for _, p := range c.procs {
		if p != not {
			out = append(out, p)
		}
	}
	return out
}

func TestSeedClusterFailoverAndQuorum(t *testing.T) {
	c := newCluster(t, 3)
	ctx := ctxFor(t)
	lead := c.leader()
	followers := c.others(lead)

	// A lock taken through one node is visible through another.
	tok, err := followers[0].redis(3).Do(ctx, "LOCK.ACQUIRE", "shared", "alice", "8s").Int64()
	if err != nil {
		t.Fatalf("acquire through follower %s: %v", followers[0].id, err)
	}
	info := infoMap(t, followers[1].redis(2).Do(ctx, "LOCK.INFO", "shared"))
	if info["owner"] != "alice" || info["fencing_token"] != tok {
		t.Fatalf("LOCK.INFO through %s = %v", followers[1].id, info)
	}
	code, m := httpJSON(t, "POST", followers[1].url("/locks/acquire"), `{"key":"http-lock","owner":"bob","ttl":"30s"}`)
	if code != 200 || m["success"] != true {
		t.Fatalf("HTTP acquire through a follower: %d %v", code, m)
	}

	// Kill -9 the leader: a new one is elected, the lock keeps its owner
	// and token, and its TTL still runs.
	killed := time.Now()
	lead.kill()
	newLead := c.leader()
	elected := time.Since(killed)
	t.Logf("leader %s killed; %s elected after %s", lead.id, newLead.id, elected.Round(time.Millisecond))
	rdb := newLead.redis(2)
	info = infoMap(t, rdb.Do(ctx, "LOCK.INFO", "shared"))
	if info["owner"] != "alice" || info["fencing_token"] != tok {
		t.Fatalf("after failover LOCK.INFO = %v", info)
	}
	if ttl := info["ttl_ms"].(int64); ttl > 8000 || ttl < 3000 {
		t.Fatalf("ttl_ms after failover = %d, want below 8000 and not expired early", ttl)
	}
	poll(t, 15*time.Second, "the lock to expire on the new leader", func() bool {
		return rdb.Do(ctx, "LOCK.INFO", "shared").Err() == redis.Nil
	})
	next, err := rdb.Do(ctx, "LOCK.ACQUIRE", "shared", "carol", "60s").Int64()
	if err != nil || next <= tok {
		t.Fatalf("grant after failover = %d, %v; want a token above %d", next, err, tok)
	}

	// Kill a majority: requests fail fast with the no-quorum error.
	survivor := c.others(lead)[0]
	for _, p := range c.others(lead) {
		if p != survivor {
			p.kill()
		}
	}
	srdb := survivor.redis(2)
	poll(t, 5*time.Second, "the survivor to refuse writes", func() bool {
		start := time.Now()
		err := srdb.Do(ctx, "LOCK.ACQUIRE", "minority", "dave", "5s").Err()
		if err == nil {
			t.Fatal("a write succeeded on a minority")
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("refusing took %s", time.Since(start))
		}
		return strings.HasPrefix(err.Error(), "CLUSTERDOWN")
	})
	if err := srdb.Do(ctx, "LOCK.INFO", "shared").Err(); err == nil || err == redis.Nil {
		t.Fatalf("a read succeeded on a minority: %v", err)
	}
	if code, _ := httpJSON(t, "POST", survivor.url("/locks/acquire"), `{"key":"m","owner":"o","ttl":"1s"}`); code != 503 {
		t.Fatalf("HTTP write on a minority: status %d, want 503", code)
	}

	// Restart them: service resumes with no lost lock.
	for _, p := range c.procs {
		if p != survivor {
			p.start()
		}
	}
	c.leader()
	info = infoMap(t, survivor.redis(2).Do(ctx, "LOCK.INFO", "shared"))
	if info["owner"] != "carol" || info["fencing_token"] != next {
		t.Fatalf("after restarting the majority LOCK.INFO = %v, want carol/%d", info, next)
	}
}

// TestPausedFollowerCatchesUpBySnapshot stops a follower (SIGSTOP, a
// partition from its peers' point of view) while the leader writes and
// compacts past it; resumed, it must install a snapshot and converge.
func TestPausedFollowerCatchesUpBySnapshot(t *testing.T) {
	c := newCluster(t, 3, "--snapshot-threshold", "32", "--trailing-logs", "8", "--snapshot-interval", "100ms")
	ctx := ctxFor(t)
	lead := c.leader()
	lagger := c.others(lead)[0]
	if err := lagger.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	rdb := lead.redis(2)
	for i := 0; i < 200; i++ {
		if err := rdb.Do(ctx, "LOCK.ACQUIRE", fmt.Sprint("k", i%20), fmt.Sprint("o", i), "1h").Err(); err != nil && err != redis.Nil {
			t.Fatal(err)
		}
	}
	want, err := rdb.Do(ctx, "LOCK.LIST").Slice()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let the leader snapshot and compact
	if err := lagger.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Reads on the lagger are forwarded to the leader, so check its own
	// state through its metrics: its applied index must reach the leader's.
	poll(t, 20*time.Second, "the resumed follower to catch up", func() bool {
		return metricValue(lagger, "raft_applied_index") >= metricValue(lead, "raft_applied_index") &&
			metricValue(lagger, "raft_last_snapshot_index") > 0
	})
	got, err := lagger.redis(2).Do(ctx, "LOCK.LIST").Slice()
	if err != nil || len(got) != len(want) {
		t.Fatalf("LOCK.LIST via the lagger: %d locks, %v; want %d", len(got), err, len(want))
	}
}

// metricValue reads one unlabelled gauge from a node's /metrics.
func metricValue(p *proc, name string) float64 {
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.httpPort), time.Second)
	if err != nil {
		return -1
	}
	conn.Close()
	body, err := httpGet(p.url("/metrics"))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}
