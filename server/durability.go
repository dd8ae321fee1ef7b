package server

import (
	"fmt"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/raftfsm"
)

// The leader writes its own entries while it replicates them.
//
// hashicorp/raft's leader appends a batch to its log (write and fsync) and
// only then sends it to its followers, so every commit costs two fsyncs one
// after the other. The Raft thesis (section 10.2.1) lets the leader write in
// parallel with replication, provided its own copy counts towards a
// majority only once it is durable. raft counts the leader as soon as
// StoreLogs returns; so the leader's StoreLogs returns before the fsync
// (walstore's StoreLogsDeferred) and everything that could make an entry
// visible outside the leader's memory waits for the leader's fsync instead:
//
//   - the state machine applies entry i only once the leader's log is
//     durable through i (durableFSM): clients hear of a write, and reads see
//     it, only when it is fsynced on the leader and on the followers whose
//     acknowledgements committed it, a majority;
//   - followers are told of a commit index no higher than what is durable on
//     the leader (commitClampTransport), so no follower applies an entry
//     that is not yet on a majority of disks;
//   - a follower acknowledges only entries that are durable on it: its
//     StoreLogs fsyncs before returning, and an entry it already held from
//     its own time as leader is made durable before raft reads it to compare
//     (followerLog), raft's only way to acknowledge an entry it did not
//     store itself;
//   - configuration entries are fsynced before StoreLogs returns even on the
//     leader, because raft acts on a committed configuration itself (a
//     leader removed from it steps down).
//
// If the leader crashes before its fsync, the entries it loses were never
// acknowledged, never applied anywhere, and its followers' copies are not
// yet counted as committed by anyone: they are simply uncommitted entries,
// which raft may keep or overwrite.

// durableLog is what the wrappers below need of walstore.Store (a fake in
// tests).
type durableLog interface {
	Durable() uint64
	Sync() error
	WaitDurable(index uint64) error
}

// deferringLogStore is the log store under appendStore: walstore.Store.
type deferringLogStore interface {
	raft.LogStore
	StoreLogsDeferred(logs []*raft.Log) error
	IsMonotonic() bool
}

// leaderWrites tells the log store wrappers whether this node's raft is the
// leader. It is false until raft is set.
type leaderWrites struct {
	raft atomic.Pointer[raft.Raft]
}

// leading reports whether raft is the leader now. StoreLogs and GetLog
// calls of the follower code run on raft's main goroutine, which is also
// the only one that changes its state (other than Shutdown), so the answer
// is exact there.
func (w *leaderWrites) leading() bool {
	r := w.raft.Load()
	return r != nil && r.State() == raft.Leader
}

// appendStore is the log store under raft's LogCache: the leader's entries
// are written without waiting for their fsync, everything else with it.
type appendStore struct {
	deferringLogStore
	leading func() bool
}

// StoreLogs writes logs; see the file comment for when it returns before
// the fsync.
func (a appendStore) StoreLogs(logs []*raft.Log) error {
	if a.leading() && !hasConfiguration(logs) {
		return a.deferringLogStore.StoreLogsDeferred(logs)
	}
	return a.deferringLogStore.StoreLogs(logs)
}

// StoreLog writes one entry, as StoreLogs.
func (a appendStore) StoreLog(l *raft.Log) error {
	return a.StoreLogs([]*raft.Log{l})
}

func hasConfiguration(logs []*raft.Log) bool {
	for _, l := range logs {
		if l.Type == raft.LogConfiguration {
			return true
		}
	}
	return false
}

// followerLog is the log store raft sees, above its LogCache (which answers
// GetLog from memory): a node that is not the leader makes its whole log
// durable before raft reads an entry that is not yet, so that raft never
// acknowledges to a new leader an entry this node wrote as leader and has
// not fsynced.
type followerLog struct {
	raft.LogStore
	store   durableLog
	leading func() bool
}

// GetLog reads entry index, after making it durable if this node is not
// the leader.
func (f followerLog) GetLog(index uint64, out *raft.Log) error {
	if f.store.Durable() < index && !f.leading() {
		if err := f.store.Sync(); err != nil {
			return fmt.Errorf("make the log durable before reading index %d: %w", index, err)
		}
	}
	return f.LogStore.GetLog(index, out)
}

// IsMonotonic reports true: walstore's log has no gaps
// ([raft.MonotonicLogStore]; raft asks the store it is given).
func (f followerLog) IsMonotonic() bool { return true }

// durableFSM applies an entry only once the local log is durable through it
// (on a follower it always is by then; on the leader it waits for the
// fsync that runs beside replication).
type durableFSM struct {
	*raftfsm.FSM
	store durableLog
}

// Apply waits for entry l to be durable and applies it. If the store
// failed, the state machine halts instead (and the node stops): it must not
// apply an entry that may not be on a majority of disks.
func (d durableFSM) Apply(l *raft.Log) interface{} {
	if err := d.store.WaitDurable(l.Index); err != nil {
		d.FSM.Halt(l.Index, fmt.Errorf("the log could not make the entry durable: %w", err))
	}
	return d.FSM.Apply(l)
}

// commitClampTransport tells followers of a commit index no higher than
// what the leader's own log holds durably.
type commitClampTransport struct {
	*raft.NetworkTransport
	store durableLog
}

// AppendEntries sends args with its commit index clamped to the local
// durable index.
func (t *commitClampTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress,
	args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if d := t.store.Durable(); args.LeaderCommitIndex > d {
		clamped := *args
		clamped.LeaderCommitIndex = d
		args = &clamped
	}
	return t.NetworkTransport.AppendEntries(id, target, args, resp)
}

// AppendEntriesPipeline is not supported: a pipeline would send commit
// indexes past the clamp (and hashicorp/raft v1.8.0's pipeline can
// deadlock; see startRaft).
func (t *commitClampTransport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}
