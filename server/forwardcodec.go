package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/distlock/distlock/internal/wire"
	"github.com/distlock/distlock/lockapi"
)

// The bodies of forwarding frames are binary: every field in a fixed
// order, integers as varints, strings and byte strings length-prefixed.
// It costs a fraction of encoding/json's time on the hot path (a follower
// encodes a request and decodes an answer for most client commands).
//
//	request:  version u8 | op | key | owner | ttl | wait | token | timeout |
//	          node_id | addr | resp_addr | http_addr | hops | argc | argv...
//	response: version u8 | code | error | flags u8 |
//	          [lock] [count | locks...] [value]      (as flags say)
//
// A lock is key | owner | token | version | ttl | remaining |
// expires_at (unix ns, 0 for none) | waiters | persistent u8; a value is
// kind | str | int | count | elements..., nested at most maxValueDepth.

// codecVersion is the first byte of every body.
const codecVersion = 1

// Response flags.
const (
	respHasLock  = 1 << 0
	respHasLocks = 1 << 1
	respHasValue = 1 << 2
)

// maxValueDepth bounds the nesting of a decoded value.
const maxValueDepth = 64

// errBadBody means a forwarding body could not be decoded.
var errBadBody = errors.New("malformed forwarding body")

func encodeRequest(r fwdRequest) []byte {
	b := make([]byte, 0, 64+len(r.Key)+len(r.Owner))
	b = append(b, codecVersion)
	b = wire.AppendString(b, r.Op)
	b = wire.AppendString(b, r.Key)
	b = wire.AppendString(b, r.Owner)
	b = binary.AppendVarint(b, int64(r.TTL))
	b = binary.AppendVarint(b, int64(r.Wait))
	b = binary.AppendUvarint(b, r.Token)
	b = binary.AppendVarint(b, int64(r.Timeout))
	b = wire.AppendString(b, r.NodeID)
	b = wire.AppendString(b, r.Addr)
	b = wire.AppendString(b, r.RESPAddr)
	b = wire.AppendString(b, r.HTTPAddr)
	b = binary.AppendVarint(b, int64(r.Hops))
	b = binary.AppendUvarint(b, uint64(len(r.Argv)))
	for _, a := range r.Argv {
		b = wire.AppendBytes(b, a)
	}
	return b
}

func decodeRequest(body []byte) (fwdRequest, error) {
	var r fwdRequest
	d := bodyDecoder{wire.Decoder{B: body}}
	d.version()
	r.Op = d.Str()
	r.Key = d.Str()
	r.Owner = d.Str()
	r.TTL = time.Duration(d.Varint())
	r.Wait = time.Duration(d.Varint())
	r.Token = d.Uvarint()
	r.Timeout = time.Duration(d.Varint())
	r.NodeID = d.Str()
	r.Addr = d.Str()
	r.RESPAddr = d.Str()
	r.HTTPAddr = d.Str()
	r.Hops = int(d.Varint())
	n := d.Count()
	for i := uint64(0); i < n && d.Err == nil; i++ {
		r.Argv = append(r.Argv, d.Bytes())
	}
	return r, d.done()
}

func appendLock(b []byte, l lockapi.Lock) []byte {
	b = wire.AppendString(b, l.Key)
	b = wire.AppendString(b, l.Owner)
	b = binary.AppendUvarint(b, l.Token)
	b = binary.AppendUvarint(b, l.Version)
	b = binary.AppendVarint(b, int64(l.TTL))
	b = binary.AppendVarint(b, int64(l.Remaining))
	var at int64
	if !l.ExpiresAt.IsZero() {
		at = l.ExpiresAt.UnixNano()
	}
	b = binary.AppendVarint(b, at)
	b = binary.AppendVarint(b, int64(l.Waiters))
	if l.Persistent {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendValue(b []byte, v lockapi.Value) []byte {
	b = binary.AppendVarint(b, int64(v.Kind))
	b = wire.AppendString(b, v.Str)
	b = binary.AppendVarint(b, v.Int)
	b = binary.AppendUvarint(b, uint64(len(v.Elems)))
	for _, e := range v.Elems {
		b = appendValue(b, e)
	}
	return b
}

func encodeResponse(r fwdResponse) []byte {
	b := make([]byte, 0, 128)
	b = append(b, codecVersion)
	b = wire.AppendString(b, r.Code)
	b = wire.AppendString(b, r.Error)
	var flags byte
	if r.Lock != nil {
		flags |= respHasLock
	}
	if r.Locks != nil {
		flags |= respHasLocks
	}
	if r.Value != nil {
		flags |= respHasValue
	}
	b = append(b, flags)
	if r.Lock != nil {
		b = appendLock(b, *r.Lock)
	}
	if r.Locks != nil {
		b = binary.AppendUvarint(b, uint64(len(r.Locks)))
		for _, l := range r.Locks {
			b = appendLock(b, l)
		}
	}
	if r.Value != nil {
		b = appendValue(b, *r.Value)
	}
	return b
}

func decodeResponse(body []byte) (fwdResponse, error) {
	var r fwdResponse
	d := bodyDecoder{wire.Decoder{B: body}}
	d.version()
	r.Code = d.Str()
	r.Error = d.Str()
	flags := d.Byte()
	if flags&respHasLock != 0 {
		l := d.lock()
		r.Lock = &l
	}
	if flags&respHasLocks != 0 {
		n := d.Count()
		r.Locks = make([]lockapi.Lock, 0, min(n, 1024))
		for i := uint64(0); i < n && d.Err == nil; i++ {
			r.Locks = append(r.Locks, d.lock())
		}
	}
	if flags&respHasValue != 0 {
		v := d.value(0)
		r.Value = &v
	}
	if flags&^(respHasLock|respHasLocks|respHasValue) != 0 && d.Err == nil {
		d.Err = fmt.Errorf("unknown flags %#x", flags)
	}
	return r, d.done()
}

// bodyDecoder reads a body (wire.Decoder plus the composite values).
type bodyDecoder struct{ wire.Decoder }

func (d *bodyDecoder) version() {
	if v := d.Byte(); d.Err == nil && v != codecVersion {
		d.Err = fmt.Errorf("version %d", v)
	}
}

func (d *bodyDecoder) lock() lockapi.Lock {
	var l lockapi.Lock
	l.Key = d.Str()
	l.Owner = d.Str()
	l.Token = d.Uvarint()
	l.Version = d.Uvarint()
	l.TTL = time.Duration(d.Varint())
	l.Remaining = time.Duration(d.Varint())
	if at := d.Varint(); at != 0 {
		l.ExpiresAt = time.Unix(0, at)
	}
	l.Waiters = int(d.Varint())
	l.Persistent = d.Byte() == 1
	return l
}

func (d *bodyDecoder) value(depth int) lockapi.Value {
	var v lockapi.Value
	if depth > maxValueDepth {
		if d.Err == nil {
			d.Err = fmt.Errorf("value nested deeper than %d", maxValueDepth)
		}
		return v
	}
	v.Kind = lockapi.ValueKind(d.Varint())
	v.Str = d.Str()
	v.Int = d.Varint()
	n := d.Count()
	for i := uint64(0); i < n && d.Err == nil; i++ {
		v.Elems = append(v.Elems, d.value(depth+1))
	}
	return v
}

// done reports the first error, or trailing bytes.
func (d *bodyDecoder) done() error {
	if d.Err == nil && len(d.B) != 0 {
		d.Err = fmt.Errorf("%d trailing bytes", len(d.B))
	}
	if d.Err != nil {
		return fmt.Errorf("%w: %v", errBadBody, d.Err)
	}
	return nil
}
