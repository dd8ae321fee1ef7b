package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPermutationIsBijective(t *testing.T) {
	for _, n := range []int{1, 2, 3, 10, 50_000, 1_000_000} {
		for _, random := range []bool{false, true} {
			p := permutation(n, random)
			seen := make([]bool, n)
			for i := 0; i < n; i++ {
				k := p(i)
				if k < 0 || k >= n || seen[k] {
					t.Fatalf("n=%d random=%v: slot %d -> %d (repeated or out of range)", n, random, i, k)
				}
				seen[k] = true
			}
		}
	}
}

func TestKeyAndOwnerShape(t *testing.T) {
	if k := lockKey(42); k != "lock:0000042" {
		t.Fatalf("lockKey(42) = %q", k)
	}
	for i := 0; i < 1000; i++ {
		if o := lockOwner(i); len(o) != 36 || o[8] != '-' || o[13] != '-' || o[18] != '-' || o[23] != '-' {
			t.Fatalf("lockOwner(%d) = %q", i, o)
		}
	}
	if lockOwner(1) == lockOwner(2) || lockOwner(7) != lockOwner(7) {
		t.Fatal("owners must be distinct per key and deterministic")
	}
}

func TestLogParsing(t *testing.T) {
	log := `{"time":"2026-11-26T00:38:00.100Z","level":"INFO","msg":"starting snapshot up to: index=8200","component":"raft"}
not json
{"time":"2026-11-26T00:38:00.600Z","level":"INFO","msg":"snapshot complete up to: index=8200","component":"raft"}
{"time":"2026-11-26T00:38:10.000Z","level":"INFO","msg":"starting restore from snapshot: id=2-1000004-1 last-index=1000004 last-term=2 size-in-bytes=83000099","component":"raft"}
{"time":"2026-11-26T00:38:11.500Z","level":"INFO","msg":"restored from snapshot: id=2-1000004-1 last-index=1000004 last-term=2 size-in-bytes=83000099","component":"raft"}
{"time":"2026-11-26T00:38:11.800Z","level":"INFO","msg":"entering leader state: leader=\"Node at 127.0.0.1:1 [Leader]\"","component":"raft"}
`
	path := filepath.Join(t.TempDir(), "node.log")
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	snaps, err := snapshots(path)
	if err != nil || len(snaps) != 1 || snaps[0].index != 8200 || snaps[0].dur() != 500*time.Millisecond {
		t.Fatalf("snapshots = %+v, %v", snaps, err)
	}
	ev, err := events(path)
	if err != nil || ev.restoreEnd.Sub(ev.restoreStart) != 1500*time.Millisecond || ev.leader.IsZero() {
		t.Fatalf("events = %+v, %v", ev, err)
	}
}
