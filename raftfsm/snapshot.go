package raftfsm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"slices"
	"sort"
	"time"

	"github.com/distlock/distlock/internal/wire"
	"github.com/hashicorp/raft"
)

// Snapshot format, version 4 (all integers big-endian; strings are
// uvarint-length-prefixed):
//
//	magic "DLSNAP" | version u16 | applied u64 | now i64 | count u64 |
//	count x (key | kind u8 | owner | token u64 | version u64 | ttl i64 |
//	         deadline i64 | [kind 1: fields uvarint | fields x (name | value)]) |
//	nodes u64 | nodes x (id | resp | http) |
//	script seq u64 | scripts u64 | scripts x (sha | body | seq u64) |
//	[v3: cluster protocol u64 | token seq u64] | [v4: cluster id] |
//	crc32c u32 of every preceding byte
//
// kind is 0 for a string key (a lock; owner is its value) and 1 for a hash
// (owner empty). Keys are written in key order, hash fields in name order,
// nodes in id order and scripts in SHA order, so equal states give equal
// bytes. Version 1 (no kind byte, no hashes, no scripts), version 2 (no
// protocol version) and version 3 (no cluster id) are still read.
//
// A snapshot is written in the oldest format that holds its state, which
// every member of the cluster reads: while the cluster's protocol version
// is 1, version 2, which builds from before protocol versions read (the
// state a version 3 snapshot adds, protocol version 1 and no sequence, is
// what version 2 implies); while it is 2, version 3 (no cluster id yet).
const (
	snapshotMagic   = "DLSNAP"
	snapshotVersion = 4
)

