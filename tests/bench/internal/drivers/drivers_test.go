package drivers

import (
	"testing"
	"time"
)

func TestLeaderRESPAddr(t *testing.T) {
	resp2 := []any{"leader_id", "node2", "term", int64(3), "nodes", []any{
		[]any{"id", "node1", "state", "follower", "address", "127.0.0.1:9001", "resp_address", "127.0.0.1:6379", "http_address", "127.0.0.1:8001"},
		[]any{"id", "node2", "state", "leader", "address", "127.0.0.1:9002", "resp_address", "127.0.0.1:6380", "http_address", "127.0.0.1:8002"},
	}, "quorum_size", int64(2), "has_quorum", int64(1)}
	if a, err := leaderRESPAddr(resp2); err != nil || a != "127.0.0.1:6380" {
		t.Fatalf("resp2: %q %v", a, err)
	}
	resp3 := map[any]any{"leader_id": "node1", "nodes": []any{
		map[any]any{"id": "node1", "resp_address": "127.0.0.1:6379"},
	}}
	if a, err := leaderRESPAddr(resp3); err != nil || a != "127.0.0.1:6379" {
		t.Fatalf("resp3: %q %v", a, err)
	}
	if _, err := leaderRESPAddr([]any{"leader_id", ""}); err == nil {
		t.Fatal("no leader accepted")
	}
	if _, err := leaderRESPAddr([]any{"leader_id", "x", "nodes", []any{}}); err == nil {
		t.Fatal("missing leader accepted")
	}
}

func TestMillis(t *testing.T) {
	for in, want := range map[int64]int64{0: 1, 1: 1, 1_000_000: 1, 1_000_001: 2, 10_000_000_000: 10000} {
		if got := millis(timeDuration(in)); got != want {
			t.Errorf("millis(%d) = %d, want %d", in, got, want)
		}
	}
}

func timeDuration(ns int64) time.Duration { return time.Duration(ns) }
