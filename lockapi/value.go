package lockapi

import (
	"context"
	"errors"
	"strconv"
)

// ErrWrongType means a command met a key holding a value of another type
// (a LOCK.* command on a hash key, say).
var ErrWrongType = errors.New("WRONGTYPE Operation against a key holding the wrong kind of value")

// ValueKind is the type of a [Value].
type ValueKind uint8

// The kinds of [Value], after Redis's reply types.
const (
	// KindNil is a null (a null bulk string on RESP2, `_` on RESP3).
	KindNil ValueKind = iota
	// KindStatus is a simple string such as OK.
	KindStatus
	// KindError is an error reply; Str holds its text, code word first.
	KindError
	// KindInt is an integer.
	KindInt
	// KindBulk is a bulk string.
	KindBulk
	// KindArray is an array of Elems.
	KindArray
)

// Value is one Redis reply as the key engine produced it: what a command or
// a script returned, rendered by the RESP front end in RESP2 or RESP3. Error
// replies that the engine decides (WRONGTYPE, NOSCRIPT, script errors...)
// are values of KindError, because they are part of the replicated result;
// failures to serve the request at all (no leader, timeouts) are Go errors.
type Value struct {
	Kind  ValueKind `json:"k"`
	Str   string    `json:"s,omitempty"`
	Int   int64     `json:"i,omitempty"`
	Elems []Value   `json:"e,omitempty"`
}

// NilValue returns a null reply.
func NilValue() Value { return Value{} }

// StatusValue returns a simple-string reply.
func StatusValue(s string) Value { return Value{Kind: KindStatus, Str: s} }

// OKValue returns the +OK reply.
func OKValue() Value { return StatusValue("OK") }

// ErrorValue returns an error reply; msg starts with its code word.
func ErrorValue(msg string) Value { return Value{Kind: KindError, Str: msg} }

// IntValue returns an integer reply.
func IntValue(n int64) Value { return Value{Kind: KindInt, Int: n} }

// BulkValue returns a bulk-string reply.
func BulkValue(s string) Value { return Value{Kind: KindBulk, Str: s} }

// ArrayValue returns an array reply.
func ArrayValue(elems ...Value) Value {
	if elems == nil {
		elems = []Value{}
	}
	return Value{Kind: KindArray, Elems: elems}
}

// IsError reports whether v is an error reply.
func (v Value) IsError() bool { return v.Kind == KindError }

// String renders v for logs and test failures, roughly as redis-cli does.
func (v Value) String() string {
	switch v.Kind {
	case KindNil:
		return "(nil)"
	case KindStatus:
		return v.Str
	case KindError:
		return "(error) " + v.Str
	case KindInt:
		return "(integer) " + strconv.FormatInt(v.Int, 10)
	case KindBulk:
		return strconv.Quote(v.Str)
	case KindArray:
		s := "["
		for i, e := range v.Elems {
			if i > 0 {
				s += ", "
			}
			s += e.String()
		}
		return s + "]"
	}
	return "(?)"
}

// KeyStats are a node's own counts of its keyspace (not linearizable; for
// INFO).
type KeyStats struct {
	// Keys counts the keys, locks and hashes alike.
	Keys int
	// Expires counts the keys with a TTL.
	Expires int
	// Scripts counts the cached scripts.
	Scripts int
	// AppliedIndex is the raft index of the last applied entry.
	AppliedIndex uint64
}

// KeyService runs Redis key commands (SET, GET, DEL, EVAL...) against the
// replicated keyspace the lock commands share. Implementations must be safe
// for concurrent use.
type KeyService interface {
	// Do runs one command, argv[0] being its name in any case. Write
	// commands are replicated before they are answered; read-only ones are
	// answered linearizably. Replies decided by the state machine, errors
	// included, come back as the Value; a non-nil error means the command
	// could not be served (no leader, timeout...) and, for a write, may
	// or may not have taken effect.
	Do(ctx context.Context, argv [][]byte) (Value, error)
	// KeyStats describes this node's own copy of the keyspace.
	KeyStats() KeyStats
}
