// Package walstore is a durable Raft log and stable store for
// github.com/hashicorp/raft, built on github.com/tidwall/wal.
//
// A [Store] implements [raft.LogStore], [raft.StableStore] and
// [raft.MonotonicLogStore] in one directory opened with [Open]:
//
//   - Every raft.Log field round-trips (Index, Term, Type, Data, Extensions,
//     AppendedAt; AppendedAt comes back in UTC without a monotonic reading).
//   - StoreLogs writes a batch with one fsync; StoreLogsDeferred writes it
//     and returns before the fsync, which a goroutine of the store issues
//     for everything written by then ([Store.Durable], [Store.WaitDurable];
//     see durable.go). The tail segment is
//     preallocated with zeros (as etcd's WAL does), so that fsync flushes
//     data without a filesystem journal commit; see prealloc.go. The log has no gaps: a batch
//     must continue at LastIndex()+1, except on an empty log (new, or after a
//     whole-log DeleteRange, which raft issues after installing a snapshot),
//     which accepts any first index. tidwall/wal itself only accepts its next
//     index, so the store keeps an offset between raft and wal indexes; every
//     record carries its raft index, so the offset is recovered on Open.
//   - DeleteRange supports what raft issues: a prefix (compaction), a suffix
//     (conflicting entries) or the whole log; a range strictly inside the log
//     is refused with [ErrMiddleRange].
//   - A GetLog miss returns [raft.ErrLogNotFound] unwrapped; a StableStore
//     miss returns [ErrKeyNotFound], whose text is "not found".
//
// Integrity. Each record carries a format version, its raft index and a
// CRC32C, checked on every read and, for every record, on Open. Damage that
// runs to the end of the last segment (a torn or zero-filled tail, or a
// damaged last record) is cut off and logged: a crash can only tear bytes
// that were not yet fsynced, hence not acknowledged (a bit flip in the last
// record looks the same and is cut too), as is an unwritten sector followed
// by records of the same unacknowledged batch. Zeros after the records of a
// segment are preallocated space, cut quietly. Damage anywhere else, or damage
// followed by an intact later record, makes Open fail with [ErrCorrupt]
// naming the file and the raft index. After a failed write or fsync the store refuses every further write
// with [ErrFailed]; reopening re-verifies the files.
//
// Stable keys (raft's current term and vote) live in one small file that is
// replaced atomically with fsyncs and carries a CRC32C. An exclusive flock
// on dir/LOCK keeps a second Store, in this or another process, from opening
// the same directory ([ErrLocked]).
//
// DESIGN.md in this directory explains the record format, the index
// mapping, the recovery rule and the benchmark figures.
package walstore
