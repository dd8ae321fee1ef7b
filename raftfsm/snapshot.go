package raftfsm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"sort"
	"time"

	"github.com/hashicorp/raft"
	"github.com/tidwall/btree"
)

// Snapshot format (all integers big-endian):
//
//	magic "DLSNAP" | version u16 | applied u64 | now i64 | count u64 |
//	count x (len(key) uvarint | key | len(owner) uvarint | owner |
//	         token u64 | version u64 | ttl i64 | deadline i64) |
//	nodes u64 | nodes x (id | resp | http, each uvarint-length-prefixed) |
//	crc32c u32 of every preceding byte
//
// Locks are written in key order and nodes in id order, so equal states give
// equal bytes.
const (
	snapshotMagic   = "DLSNAP"
	snapshotVersion = 1
)

// ErrBadSnapshot means a snapshot stream is not one this version wrote, or is
// damaged.
var ErrBadSnapshot = errors.New("raftfsm: bad snapshot")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// snapshot is an immutable copy of the state, written by Persist.
type snapshot struct {
	now     time.Duration
	applied uint64
	locks   *btree.Map[string, LockState]
	nodes   map[string]NodeAddrs
}

// Persist writes the snapshot to sink and closes it (or cancels it on error).
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release is a no-op: the copy-on-write maps need no cleanup.
func (s *snapshot) Release() {}

// write writes the snapshot in the format above.
func (s *snapshot) write(w io.Writer) error {
	crc := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 64<<10)
	var buf []byte
	buf = append(buf, snapshotMagic...)
	buf = binary.BigEndian.AppendUint16(buf, snapshotVersion)
	buf = binary.BigEndian.AppendUint64(buf, s.applied)
	buf = binary.BigEndian.AppendUint64(buf, uint64(s.now))
	buf = binary.BigEndian.AppendUint64(buf, uint64(s.locks.Len()))
	if _, err := bw.Write(buf); err != nil {
		return err
	}
	var err error
	s.locks.Scan(func(_ string, l LockState) bool {
		buf = appendLock(buf[:0], l)
		_, err = bw.Write(buf)
		return err == nil
	})
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(s.nodes))
	for id := range s.nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	buf = binary.BigEndian.AppendUint64(buf[:0], uint64(len(ids)))
	for _, id := range ids {
		buf = appendString(buf, id)
		buf = appendString(buf, s.nodes[id].RESP)
		buf = appendString(buf, s.nodes[id].HTTP)
	}
	if _, err := bw.Write(buf); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	_, err = w.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32()))
	return err
}

func appendLock(b []byte, l LockState) []byte {
	b = binary.AppendUvarint(b, uint64(len(l.Key)))
	b = append(b, l.Key...)
	b = binary.AppendUvarint(b, uint64(len(l.Owner)))
	b = append(b, l.Owner...)
	b = binary.BigEndian.AppendUint64(b, l.Token)
	b = binary.BigEndian.AppendUint64(b, l.Version)
	b = binary.BigEndian.AppendUint64(b, uint64(l.TTL))
	b = binary.BigEndian.AppendUint64(b, uint64(l.Deadline))
	return b
}

// snapshotState is a decoded snapshot.
type snapshotState struct {
	now     time.Duration
	applied uint64
	locks   []LockState
	nodes   []snapshotNode
}

type snapshotNode struct {
	id    string
	addrs NodeAddrs
}

// maxSnapshotNodes bounds the node table read from a snapshot.
const maxSnapshotNodes = 1 << 16

// maxSnapshotString bounds key and owner lengths read from a snapshot, so a
// damaged length cannot make Restore allocate without bound.
const maxSnapshotString = 1 << 20

