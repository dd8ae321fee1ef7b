package server

import (
	"context"
	"io"
	"os"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"

	"github.com/hashicorp/raft"
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
//
// Small heaps get a floor on the collector's goal as well: with a few
// thousand locks the live heap is about 10 MiB, and GOGC=100 then collects
// every 10 MiB allocated, about ten times a second per node under load. The
// governor raises GOGC so that the goal is at least heapGoalFloor (64 MiB),
// as a ballast would; the soft limit above still caps the heap if the live
// heap grows between two readings. An explicit GOGC turns this part off.

// freeAfterRestore is the node's state machine as raft sees it: after a
// restore (at start, or a snapshot installed from the leader) it hands the
// memory the restore freed back to the OS at once. Restoring a million
// locks allocates about three times what it keeps (the decoding, and the
// B-trees' second bulk-load pass, see raftfsm), and Go's scavenger would
// otherwise return the difference only slowly, leaving the node's RSS far
// above its live heap.
type freeAfterRestore struct{ raft.FSM }

// Restore restores the state machine, then collects and frees memory.
func (f freeAfterRestore) Restore(rc io.ReadCloser) error {
	err := f.FSM.Restore(rc)
	debug.FreeOSMemory()
	return err
}

const (
	memoryFloor    = 256 << 20
	memorySlack    = 64 << 20
	memoryInterval = time.Second
	heapGoalFloor  = 64 << 20
	minLiveHeap    = 4 << 20 // Go's own minimum heap goal
)

// gcPercentFor returns the GOGC percentage that puts the collector's goal
// at heapGoalFloor for a live heap of live bytes, and never less than Go's
// default of 100.
func gcPercentFor(live uint64) int {
	live = max(live, minLiveHeap)
	if live >= heapGoalFloor/2 {
		return 100
	}
	return int((heapGoalFloor - live) * 100 / live)
}

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

// governMemory keeps the process's soft memory limit and GC percentage in
// step with its live heap until ctx ends, then restores the settings it
// found. It does nothing when GOMEMLIMIT is set, and leaves the GC
// percentage alone when GOGC is.
func governMemory(ctx context.Context, headroom int) {
	if headroom <= 0 || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	setGC := os.Getenv("GOGC") == ""
	before := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(before)
	if setGC {
		found := debug.SetGCPercent(gcPercentFor(liveHeap()))
		defer debug.SetGCPercent(found)
	}
	t := time.NewTicker(memoryInterval)
	defer t.Stop()
	for {
		live := liveHeap()
		if setGC {
			debug.SetGCPercent(gcPercentFor(live))
		}
		// The limit last: tests take it as the sign that a round is done.
		debug.SetMemoryLimit(memoryLimitFor(live, headroom))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
