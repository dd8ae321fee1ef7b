//go:build unix

package tests

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestJoinAndLeave adds a fourth node to a running cluster with --join (it
// catches up by snapshot, since the leader has compacted its log), checks
// its own state converges with the leader's, then removes it over HTTP.
func TestJoinAndLeave(t *testing.T) {
	c := newCluster(t, 3, "--snapshot-threshold", "16", "--trailing-logs", "4", "--snapshot-interval", "100ms")
	ctx := ctxFor(t)
	lead := c.leader()
	rdb := lead.redis(2)
	for i := 0; i < 60; i++ {
		if err := rdb.Do(ctx, "LOCK.ACQUIRE", fmt.Sprint("k", i%12), fmt.Sprint("o", i), "1h").Err(); err != nil && err.Error() != "redis: nil" {
			t.Fatal(err)
		}
	}
	n4 := newProc(t, "node4", "--join", fmt.Sprintf("localhost:%d", c.procs[0].raftPort))
	n4.start()
	poll(t, 20*time.Second, "node4 in the configuration with 4 voters", func() bool {
		code, m := httpJSONQuiet(lead.url("/cluster/info"))
		nodes, _ := m["nodes"].([]any)
		return code == 200 && len(nodes) == 4 && m["quorum_size"] == 3.0
	})
	poll(t, 20*time.Second, "node4's state to match the leader's", func() bool {
		_, a := httpJSONQuiet(lead.url("/debug/state"))
		_, b := httpJSONQuiet(n4.url("/debug/state"))
		return a != nil && b != nil && a["state_sha256"] == b["state_sha256"] && a["applied_index"] == b["applied_index"]
	})
	info := infoMap(t, n4.redis(2).Do(ctx, "LOCK.INFO", "k3"))
	if info["owner"] != "o3" {
		t.Fatalf("LOCK.INFO via node4 = %v", info)
	}
	if code, m := httpJSON(t, "POST", c.procs[1].url("/cluster/leave"), `{"id":"node4"}`); code != 200 || m["success"] != true {
		t.Fatalf("leave: %d %v", code, m)
	}
	voters := func(n int) func() bool {
		return func() bool {
			code, m := httpJSONQuiet(lead.url("/cluster/info"))
			nodes, _ := m["nodes"].([]any)
			return code == 200 && len(nodes) == n && m["quorum_size"] == float64(n/2+1)
		}
	}
	poll(t, 10*time.Second, "3 voters again", voters(3))
	// The removed node hears of its removal (the leader replicates the
	// configuration to it before it stops) and says so when asked if it
	// is ready, instead of "no leader".
	poll(t, 10*time.Second, "node4 to report that it is no longer a member", func() bool {
		code, m := httpJSONQuiet(n4.url("/health/ready"))
		msg, _ := m["error"].(string)
		return code == 503 && strings.Contains(msg, "not a member of the cluster")
	})

	// The same over RESP, through a follower: CLUSTER.JOIN, CLUSTER.LEAVE.
	frdb := c.others(lead)[0].redis(2)
	if s, err := frdb.Do(ctx, "CLUSTER.JOIN", "node4", fmt.Sprintf("localhost:%d", n4.raftPort)).Text(); err != nil || s != "OK" {
		t.Fatalf("CLUSTER.JOIN = %q, %v", s, err)
	}
	poll(t, 10*time.Second, "4 voters after CLUSTER.JOIN", voters(4))
	poll(t, 10*time.Second, "node4 ready again once a member", func() bool {
		code, _ := httpJSONQuiet(n4.url("/health/ready"))
		return code == 200
	})
	if s, err := frdb.Do(ctx, "CLUSTER.LEAVE", "node4").Text(); err != nil || s != "OK" {
		t.Fatalf("CLUSTER.LEAVE = %q, %v", s, err)
	}
	poll(t, 10*time.Second, "3 voters after CLUSTER.LEAVE", voters(3))
	if err := frdb.Do(ctx, "CLUSTER.JOIN", "node5").Err(); err == nil || !strings.HasPrefix(err.Error(), "ERR wrong number") {
		t.Fatalf("CLUSTER.JOIN with one argument: %v", err)
	}
}
