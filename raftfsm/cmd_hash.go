package raftfsm

import (
	"math"

	"github.com/distlock/distlock/lockapi"
)

// Hash commands: the ones lock scripts use (Redisson keeps its re-entrant
// lock in a hash). A hash key's token is the sequence number of the command
// that created it; changing fields bumps its version.

// maxHashFields bounds the fields of one hash, so that a hash cannot grow
// without bound (copy-on-write makes every change O(fields)).
const maxHashFields = 4096

var errHashFull = lockapi.ErrorValue("ERR hash has too many fields (at most 4096)")

// hashFor returns the hash at key for writing: the existing one, or a new
// empty one. It answers WRONGTYPE for a string key.
func (e *engine) hashFor(key string) (old LockState, had bool, reply *lockapi.Value) {
	old, had = e.get(key)
	if had && !old.IsHash() {
		return old, had, &errWrongType
	}
	return old, had, nil
}

// storeHash writes h under key, creating the key (token = this entry's
// index) if it did not exist, and deleting it when h is empty.
func (e *engine) storeHash(old LockState, had bool, key string, h *Hash) {
	if h.Len() == 0 {
		if had {
			e.delete(old)
		}
		return
	}
	l := LockState{Key: key, Token: e.token, Version: 1, Deadline: noDeadline, Hash: h}
	if had {
		l.Token, l.Version, l.TTL, l.Deadline = old.Token, old.Version+1, old.TTL, old.Deadline
	}
	e.store(old, had, l)
}

// HSET key field value [field value ...]
func cmdHSet(e *engine, args []string) lockapi.Value {
	if len(args)%2 != 0 {
		return errWrongArgsOf("hset")
	}
	old, had, bad := e.hashFor(args[1])
	if bad != nil {
		return *bad
	}
	h := old.Hash
	added := int64(0)
	for j := 2; j < len(args); j += 2 {
		var isNew bool
		h, isNew = h.with(args[j], args[j+1])
		if isNew {
			added++
		}
	}
	if h.Len() > maxHashFields {
		return errHashFull
	}
	e.storeHash(old, had, args[1], h)
	return lockapi.IntValue(added)
}

// readHash returns the hash at key for reading (nil when absent).
func (e *engine) readHash(key string) (*Hash, *lockapi.Value) {
	l, ok := e.get(key)
	switch {
	case !ok:
		return nil, nil
	case !l.IsHash():
		return nil, &errWrongType
	}
	return l.Hash, nil
}

// HGET key field
func cmdHGet(e *engine, args []string) lockapi.Value {
	h, bad := e.readHash(args[1])
	if bad != nil {
		return *bad
	}
	if v, ok := h.Get(args[2]); ok {
		return lockapi.BulkValue(v)
	}
	return lockapi.NilValue()
}

// HEXISTS key field
func cmdHExists(e *engine, args []string) lockapi.Value {
	h, bad := e.readHash(args[1])
	if bad != nil {
		return *bad
	}
	if _, ok := h.Get(args[2]); ok {
		return lockapi.IntValue(1)
	}
	return lockapi.IntValue(0)
}

// HLEN key
func cmdHLen(e *engine, args []string) lockapi.Value {
	h, bad := e.readHash(args[1])
	if bad != nil {
		return *bad
	}
	return lockapi.IntValue(int64(h.Len()))
}

// HINCRBY key field increment
func cmdHIncrBy(e *engine, args []string) lockapi.Value {
	incr, ok := lockapi.ParseInt(args[3])
	if !ok {
		return errNotInteger
	}
	old, had, bad := e.hashFor(args[1])
	if bad != nil {
		return *bad
	}
	cur := int64(0)
	if v, ok := old.Hash.Get(args[2]); ok {
		if cur, ok = lockapi.ParseInt(v); !ok {
			return errHashNotInt
		}
	}
	if (incr < 0 && cur < 0 && incr < math.MinInt64-cur) || (incr > 0 && cur > 0 && incr > math.MaxInt64-cur) {
		return errOverflow
	}
	cur += incr
	h, _ := old.Hash.with(args[2], formatInt(cur))
	if h.Len() > maxHashFields {
		return errHashFull
	}
	e.storeHash(old, had, args[1], h)
	return lockapi.IntValue(cur)
}

// HDEL key field [field ...]
func cmdHDel(e *engine, args []string) lockapi.Value {
	old, had, bad := e.hashFor(args[1])
	if bad != nil {
		return *bad
	}
	if !had {
		return lockapi.IntValue(0)
	}
	h := old.Hash
	n := int64(0)
	for _, f := range args[2:] {
		var gone bool
		if h, gone = h.without(f); gone {
			n++
		}
	}
	if n > 0 {
		e.storeHash(old, had, args[1], h)
	}
	return lockapi.IntValue(n)
}