// readSnapshot decodes and verifies a snapshot stream.
func readSnapshot(r io.Reader) (snapshotState, error) {
	var st snapshotState
	crc := crc32.New(castagnoli)
	br := &crcReader{r: bufio.NewReaderSize(r, 64<<10), crc: crc}
	head := make([]byte, len(snapshotMagic)+2+8+8+8)
	if _, err := io.ReadFull(br, head); err != nil {
		return st, fmt.Errorf("%w: header: %v", ErrBadSnapshot, err)
	}
	if string(head[:len(snapshotMagic)]) != snapshotMagic {
		return st, fmt.Errorf("%w: bad magic", ErrBadSnapshot)
	}
	p := head[len(snapshotMagic):]
	if v := binary.BigEndian.Uint16(p); v != snapshotVersion {
		return st, fmt.Errorf("%w: unsupported version %d", ErrBadSnapshot, v)
	}
	st.applied = binary.BigEndian.Uint64(p[2:])
	st.now = time.Duration(binary.BigEndian.Uint64(p[10:]))
	count := binary.BigEndian.Uint64(p[18:])
	prev := ""
	for i := uint64(0); i < count; i++ {
		l, err := readLock(br)
		if err != nil {
			return st, fmt.Errorf("%w: lock %d: %v", ErrBadSnapshot, i, err)
		}
		if i > 0 && l.Key <= prev {
			return st, fmt.Errorf("%w: keys out of order at lock %d", ErrBadSnapshot, i)
		}
		prev = l.Key
		st.locks = append(st.locks, l)
	}
	var nb [8]byte
	if _, err := io.ReadFull(br, nb[:]); err != nil {
		return st, fmt.Errorf("%w: node count: %v", ErrBadSnapshot, err)
	}
	nodes := binary.BigEndian.Uint64(nb[:])
	if nodes > maxSnapshotNodes {
		return st, fmt.Errorf("%w: %d nodes", ErrBadSnapshot, nodes)
	}
	for i := uint64(0); i < nodes; i++ {
		var n snapshotNode
		var err error
		for _, dst := range []*string{&n.id, &n.addrs.RESP, &n.addrs.HTTP} {
			if err == nil {
				*dst, err = readString(br)
			}
		}
		if err != nil {
			return st, fmt.Errorf("%w: node %d: %v", ErrBadSnapshot, i, err)
		}
		if i > 0 && n.id <= st.nodes[i-1].id {
			return st, fmt.Errorf("%w: nodes out of order at %d", ErrBadSnapshot, i)
		}
		st.nodes = append(st.nodes, n)
	}
	sum := crc.Sum32()
	var tail [4]byte
	if _, err := io.ReadFull(br.r, tail[:]); err != nil {
		return st, fmt.Errorf("%w: checksum: %v", ErrBadSnapshot, err)
	}
	if binary.BigEndian.Uint32(tail[:]) != sum {
		return st, fmt.Errorf("%w: checksum mismatch", ErrBadSnapshot)
	}
	if _, err := br.r.ReadByte(); err != io.EOF {
		return st, fmt.Errorf("%w: trailing bytes", ErrBadSnapshot)
	}
	return st, nil
}

func readLock(br *crcReader) (LockState, error) {
	var l LockState
	var err error
	if l.Key, err = readString(br); err != nil {
		return l, err
	}
	if l.Owner, err = readString(br); err != nil {
		return l, err
	}
	var fixed [32]byte
	if _, err := io.ReadFull(br, fixed[:]); err != nil {
		return l, err
	}
	l.Token = binary.BigEndian.Uint64(fixed[0:])
	l.Version = binary.BigEndian.Uint64(fixed[8:])
	l.TTL = time.Duration(binary.BigEndian.Uint64(fixed[16:]))
	l.Deadline = time.Duration(binary.BigEndian.Uint64(fixed[24:]))
	return l, nil
}

func readString(br *crcReader) (string, error) {
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return "", err
	}
	if n > maxSnapshotString {
		return "", fmt.Errorf("string of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return "", err
	}
	return string(b), nil
}

// crcReader feeds every byte it reads into a running checksum.
type crcReader struct {
	r   *bufio.Reader
	crc hash.Hash32
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc.Write(p[:n])
	return n, err
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.crc.Write([]byte{b})
	}
	return b, err
}
