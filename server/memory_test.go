package server

import (
	"context"
	"math"
	"runtime/debug"
	"testing"
	"time"
)

func TestMemoryLimitFor(t *testing.T) {
	cases := []struct {
		live     uint64
		headroom int
		want     int64
	}{
		{0, 50, memoryFloor},
		{100 << 20, 50, memoryFloor},                    // 150+64 MiB < floor
		{300 << 20, 50, (450 + 64) << 20},               // a million locks
		{300 << 20, 100, (600 + 64) << 20},              // GOGC's own room
		{4 << 30, 25, (5<<30 + 64<<20)},                 // large heaps scale
		{1 << 20, 1000, memoryFloor},                    // tiny heap, any room
		{math.MaxInt32, 0, math.MaxInt32 + memorySlack}, // no room: just above live
	}
	for _, c := range cases {
		if got := memoryLimitFor(c.live, c.headroom); got != c.want {
			t.Errorf("memoryLimitFor(%d MiB, %d) = %d MiB, want %d MiB", c.live>>20, c.headroom, got>>20, c.want>>20)
		}
		if got := memoryLimitFor(c.live, c.headroom); got <= int64(c.live) {
			t.Errorf("limit %d not above the live heap %d: the collector would thrash", got, c.live)
		}
	}
}

func TestGovernMemorySetsAndRestoresLimit(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	before := debug.SetMemoryLimit(-1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { governMemory(ctx, 50); close(done) }()
	waitFor(t, 5*time.Second, "the governor to set a limit", func() bool {
		return debug.SetMemoryLimit(-1) == memoryLimitFor(liveHeap(), 50)
	})
	cancel()
	<-done
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("limit after stop = %d, want the original %d", got, before)
	}
}

func TestGovernMemoryLeavesExplicitLimit(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "1GiB")
	before := debug.SetMemoryLimit(-1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	governMemory(ctx, 50) // returns at once
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("limit changed to %d with GOMEMLIMIT set", got)
	}
}
