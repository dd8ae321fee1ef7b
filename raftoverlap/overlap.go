package raftoverlap

import (
	"fmt"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// Durability is what the wrappers need of the log store
// (walstore.Store).
type Durability interface {
	// Durable returns the index through which no entry waits for an fsync.
	Durable() uint64
	// Sync makes every entry written so far durable.
	Sync() error
	// WaitDurable waits until Durable reaches index, or returns why it
	// never will (the store failed or closed).
	WaitDurable(index uint64) error
}

// Store is a log store without gaps that can append without waiting for
// the fsync (walstore.Store). Its StoreLogs must return only once the
// entries it stores, and every entry written before them, are durable.
type Store interface {
	raft.LogStore
	raft.MonotonicLogStore
	Durability
	// StoreLogsDeferred appends logs and returns before they are durable.
	StoreLogsDeferred(logs []*raft.Log) error
}

// Leader tells the wrappers whether this node's raft is the leader. The
// zero value answers false until Set.
type Leader struct {
	raft atomic.Pointer[raft.Raft]
}

// Set records the raft instance to ask; call it right after raft.NewRaft.
// Until then Leading answers false, which is always safe (an extra fsync).
func (l *Leader) Set(r *raft.Raft) { l.raft.Store(r) }

// Leading reports whether raft is the leader now.
func (l *Leader) Leading() bool {
	r := l.raft.Load()
	return r != nil && r.State() == raft.Leader
}

// LogStore returns the log store to give raft.NewRaft: store, under a
// raft.LogCache of cacheSize entries, writing the leader's own command
// entries with StoreLogsDeferred and everything else with StoreLogs, and
// making a non-leader's log durable before raft reads an entry that is not
// yet (the cache would answer from memory). leading is usually
// [Leader.Leading].
func LogStore(store Store, leading func() bool, cacheSize int) (raft.LogStore, error) {
	cache, err := raft.NewLogCache(cacheSize, appendStore{Store: store, leading: leading})
	if err != nil {
		return nil, fmt.Errorf("raftoverlap: log cache: %w", err)
	}
	return followerLog{LogStore: cache, store: store, leading: leading, monotonic: store.IsMonotonic()}, nil
}

// appendStore is the log store under raft's LogCache: the leader's entries
// are written without waiting for their fsync, everything else with it.
type appendStore struct {
	Store
	leading func() bool
}

// StoreLogs writes logs, returning before their fsync when this node leads
// and none is a configuration entry.
func (a appendStore) StoreLogs(logs []*raft.Log) error {
	if a.leading() && !hasConfiguration(logs) {
		return a.Store.StoreLogsDeferred(logs)
	}
	return a.Store.StoreLogs(logs)
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

// followerLog is the log store raft sees, above its LogCache.
type followerLog struct {
	raft.LogStore
	store     Durability
	leading   func() bool
	monotonic bool
}

// GetLog reads entry index, after making it durable if this node is not
// the leader, so that raft never acknowledges to a new leader an entry this
// node wrote as leader and has not fsynced.
func (f followerLog) GetLog(index uint64, out *raft.Log) error {
	if f.store.Durable() < index && !f.leading() {
		if err := f.store.Sync(); err != nil {
			return fmt.Errorf("raftoverlap: make the log durable before reading index %d: %w", index, err)
		}
	}
	return f.LogStore.GetLog(index, out)
}

// IsMonotonic reports what the store does ([raft.MonotonicLogStore]: raft
// asks the log store it is given, this wrapper).
func (f followerLog) IsMonotonic() bool { return f.monotonic }

// FSM returns fsm wrapped so that it applies an entry only once store is
// durable through it (on a follower it always is by then; on the leader it
// waits for the fsync that runs beside replication), and snapshots only a
// durable log. If the wait fails (the store failed), failed is called
// instead of fsm.Apply and its result is the entry's: it must keep the
// state machine from applying that entry or any later one.
func FSM(fsm raft.FSM, store Durability, failed func(l *raft.Log, err error) interface{}) raft.FSM {
	return durableFSM{FSM: fsm, store: store, failed: failed}
}

type durableFSM struct {
	raft.FSM
	store  Durability
	failed func(*raft.Log, error) interface{}
}

// Apply waits for entry l to be durable and applies it.
func (d durableFSM) Apply(l *raft.Log) interface{} {
	if err := d.store.WaitDurable(l.Index); err != nil {
		return d.failed(l, err)
	}
	return d.FSM.Apply(l)
}

// Snapshot makes the log durable and then snapshots the state machine:
// raft labels the snapshot with the last index it handed over, which may be
// a barrier or no-op entry Apply never saw.
func (d durableFSM) Snapshot() (raft.FSMSnapshot, error) {
	if err := d.store.Sync(); err != nil {
		return nil, fmt.Errorf("raftoverlap: make the log durable before a snapshot: %w", err)
	}
	return d.FSM.Snapshot()
}

// Transport returns t wrapped so that AppendEntries carries a commit index
// no higher than store's durable index. Pipelined replication is refused
// (a pipeline would bypass the clamp).
func Transport(t *raft.NetworkTransport, store Durability) raft.Transport {
	return &commitClampTransport{NetworkTransport: t, store: store}
}

type commitClampTransport struct {
	*raft.NetworkTransport
	store Durability
}

// AppendEntries sends args with its commit index clamped to the local
// durable index; the caller's args are not changed.
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
// indexes past the clamp.
func (t *commitClampTransport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}
