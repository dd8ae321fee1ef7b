package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

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

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func encodeRequest(r fwdRequest) []byte {
	b := make([]byte, 0, 64+len(r.Key)+len(r.Owner))
	b = append(b, codecVersion)
	b = appendStr(b, r.Op)
	b = appendStr(b, r.Key)
	b = appendStr(b, r.Owner)
	b = binary.AppendVarint(b, int64(r.TTL))
	b = binary.AppendVarint(b, int64(r.Wait))
	b = binary.AppendUvarint(b, r.Token)
	b = binary.AppendVarint(b, int64(r.Timeout))
	b = appendStr(b, r.NodeID)
	b = appendStr(b, r.Addr)
	b = appendStr(b, r.RESPAddr)
	b = appendStr(b, r.HTTPAddr)
	b = binary.AppendVarint(b, int64(r.Hops))
	b = binary.AppendUvarint(b, uint64(len(r.Argv)))
	for _, a := range r.Argv {
		b = appendBytes(b, a)
	}
	return b
}

func decodeRequest(body []byte) (fwdRequest, error) {
	var r fwdRequest
	d := bodyDecoder{b: body}
	d.version()
	r.Op = d.str()
	r.Key = d.str()
	r.Owner = d.str()
	r.TTL = time.Duration(d.varint())
	r.Wait = time.Duration(d.varint())
	r.Token = d.uvarint()
	r.Timeout = time.Duration(d.varint())
	r.NodeID = d.str()
	r.Addr = d.str()
	r.RESPAddr = d.str()
	r.HTTPAddr = d.str()
	r.Hops = int(d.varint())
	n := d.count()
	for i := uint64(0); i < n && d.err == nil; i++ {
		r.Argv = append(r.Argv, d.bytes())
	}
	return r, d.done()
}

func appendLock(b []byte, l lockapi.Lock) []byte {
	b = appendStr(b, l.Key)
	b = appendStr(b, l.Owner)
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
	b = appendStr(b, v.Str)
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
	b = appendStr(b, r.Code)
	b = appendStr(b, r.Error)
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
	d := bodyDecoder{b: body}
	d.version()
	r.Code = d.str()
	r.Error = d.str()
	flags := d.byte()
	if flags&respHasLock != 0 {
		l := d.lock()
		r.Lock = &l
	}
	if flags&respHasLocks != 0 {
		n := d.count()
		r.Locks = make([]lockapi.Lock, 0, min(n, 1024))
		for i := uint64(0); i < n && d.err == nil; i++ {
			r.Locks = append(r.Locks, d.lock())
		}
	}
	if flags&respHasValue != 0 {
		v := d.value(0)
		r.Value = &v
	}
	if flags&^(respHasLock|respHasLocks|respHasValue) != 0 && d.err == nil {
		d.err = fmt.Errorf("unknown flags %#x", flags)
	}
	return r, d.done()
}

// bodyDecoder reads a body, remembering the first error so call sites
// stay linear.
type bodyDecoder struct {
	b   []byte
	err error
}

var errTruncated = errors.New("truncated")

func (d *bodyDecoder) version() {
	if v := d.byte(); d.err == nil && v != codecVersion {
		d.err = fmt.Errorf("version %d", v)
	}
}

func (d *bodyDecoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = errTruncated
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *bodyDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *bodyDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads an element count; every element takes at least one byte.
func (d *bodyDecoder) count() uint64 {
	n := d.uvarint()
	if n > uint64(len(d.b)) && d.err == nil {
		d.err = errTruncated
	}
	return n
}

func (d *bodyDecoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errTruncated
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

func (d *bodyDecoder) str() string { return string(d.bytes()) }

func (d *bodyDecoder) lock() lockapi.Lock {
	var l lockapi.Lock
	l.Key = d.str()
	l.Owner = d.str()
	l.Token = d.uvarint()
	l.Version = d.uvarint()
	l.TTL = time.Duration(d.varint())
	l.Remaining = time.Duration(d.varint())
	if at := d.varint(); at != 0 {
		l.ExpiresAt = time.Unix(0, at)
	}
	l.Waiters = int(d.varint())
	l.Persistent = d.byte() == 1
	return l
}

func (d *bodyDecoder) value(depth int) lockapi.Value {
	var v lockapi.Value
	if depth > maxValueDepth {
		if d.err == nil {
			d.err = fmt.Errorf("value nested deeper than %d", maxValueDepth)
		}
		return v
	}
	v.Kind = lockapi.ValueKind(d.varint())
	v.Str = d.str()
	v.Int = d.varint()
	n := d.count()
	for i := uint64(0); i < n && d.err == nil; i++ {
		v.Elems = append(v.Elems, d.value(depth+1))
	}
	return v
}

// done reports the first error, or trailing bytes.
func (d *bodyDecoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return fmt.Errorf("%w: %v", errBadBody, d.err)
	}
	return nil
}
