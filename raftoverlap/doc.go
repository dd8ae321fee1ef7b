// Package raftoverlap lets a github.com/hashicorp/raft leader write its
// own log entries while it replicates them, without ever counting its copy
// before it is durable.
//
// hashicorp/raft's leader appends a batch to its log (write and fsync) and
// only then sends it to its followers, so every commit costs two fsyncs one
// after the other. The Raft thesis (section 10.2.1) lets the leader write in
// parallel with replication, provided its own copy counts towards a
// majority only once it is durable. raft counts the leader as soon as
// StoreLogs returns; so with this package the leader's StoreLogs returns
// before the fsync (walstore's StoreLogsDeferred) and everything that could
// make an entry visible outside the leader's memory waits for the leader's
// fsync instead:
//
//   - [FSM]: the state machine applies entry i only once the local log is
//     durable through i: clients hear of a write, and reads see it, only
//     when it is fsynced on the leader and on the followers whose
//     acknowledgements committed it, a majority;
//   - [Transport]: followers are told of a commit index no higher than what
//     is durable on the leader, so no follower applies an entry that is not
//     yet on a majority of disks;
//   - [LogStore]: a follower acknowledges only entries that are durable on
//     it. raft acknowledges the entries of an AppendEntries request, which
//     it either stores (StoreLogs, which on a follower returns only once
//     they, and everything written before them, are durable) or already
//     holds, from its own time as leader, and reads back to compare terms
//     (GetLog, which then makes the log durable first). When the request
//     continues the follower's last entry, raft compares with the term it
//     keeps in memory, reads nothing, and stores the new entries: again
//     durable with everything before them. Configuration entries are
//     fsynced before StoreLogs returns even on the leader, because raft
//     acts on a committed configuration itself (a leader removed from it
//     steps down);
//   - a snapshot (taken by the FSM wrapper) first makes the log durable:
//     raft labels it with the index of the last entry it handed to the
//     state machine, which may be a barrier or no-op entry that the state
//     machine never waits for, and a snapshot must not end past the log a
//     crash leaves.
//
// If the leader's machine crashes before its fsync, the entries it loses
// were never acknowledged nor applied anywhere; to the nodes that remain
// they are uncommitted entries, which raft may keep or overwrite. (A process
// crash loses nothing: written bytes stay in the page cache.)
//
// All three wrappers must be used together, with raft's pipelined
// replication off (Transport refuses it) and raft's RestoreCommittedLogs
// off. The package relies on two properties of hashicorp/raft v1.8. Only
// raft's main goroutine makes a node leader, and raft calls StoreLogs and,
// on a follower, GetLog from it; other goroutines only take leadership
// away (Shutdown, a heartbeat from a newer leader handled on the
// transport's goroutine), so [Leader.Leading] can be wrong only by
// answering false, which costs an fsync but never safety. And a follower
// acknowledges entries only as described above.
package raftoverlap
