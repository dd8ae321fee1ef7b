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
//     it: its StoreLogs fsyncs before returning, and an entry it already
//     held from its own time as leader is made durable before raft reads it
//     to compare, raft's only way to acknowledge an entry it did not store
//     itself; configuration entries are fsynced before StoreLogs returns
//     even on the leader, because raft acts on a committed configuration
//     itself (a leader removed from it steps down).
//
// If the leader's machine crashes before its fsync, the entries it loses
// were never acknowledged nor applied anywhere; to the nodes that remain
// they are uncommitted entries, which raft may keep or overwrite. (A process
// crash loses nothing: written bytes stay in the page cache.)
//
// All three wrappers must be used together, with raft's pipelined
// replication off (Transport refuses it) and raft's RestoreCommittedLogs
// off. The package relies on two properties of hashicorp/raft v1.8: raft
// calls StoreLogs and, on a follower, GetLog from its main goroutine, which
// is also the only one that changes its state (other than Shutdown), so
// [Leader.Leading] is exact there; and a follower acknowledges an entry
// only after storing it or reading it back to compare terms.
package raftoverlap
