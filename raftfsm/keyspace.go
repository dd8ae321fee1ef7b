package raftfsm

import (
	"sort"
	"time"
)

// The keyspace holds two kinds of values, both as [LockState]s so that the
// lock commands and the Redis commands share one keyspace:
//
//   - a string key (SET, LOCK.ACQUIRE): its value is the lock's Owner;
//   - a hash key (HSET, HINCRBY): its fields are in Hash, and the LOCK.*
//     commands refuse it with lockapi.ErrWrongType.
//
// A key without a TTL (SET without PX/EX, PERSIST, HSET) has TTL 0 and
// Deadline noDeadline: it never expires and is not in the expiry index.

// noDeadline is the Deadline of a key without a TTL.
const noDeadline = time.Duration(1<<63 - 1)

// Hash is an immutable hash value: fields in ascending order. A change makes
// a new Hash (copy-on-write), so snapshots taken before it stay frozen.
type Hash struct {
	fields []HashField
}

// HashField is one field of a [Hash].
type HashField struct {
	Name  string
	Value string
}

// Len returns the number of fields.
func (h *Hash) Len() int {
	if h == nil {
		return 0
	}
	return len(h.fields)
}

// Fields returns the fields in ascending name order; the caller must not
// modify the slice.
func (h *Hash) Fields() []HashField {
	if h == nil {
		return nil
	}
	return h.fields
}

func (h *Hash) find(name string) (int, bool) {
	i := sort.Search(len(h.fields), func(i int) bool { return h.fields[i].Name >= name })
	return i, i < len(h.fields) && h.fields[i].Name == name
}

// Get returns a field's value.
func (h *Hash) Get(name string) (string, bool) {
	if h == nil {
		return "", false
	}
	if i, ok := h.find(name); ok {
		return h.fields[i].Value, true
	}
	return "", false
}

// with returns a copy of h with field name set to value, and whether the
// field is new.
func (h *Hash) with(name, value string) (*Hash, bool) {
	if h == nil {
		return &Hash{fields: []HashField{{name, value}}}, true
	}
	i, found := h.find(name)
	n := len(h.fields)
	if !found {
		n++
	}
	out := make([]HashField, 0, n)
	out = append(out, h.fields[:i]...)
	out = append(out, HashField{name, value})
	if found {
		out = append(out, h.fields[i+1:]...)
	} else {
		out = append(out, h.fields[i:]...)
	}
	return &Hash{fields: out}, !found
}

// without returns a copy of h without field name, and whether it was there.
func (h *Hash) without(name string) (*Hash, bool) {
	i, found := h.find(name)
	if !found {
		return h, false
	}
	out := make([]HashField, 0, len(h.fields)-1)
	out = append(out, h.fields[:i]...)
	out = append(out, h.fields[i+1:]...)
	return &Hash{fields: out}, true
}

// IsHash reports whether the key holds a hash.
func (l LockState) IsHash() bool { return l.Hash != nil }

// HasTTL reports whether the key expires.
func (l LockState) HasTTL() bool { return l.Deadline != noDeadline }

// liveAt reports whether the key still exists at cluster time now.
func (l LockState) liveAt(now time.Duration) bool { return l.Deadline > now }

// lookup returns the key as of cluster time now: a key past its deadline
// (whose expiry entry is not applied yet) does not exist. f.mu must be held.
func (f *FSM) lookup(key string, now time.Duration) (LockState, bool) {
	l, ok := f.locks.Get(key)
	if !ok || !l.liveAt(now) {
		return LockState{}, false
	}
	return l, true
}

// countLive counts the keys, and those with a TTL, alive at now. f.mu must
// be held.
func (f *FSM) countLive(now time.Duration) (keys, expires int) {
	dead := 0
	f.expiry.Scan(func(it expiryItem) bool {
		if it.deadline > now {
			return false
		}
		dead++
		return true
	})
	return f.locks.Len() - dead, f.expiry.Len() - dead
}