// ErrBadSnapshot means a snapshot stream is not one this version wrote, or is
// damaged.
var ErrBadSnapshot = errors.New("raftfsm: bad snapshot")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// snapshot is an immutable copy of the state, written by Persist.
type snapshot struct {
	now       time.Duration
	applied   uint64
	locks     lockTable
	nodes     map[string]NodeAddrs
	scripts   scriptCache
	version   uint64 // the cluster's protocol version
	seq       uint64
	clusterID string
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
	format := uint16(snapshotVersion)
	switch {
	case s.version < 2:
		format = 2
	case s.version < 3:
		format = 3
	}
	var buf []byte
	buf = append(buf, snapshotMagic...)
	buf = binary.BigEndian.AppendUint16(buf, format)
	buf = binary.BigEndian.AppendUint64(buf, s.applied)
	buf = binary.BigEndian.AppendUint64(buf, uint64(s.now))
	buf = binary.BigEndian.AppendUint64(buf, uint64(s.locks.Len()))
	if _, err := bw.Write(buf); err != nil {
		return err
	}
	var err error
	s.locks.Scan(func(l LockState) bool {
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
		buf = wire.AppendString(buf, id)
		buf = wire.AppendString(buf, s.nodes[id].RESP)
		buf = wire.AppendString(buf, s.nodes[id].HTTP)
	}
	buf = binary.BigEndian.AppendUint64(buf, s.scripts.seq)
	buf = binary.BigEndian.AppendUint64(buf, uint64(len(s.scripts.m)))
	for _, sha := range s.scripts.sorted() {
		sc := s.scripts.m[sha]
		buf = wire.AppendString(buf, sha)
		buf = wire.AppendString(buf, sc.body)
		buf = binary.BigEndian.AppendUint64(buf, sc.seq)
	}
	if format >= 3 {
		buf = binary.BigEndian.AppendUint64(buf, s.version)
		buf = binary.BigEndian.AppendUint64(buf, s.seq)
	}
	if format >= 4 {
		buf = wire.AppendString(buf, s.clusterID)
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
	b = wire.AppendString(b, l.Key)
	kind := byte(0)
	if l.IsHash() {
		kind = 1
	}
	b = append(b, kind)
	b = wire.AppendString(b, l.Owner)
	b = binary.BigEndian.AppendUint64(b, l.Token)
	b = binary.BigEndian.AppendUint64(b, l.Version)
	b = binary.BigEndian.AppendUint64(b, uint64(l.TTL))
	b = binary.BigEndian.AppendUint64(b, uint64(l.Deadline))
	if kind == 1 {
		b = binary.AppendUvarint(b, uint64(l.Hash.Len()))
		for _, f := range l.Hash.Fields() {
			b = wire.AppendString(b, f.Name)
			b = wire.AppendString(b, f.Value)
		}
	}
	return b
}

// snapshotState is a decoded snapshot. locks is a new map built while
// reading (the keys arrive in ascending order, so it is bulk-loaded), not
// shared with any FSM until Restore installs it.
type snapshotState struct {
	now       time.Duration
	applied   uint64
	locks     lockTable
	nodes     []snapshotNode
	scripts   scriptCache
	version   uint64
	seq       uint64
	clusterID string
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
	st := snapshotState{locks: newLockTable(), version: 1}
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
	version := binary.BigEndian.Uint16(p)
	if version < 1 || version > snapshotVersion {
		return st, fmt.Errorf("%w: unsupported version %d", ErrBadSnapshot, version)
	}
	st.applied = binary.BigEndian.Uint64(p[2:])
	st.now = time.Duration(binary.BigEndian.Uint64(p[10:]))
	count := binary.BigEndian.Uint64(p[18:])
	prev := ""
	bulk := bulkLoader[LockState]{load: st.locks.Load, set: st.locks.Set,
		later: make([]LockState, 0, min(count/2, 1<<16))} // count is not trusted yet
	for i := uint64(0); i < count; i++ {
		l, err := readLock(br, version)
		if err != nil {
			return st, fmt.Errorf("%w: lock %d: %v", ErrBadSnapshot, i, err)
		}
		if i > 0 && l.Key <= prev {
			return st, fmt.Errorf("%w: keys out of order at lock %d", ErrBadSnapshot, i)
		}
		prev = l.Key
		bulk.add(l) // ascending keys
	}
	bulk.finish()
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
	if version >= 2 {
		if err := readScripts(br, &st.scripts); err != nil {
			return st, fmt.Errorf("%w: scripts: %v", ErrBadSnapshot, err)
		}
	}
	if version >= 3 {
		if err := readVersions(br, &st); err != nil {
			return st, fmt.Errorf("%w: protocol version: %v", ErrBadSnapshot, err)
		}
	}
	if version >= 4 {
		id, err := readString(br)
		if err != nil {
			return st, fmt.Errorf("%w: cluster id: %v", ErrBadSnapshot, err)
		}
		st.clusterID = id
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

func readLock(br *crcReader, version uint16) (LockState, error) {
	var l LockState
	// The key and owner share one allocation (wire.Pair), as they do when
	// a command is decoded.
	kv, err := readBytes(br, br.scratch[:0])
	if err != nil {
		return l, err
	}
	keyLen := len(kv)
	kind := byte(0)
	if version >= 2 {
		if kind, err = br.ReadByte(); err != nil {
			return l, err
		}
		if kind > 1 {
			return l, fmt.Errorf("unknown key kind %d", kind)
		}
	}
	kv, err = readBytes(br, kv) // the owner, after the key
	br.scratch = kv[:0]
	if err != nil {
		return l, err
	}
	l.Key, l.Owner = wire.Pair(kv[:keyLen], kv[keyLen:])
	fixed := br.fixed[:]
	if _, err := io.ReadFull(br, fixed); err != nil {
		return l, err
	}
	l.Token = binary.BigEndian.Uint64(fixed[0:])
	l.Version = binary.BigEndian.Uint64(fixed[8:])
	l.TTL = time.Duration(binary.BigEndian.Uint64(fixed[16:]))
	l.Deadline = time.Duration(binary.BigEndian.Uint64(fixed[24:]))
	if l.TTL < 0 || l.Deadline < 0 || (l.Deadline == noDeadline) != (l.TTL == 0) {
		return l, fmt.Errorf("bad ttl %d or deadline %d", l.TTL, l.Deadline)
	}
	if kind == 1 {
		if l.Owner != "" {
			return l, errors.New("hash key with a value")
		}
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return l, err
		}
		if n == 0 || n > maxHashFields {
			return l, fmt.Errorf("hash of %d fields", n)
		}
		h := &Hash{fields: make([]HashField, 0, n)}
		for i := uint64(0); i < n; i++ {
			var f HashField
			if f.Name, err = readString(br); err == nil {
				f.Value, err = readString(br)
			}
			if err != nil {
				return l, err
			}
			if i > 0 && f.Name <= h.fields[i-1].Name {
				return l, errors.New("hash fields out of order")
			}
			h.fields = append(h.fields, f)
		}
		l.Hash = h
	}
	return l, nil
}

// readScripts reads the script cache of a version 2 snapshot.
func readScripts(br *crcReader, c *scriptCache) error {
	var head [16]byte
	if _, err := io.ReadFull(br, head[:]); err != nil {
		return err
	}
	c.seq = binary.BigEndian.Uint64(head[:])
	n := binary.BigEndian.Uint64(head[8:])
	if n > maxScripts {
		return fmt.Errorf("%d scripts", n)
	}
	prev := ""
	for i := uint64(0); i < n; i++ {
		sha, err := readString(br)
		if err != nil {
			return err
		}
		body, err := readString(br)
		if err != nil {
			return err
		}
		s, err := readUint64(br)
		if err != nil {
			return err
		}
		if sha != sha1hex(body) || (i > 0 && sha <= prev) {
			return fmt.Errorf("script %d: bad or unordered sha", i)
		}
		if s == 0 || s > c.seq {
			return fmt.Errorf("script %d: sequence %d", i, s)
		}
		prev = sha
		if c.m == nil {
			c.m = make(map[string]scriptEntry)
		}
		c.m[sha] = scriptEntry{body: body, seq: s}
	}
	return nil
}

// readVersions reads the cluster's protocol version and token sequence of a
// version 3 snapshot.
func readVersions(br *crcReader, st *snapshotState) error {
	v, err := readUint64(br)
	if err != nil {
		return err
	}
	seq, err := readUint64(br)
	if err != nil {
		return err
	}
	if v < 2 || v > ProtocolVersion {
		return fmt.Errorf("%w: cluster protocol version %d (this build runs %d)", ErrNewerFormat, v, ProtocolVersion)
	}
	st.version, st.seq = v, seq
	return nil
}

func readUint64(br *crcReader) (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(br, b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b[:]), nil
}

func readString(br *crcReader) (string, error) {
	b, err := readBytes(br, br.scratch[:0])
	br.scratch = b[:0]
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// readBytes reads a length-prefixed string and appends it to dst.
func readBytes(br *crcReader, dst []byte) ([]byte, error) {
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return dst, err
	}
	if n > maxSnapshotString {
		return dst, fmt.Errorf("string of %d bytes", n)
	}
	dst = slices.Grow(dst, int(n))
	b := dst[len(dst) : len(dst)+int(n)]
	if _, err := io.ReadFull(br, b); err != nil {
		return dst, err
	}
	return dst[:len(dst)+int(n)], nil
}

// crcReader feeds every byte it reads into a running checksum.
type crcReader struct {
	r   *bufio.Reader
	crc hash.Hash32
	// one, fixed and scratch are reused buffers (ReadByte's checksum
	// input, a lock's fixed-size fields, the strings' read buffer), so
	// reading allocates only the strings.
	one     [1]byte
	fixed   [32]byte
	scratch []byte
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc.Write(p[:n])
	return n, err
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.one[0] = b
		c.crc.Write(c.one[:])
	}
	return b, err
}
