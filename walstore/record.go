package walstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"time"

	"github.com/hashicorp/raft"
)

// Record layout (all integers little endian). One record is the payload of
// one tidwall/wal entry; tidwall frames it as uvarint(len) + payload.
//
//	off  size  field
//	0    1     format version (recordVersion)
//	1    4     CRC32C (Castagnoli) of bytes [5, end)
//	5    8     raft index
//	13   8     term
//	21   1     type (raft.LogType)
//	22   8     AppendedAt, seconds since the Unix epoch (int64)
//	30   4     AppendedAt, nanoseconds within the second, < 1e9
//	34   4     len(Data)
//	38   n     Data
//	38+n rest  Extensions
const (
	recordVersion = 1
	headerSize    = 38

	offCRC   = 1
	offIndex = 5
	offTerm  = 13
	offType  = 21
	offSec   = 22
	offNsec  = 30
	offDLen  = 34

	// unixToInternal is the number of seconds between year 1 and 1970, as in
	// package time. time.Unix(sec, _) overflows for sec above
	// math.MaxInt64-unixToInternal, so such records are rejected.
	unixToInternal = (1969*365 + 1969/4 - 1969/100 + 1969/400) * 24 * 60 * 60
	maxUnixSec     = math.MaxInt64 - unixToInternal
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errRecordTooLarge is returned by appendRecord for entries whose Data does
// not fit the 32-bit length field. Nothing is written in that case.
var errRecordTooLarge = errors.New("walstore: log data larger than 4 GiB")

// appendRecord appends the encoding of l to dst and returns the extended
// slice. It does not allocate when dst has enough capacity.
func appendRecord(dst []byte, l *raft.Log) ([]byte, error) {
	if uint64(len(l.Data)) > math.MaxUint32 {
		return dst, errRecordTooLarge
	}
	sec, nsec := l.AppendedAt.Unix(), l.AppendedAt.Nanosecond()
	if sec > maxUnixSec {
		return dst, fmt.Errorf("walstore: AppendedAt %v out of range", l.AppendedAt)
	}
	start := len(dst)
	var h [headerSize]byte
	h[0] = recordVersion
	binary.LittleEndian.PutUint64(h[offIndex:], l.Index)
	binary.LittleEndian.PutUint64(h[offTerm:], l.Term)
	h[offType] = byte(l.Type)
	binary.LittleEndian.PutUint64(h[offSec:], uint64(sec))
	binary.LittleEndian.PutUint32(h[offNsec:], uint32(nsec))
	binary.LittleEndian.PutUint32(h[offDLen:], uint32(len(l.Data)))
	dst = append(dst, h[:]...)
	dst = append(dst, l.Data...)
	dst = append(dst, l.Extensions...)
	rec := dst[start:]
	binary.LittleEndian.PutUint32(rec[offCRC:], crc32.Checksum(rec[offIndex:], castagnoli))
	return dst, nil
}

// checkRecord validates b as one record (version, length fields, checksum,
// timestamp range) without copying it, and returns its raft index.
func checkRecord(b []byte) (uint64, error) {
	if len(b) < headerSize {
		return 0, fmt.Errorf("record of %d bytes is shorter than its %d-byte header", len(b), headerSize)
	}
	if b[0] != recordVersion {
		return 0, fmt.Errorf("unknown record version %d", b[0])
	}
	want := binary.LittleEndian.Uint32(b[offCRC:])
	if got := crc32.Checksum(b[offIndex:], castagnoli); got != want {
		return 0, fmt.Errorf("checksum mismatch (stored %08x, computed %08x)", want, got)
	}
	if dlen := binary.LittleEndian.Uint32(b[offDLen:]); uint64(dlen) > uint64(len(b)-headerSize) {
		return 0, fmt.Errorf("data length %d exceeds record", dlen)
	}
	if sec := int64(binary.LittleEndian.Uint64(b[offSec:])); sec > maxUnixSec {
		return 0, fmt.Errorf("timestamp seconds %d out of range", sec)
	}
	if nsec := binary.LittleEndian.Uint32(b[offNsec:]); nsec >= 1e9 {
		return 0, fmt.Errorf("timestamp nanoseconds %d out of range", nsec)
	}
	return binary.LittleEndian.Uint64(b[offIndex:]), nil
}

// decodeRecord validates b and, only if it is intact, fills out. Data and
// Extensions are copied (into one allocation), so b may be reused; empty
// fields decode as nil. AppendedAt decodes in UTC without a monotonic
// reading.
func decodeRecord(b []byte, out *raft.Log) error {
	if _, err := checkRecord(b); err != nil {
		return err
	}
	dlen := int(binary.LittleEndian.Uint32(b[offDLen:]))
	body := b[headerSize:]
	var data, ext []byte
	if len(body) > 0 {
		buf := make([]byte, len(body))
		copy(buf, body)
		if dlen > 0 {
			data = buf[:dlen:dlen]
		}
		if len(buf) > dlen {
			ext = buf[dlen:]
		}
	}
	*out = raft.Log{
		Index: binary.LittleEndian.Uint64(b[offIndex:]),
		Term:  binary.LittleEndian.Uint64(b[offTerm:]),
		Type:  raft.LogType(b[offType]),
		Data:  data,
		AppendedAt: time.Unix(int64(binary.LittleEndian.Uint64(b[offSec:])),
			int64(binary.LittleEndian.Uint32(b[offNsec:]))).UTC(),
		Extensions: ext,
	}
	return nil
}

// recordIndexHint returns the raft index field of b if b looks like a record
// header, without checking the checksum. Used only to skip obviously stale
// candidates cheaply while scanning damaged bytes.
func recordIndexHint(b []byte) (uint64, bool) {
	if len(b) < headerSize || b[0] != recordVersion {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[offIndex:]), true
}
