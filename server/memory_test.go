package server

import (
	"context"
	"io"
	"math"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
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

func TestGCPercentFor(t *testing.T) {
	cases := []struct {
		live uint64
		want int
	}{
		{0, 1500},                  // Go's 4 MiB minimum: a 64 MiB goal
		{4 << 20, 1500},            // (64-4)/4
		{10 << 20, 540},            // a few thousand locks
		{heapGoalFloor/2 - 1, 100}, // at least Go's default
		{heapGoalFloor / 2, 100},
		{300 << 20, 100}, // a million locks: the soft limit governs
	}
	for _, c := range cases {
		got := gcPercentFor(c.live)
		if got != c.want {
			t.Errorf("gcPercentFor(%d) = %d, want %d", c.live, got, c.want)
		}
		if goal := max(c.live, minLiveHeap) * uint64(100+got) / 100; goal < heapGoalFloor && got > 100 {
			t.Errorf("gcPercentFor(%d) = %d puts the goal at %d MiB, under the floor", c.live, got, goal>>20)
		}
	}
}

// runGovernor starts governMemory with a headroom of 50 and waits for its
// first round (the limit is the last thing a round sets); stop ends it.
func runGovernor(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { governMemory(ctx, 50); close(done) }()
	waitFor(t, 5*time.Second, "the governor to set a limit", func() bool {
		return debug.SetMemoryLimit(-1) == memoryLimitFor(liveHeap(), 50)
	})
	return func() { cancel(); <-done }
}

// gcPercent reads the GC percentage without changing it.
func gcPercent() int {
	p := debug.SetGCPercent(-1)
	debug.SetGCPercent(p)
	return p
}

func TestGovernMemorySetsAndRestoresLimit(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	t.Setenv("GOGC", "")
	before := debug.SetMemoryLimit(-1)
	percentBefore := debug.SetGCPercent(100)
	defer debug.SetGCPercent(percentBefore)
	stop := runGovernor(t)
	// A collection between the governor's reading and ours moves the
	// live heap: the next round catches up.
	waitFor(t, 5*time.Second, "the governor to set the GC percent", func() bool {
		return gcPercent() == gcPercentFor(liveHeap())
	})
	stop()
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("limit after stop = %d, want the original %d", got, before)
	}
	if got := gcPercent(); got != 100 {
		t.Fatalf("GC percent after stop = %d, want the original 100", got)
	}
}

func TestGovernMemoryLeavesExplicitGOGC(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	t.Setenv("GOGC", "100")
	percentBefore := debug.SetGCPercent(100)
	defer debug.SetGCPercent(percentBefore)
	stop := runGovernor(t)
	defer stop()
	if got := gcPercent(); got != 100 {
		t.Errorf("GC percent = %d with GOGC set, want it left at 100", got)
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

// garbageFSM's Restore allocates and drops size bytes, as a large restore
// leaves its decoding behind.
type garbageFSM struct {
	raft.FSM
	size int
	sink []byte
}

func (g *garbageFSM) Restore(rc io.ReadCloser) error {
	g.sink = make([]byte, g.size)
	for i := 0; i < len(g.sink); i += 4096 {
		g.sink[i] = 1 // touch every page
	}
	g.sink = nil
	return rc.Close()
}

// After a restore the node hands the memory it freed back to the OS: the
// heap it still holds (objects, and free pages not yet released) is less
// than the garbage the restore left.
func TestFreeAfterRestore(t *testing.T) {
	const size = 64 << 20
	if err := (freeAfterRestore{&garbageFSM{size: size}}).Restore(io.NopCloser(strings.NewReader(""))); err != nil {
		t.Fatal(err)
	}
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/free:bytes"}}
	rtmetrics.Read(s)
	if held := s[0].Value.Uint64() + s[1].Value.Uint64(); held >= size/2 {
		t.Fatalf("the heap holds %d MiB after a restore that left %d MiB of garbage", held>>20, size>>20)
	}
}
