// Package raftfsm is the lock server's deterministic state machine: the
// keyspace of locks (shared with the Redis string and hash commands), the
// cluster clock, the Redis key engine and its deterministic Lua sandbox
// (EVAL, with a replicated script cache), the command encoding carried in
// raft log entries, and the snapshot format.
//
// The contract, which every replica relies on to reach identical state:
//
//   - Apply is deterministic. It reads no clock, no randomness and no
//     environment; everything it needs travels in the log entry. Time is the
//     cluster time the leader stamped into each [Command] (see [Command.Now]);
//     the state machine keeps now = max(now, entry time), so cluster time never
//     runs backwards, even across leader changes.
//   - A lock expires when cluster time reaches its deadline. Expired locks are
//     removed at the start of every Apply, so an entry that moves time forward
//     (an [OpExpire] proposed by the leader, or any other command) frees them.
//   - The fencing token of a grant is the granting command's sequence number
//     (the raft index of its entry under protocol version 1), so tokens
//     strictly increase across grants and are never reused.
//   - An entry of a newer format than this build knows halts the state
//     machine ([FSM.OnHalt]) rather than being skipped.
//   - Snapshots list keys in sorted order behind a versioned header and end in
//     a CRC32C, so two replicas with the same state write identical bytes.
//   - Decode and Apply never panic on malformed input; they return errors.
//   - Scripts see only the entry: frozen time, a PRNG seeded from the raft
//     index, no I/O, and a deterministic instruction budget (see DESIGN.md).
//
// See DESIGN.md in this directory for the reasoning.
package raftfsm
