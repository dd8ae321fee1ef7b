package raftfsm

import (
	"time"

	"github.com/tidwall/btree"
)

// lockTable is the keyspace: every lock by key, in key order. It keeps each
// lock without its Key, which the B-tree already holds as the item's key:
// stored twice, the string header cost 16 bytes per item, about 25 bytes
// per lock at the tree's fill (a million locks took 320 bytes each on the
// heap, see BenchmarkApply1M).
type lockTable struct {
	m *btree.Map[string, lockValue]
}

// lockValue is a LockState without its Key.
type lockValue struct {
	Owner    string
	Token    uint64
	Version  uint64
	TTL      time.Duration
	Deadline time.Duration
	Hash     *Hash
}

func newLockTable() lockTable { return lockTable{m: new(btree.Map[string, lockValue])} }

func valueOf(l LockState) lockValue {
	return lockValue{Owner: l.Owner, Token: l.Token, Version: l.Version, TTL: l.TTL, Deadline: l.Deadline, Hash: l.Hash}
}

func (v lockValue) state(key string) LockState {
	return LockState{Key: key, Owner: v.Owner, Token: v.Token, Version: v.Version, TTL: v.TTL, Deadline: v.Deadline, Hash: v.Hash}
}

// Get returns the lock held under key.
func (t lockTable) Get(key string) (LockState, bool) {
	v, ok := t.m.Get(key)
	if !ok {
		return LockState{}, false
	}
	return v.state(key), true
}

// Set stores l under l.Key.
func (t lockTable) Set(l LockState) { t.m.Set(l.Key, valueOf(l)) }

// bulkLoader loads items given in ascending order into a B-tree in two
// passes: every other item with load (which appends to the last leaf),
// then, at finish, the rest with set. tidwall/btree splits a full leaf in
// the middle, so loading every item in order leaves each leaf half full for
// good (the left half of every split is never touched again), in an array
// sized for a full one: about 72 bytes wasted per lock and 24 per expiry
// entry. After the first pass the leaves are half full of every other item,
// and the second puts each remaining item between its neighbours, in the
// same leaf: the leaves end nearly full (a million locks restored: 216 MiB
// of heap in one pass, 129 MiB in two, BenchmarkRestore1M).
type bulkLoader[T any] struct {
	load, set func(T)
	n         int
	later     []T
}

// add loads it now or keeps it for finish.
func (b *bulkLoader[T]) add(it T) {
	if b.n%2 == 0 {
		b.load(it)
	} else {
		b.later = append(b.later, it)
	}
	b.n++
}

// loadAll loads items, in ascending order, in the two passes without
// keeping any aside (they are all at hand already).
func (b *bulkLoader[T]) loadAll(items []T) {
	for i := 0; i < len(items); i += 2 {
		b.load(items[i])
	}
	for i := 1; i < len(items); i += 2 {
		b.set(items[i])
	}
}

// finish loads the items add kept.
func (b *bulkLoader[T]) finish() {
	for _, it := range b.later {
		b.set(it)
	}
	b.later = nil
}

// Load stores l, whose key must sort after every key in the table (bulk
// loading: it appends to the last leaf).
func (t lockTable) Load(l LockState) { t.m.Load(l.Key, valueOf(l)) }

// Delete removes key.
func (t lockTable) Delete(key string) { t.m.Delete(key) }

// Len returns the number of keys.
func (t lockTable) Len() int { return t.m.Len() }

// Scan calls fn with every lock in key order until fn returns false.
func (t lockTable) Scan(fn func(LockState) bool) {
	t.m.Scan(func(key string, v lockValue) bool { return fn(v.state(key)) })
}

// Copy returns a copy that shares the tree until either side changes it
// (copy on write).
func (t lockTable) Copy() lockTable { return lockTable{m: t.m.Copy()} }
