package server

import (
	"context"
	"os"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"
)

// Memory: Go's collector lets the heap grow to twice the live heap before
// it collects (GOGC=100). For a small lock table that is the right trade,
// but a node holding a million locks (about 300 MiB live) would then sit at
// over 600 MiB. With MemoryHeadroom set, the node keeps a soft memory limit
// of live heap x (1 + MemoryHeadroom/100) + memorySlack, never below
// memoryFloor, and re-reads the live heap every memoryInterval: large heaps
// get GOGC=MemoryHeadroom's room, small ones keep GOGC's. The limit is
// always above the live heap, so the collector never thrashes. An explicit
// GOMEMLIMIT in the environment turns this off.

const (
	memoryFloor    = 256 << 20
	memorySlack    = 64 << 20
	memoryInterval = time.Second
)

// memoryLimitFor returns the soft limit for a live heap of live bytes.
func memoryLimitFor(live uint64, headroom int) int64 {
	limit := int64(live) + int64(live)*int64(headroom)/100 + memorySlack
	return max(limit, memoryFloor)
}

// liveHeap returns the heap the last collection found live.
func liveHeap() uint64 {
	s := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	rtmetrics.Read(s)
	if s[0].Value.Kind() != rtmetrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// governMemory keeps the process's soft memory limit in step with its live
// heap until ctx ends, then restores the limit it found. It does nothing
// when GOMEMLIMIT is set.
func governMemory(ctx context.Context, headroom int) {
	if headroom <= 0 || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	before := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(before)
	t := time.NewTicker(memoryInterval)
	defer t.Stop()
	for {
		debug.SetMemoryLimit(memoryLimitFor(liveHeap(), headroom))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
