//go:build unix

// Package chaos is a Jepsen-style test harness for the lock server. It
// starts real node processes on loopback (built from ./cmd/node), routes
// every directed raft link through an in-harness TCP proxy it can cut, runs
// lock clients over RESP and HTTP against every node, injects faults from a
// seeded schedule (kill -9, SIGSTOP, partitions, clock jumps, paused lock
// holders, snapshot pressure), and then checks the recorded history:
//
//  1. linearizability per key with porcupine, against a lock model that
//     knows owners, fencing tokens and TTLs (model.go);
//  2. mutual exclusion as clients see it (client leases never overlap);
//  3. fencing: tokens only grow, and a fenced resource never loses an update;
//  4. durability across kill-all restarts;
//  5. convergence: every node ends with the same state machine;
//  6. liveness: after healing, every key can be acquired again.
//
// All times in a history come from one monotonic clock (nanoseconds since
// the run started). Requests that time out, hit a reset connection or are
// answered UNKNOWN/TIMEOUT are recorded as unknown outcomes, never as
// failures. The entry point is [Run]; chaos_test.go drives it.
package chaos
