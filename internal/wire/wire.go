// Package wire holds the varint and length-prefixed string helpers shared
// by the binary encodings of the project: raft log commands (raftfsm) and
// the bodies of forwarded requests (server). Encoders append to a byte
// slice; a Decoder reads in order and remembers its first error, so call
// sites stay linear and check once at the end.
package wire

import (
	"encoding/binary"
	"errors"
	"strings"
)

// ErrTruncated means the input ended inside a value.
var ErrTruncated = errors.New("truncated")

// AppendString appends s with a uvarint length prefix.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendBytes appends s with a uvarint length prefix.
func AppendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Decoder reads values from B in order. After the first error every read
// returns a zero value and Err keeps that error.
type Decoder struct {
	B   []byte
	Err error
}

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	if d.Err != nil {
		return 0
	}
	if len(d.B) == 0 {
		d.Err = ErrTruncated
		return 0
	}
	c := d.B[0]
	d.B = d.B[1:]
	return c
}

// Uvarint reads an unsigned varint.
func (d *Decoder) Uvarint() uint64 {
	if d.Err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.B)
	if n <= 0 {
		d.Err = ErrTruncated
		return 0
	}
	d.B = d.B[n:]
	return v
}

// Varint reads a signed (zig-zag) varint.
func (d *Decoder) Varint() int64 {
	if d.Err != nil {
		return 0
	}
	v, n := binary.Varint(d.B)
	if n <= 0 {
		d.Err = ErrTruncated
		return 0
	}
	d.B = d.B[n:]
	return v
}

// Count reads an element count and checks it against the bytes left,
// assuming every element takes at least one byte, so a forged count cannot
// make the caller allocate more than the input's size.
func (d *Decoder) Count() uint64 {
	n := d.Uvarint()
	if d.Err == nil && n > uint64(len(d.B)) {
		d.Err = ErrTruncated
	}
	return n
}

// Bytes reads a length-prefixed byte string. The result aliases B.
func (d *Decoder) Bytes() []byte {
	n := d.Uvarint()
	if d.Err != nil {
		return nil
	}
	if n > uint64(len(d.B)) {
		d.Err = ErrTruncated
		return nil
	}
	s := d.B[:n:n]
	d.B = d.B[n:]
	return s
}

// Str reads a length-prefixed string (a copy).
func (d *Decoder) Str() string { return string(d.Bytes()) }

// Strs reads two length-prefixed strings, copied into one allocation (see
// [Pair]).
func (d *Decoder) Strs() (string, string) {
	a := d.Bytes()
	b := d.Bytes()
	if d.Err != nil {
		return "", ""
	}
	return Pair(a, b)
}

// Pair returns copies of a and b that share one allocation: for values
// that live and die together (a lock's key and owner), that saves an
// allocation and the rounding of one size class each time. Either string
// keeps the other's bytes alive.
func Pair(a, b []byte) (string, string) {
	var sb strings.Builder
	sb.Grow(len(a) + len(b))
	sb.Write(a)
	sb.Write(b)
	s := sb.String()
	return s[:len(a)], s[len(a):]
}
