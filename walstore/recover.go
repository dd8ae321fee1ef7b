package walstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tidwall/wal"
)

// segFile is one tidwall/wal segment file; index is the wal index of its
// first entry, taken from its 20-digit name.
type segFile struct {
	index uint64
	path  string
}

// listSegments returns the segment files of a wal directory in index order,
// recognised exactly as tidwall/wal does (20 decimal digits, index > 0).
func listSegments(dir string) ([]segFile, error) {
	ents, err := os.ReadDir(dir) // sorted by name = by index
	if err != nil {
		return nil, fmt.Errorf("walstore: %w", err)
	}
	var segs []segFile
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || len(name) != 20 {
			continue
		}
		idx, err := strconv.ParseUint(name, 10, 64)
		if err != nil || idx == 0 {
			continue
		}
		segs = append(segs, segFile{index: idx, path: filepath.Join(dir, name)})
	}
	return segs, nil
}

// walOptions are the tidwall/wal options the store always uses: binary
// records, NoCopy reads (decodeRecord copies), and AllowEmpty so that a
// whole-log delete is possible.
func (s *Store) walOptions() *wal.Options {
	return &wal.Options{
		NoSync:           true, // the store fsyncs appends itself (settle, durable.go)
		SegmentSize:      s.opts.SegmentSize,
		LogFormat:        wal.Binary,
		SegmentCacheSize: 2,
		NoCopy:           true,
		AllowEmpty:       true,
		DirPerms:         0o750,
		FilePerms:        0o640,
	}
}

// scanState is what a full scan of the segment files found.
type scanState struct {
	walFirst, walLast uint64 // walFirst > walLast: no entries
	off               uint64 // raft index - wal index, if any entry exists
	tail              int64  // size of the last segment after any cut
}

// cutPlan describes the end of a segment file to be cut off: the damaged
// tail of the last segment, or the preallocated zeros (prealloc.go) after the
// records of any segment.
type cutPlan struct {
	path     string
	at, size int64  // keep bytes [0, at) of a size-byte file
	firstCut string // description of the first index cut (damage only)
	reason   error  // nil for preallocated zeros
}

// openLog opens the wal, verifies every record and cuts a torn tail.
//
// tidwall/wal.Open first completes interrupted truncations (.START/.END
// files) and then parses the last segment, failing with wal.ErrCorrupt if its
// framing is torn. Either way the segment files are then final, and scan
// checks them byte by byte.
func (s *Store) openLog() error {
	if err := os.MkdirAll(s.walDir, 0o750); err != nil {
		return fmt.Errorf("walstore: create %s: %w", s.walDir, err)
	}
	if err := removeTemps(s.walDir, ".TEMP"); err != nil {
		return err
	}
	l, err := wal.Open(s.walDir, s.walOptions())
	if err != nil && !errors.Is(err, wal.ErrCorrupt) {
		return fmt.Errorf("walstore: open wal %s: %w", s.walDir, err)
	}
	st, cuts, err := s.scan()
	if err != nil {
		if l != nil {
			l.Close()
		}
		return err
	}
	if len(cuts) > 0 {
		if l != nil {
			if err := l.Close(); err != nil {
				return fmt.Errorf("walstore: close wal for repair: %w", err)
			}
			l = nil
		}
		for _, c := range cuts {
			if err := s.cutTail(c); err != nil {
				return err
			}
		}
	}
	if l == nil {
		if l, err = wal.Open(s.walDir, s.walOptions()); err != nil {
			return fmt.Errorf("walstore: open wal %s: %w", s.walDir, err)
		}
	}
	wf, err1 := l.FirstIndex()
	wl, err2 := l.LastIndex()
	if err := errors.Join(err1, err2); err != nil || wf != st.walFirst || wl != st.walLast {
		l.Close()
		return fmt.Errorf("%w: %s: wal reports entries %d-%d, files hold %d-%d (%v)",
			ErrCorrupt, s.walDir, wf, wl, st.walFirst, st.walLast, err)
	}
	s.log = l
	s.empty = wf > wl
	s.off = st.off
	s.first, s.last = wf+st.off, wl+st.off
	s.tail = st.tail
	return nil
}

// offset is the raft-to-wal index offset, learnt from the first intact
// record.
type offset struct {
	v     uint64
	known bool
}

// scan reads every segment file. Any damage in a non-final segment, and
// damage in the last segment that is followed by an intact later record, is
// refused with ErrCorrupt. Damage that runs to the end of the last segment,
// and zeros after the records of any segment (preallocated space, which a
// crash can leave on the tail and on the segment closed just before), are
// returned as cutPlans.
func (s *Store) scan() (scanState, []cutPlan, error) {
	segs, err := listSegments(s.walDir)
	if err != nil {
		return scanState{}, nil, err
	}
	if len(segs) == 0 {
		return scanState{walFirst: 1, walLast: 0}, nil, nil
	}
	var off offset
	var cuts []cutPlan
	st := scanState{walFirst: segs[0].index}
	for i, sg := range segs {
		data, err := os.ReadFile(sg.path)
		if err != nil {
			return scanState{}, nil, fmt.Errorf("walstore: %w", err)
		}
		n, end, bad := scanRecords(data, sg.index, &off)
		badW := sg.index + uint64(n)
		if bad != nil && allZero(data[end:]) {
			// Zeros after the records (no record is empty, and scanRecords
			// stops at a record boundary). At the size the store
			// preallocates to they are its preallocated space; at another
			// size, zeros that replaced records at the end (cut all the
			// same, but with a warning).
			c := cutPlan{path: sg.path, at: int64(end), size: int64(len(data))}
			if len(data) != s.opts.SegmentSize+preallocSlack {
				c.firstCut, c.reason = describeIndex(badW, off), errZerosAtEnd
			}
			cuts = append(cuts, c)
			bad = nil
		}
		if i < len(segs)-1 {
			if bad != nil {
				return scanState{}, nil, refuse(sg.path, data, end, badW, off, bad,
					"damage in a segment that is not the last")
			}
			if want := segs[i+1].index - sg.index; uint64(n) != want {
				return scanState{}, nil, fmt.Errorf("%w: %s: holds %d records, the next segment expects %d (%s is missing); refusing to open",
					ErrCorrupt, sg.path, n, want, describeIndex(badW, off))
			}
			continue
		}
		st.walLast = badW - 1
		st.off = off.v
		st.tail = int64(end)
		if bad == nil {
			return st, cuts, nil
		}
		minIdx := badW + off.v
		if unwrittenSector(data, end) {
			// Records are never empty, so a zero length prefix here was
			// never written durably: this is past the last fsync, and
			// intact records after it belong to the same unacknowledged
			// batch, whose later sectors reached the disk before this one
			// (preallocated space keeps the file long enough to show
			// them).
			bad = fmt.Errorf("unwritten sector after the last durable record, then records of the same unacknowledged batch: %w", bad)
		} else if idx, at, found := findIntactRecord(data, end+1, minIdx, off.known); found {
			return scanState{}, nil, refuse(sg.path, data, end, badW, off, bad,
				fmt.Sprintf("an intact record for raft index %d follows at byte %d", idx, at))
		}
		return st, append(cuts, cutPlan{
			path:     sg.path,
			at:       int64(end),
			size:     int64(len(data)),
			firstCut: describeIndex(badW, off),
			reason:   bad,
		}), nil
	}
	return st, nil, nil // not reached: the last segment always returns above
}

// errZerosAtEnd describes zeros after the records of a segment whose size
// is not the store's preallocated size.
var errZerosAtEnd = errors.New("zeros after the records, not preallocated space")

// sectorSize is the unit a disk writes atomically (or not at all).
const sectorSize = 512

// unwrittenSector reports whether a record should start at byte end but the
// rest of that sector holds only zeros: the sector was not written.
func unwrittenSector(data []byte, end int) bool {
	if end >= len(data) || data[end] != 0 {
		return false
	}
	sectorEnd := min(len(data), (end/sectorSize+1)*sectorSize)
	return allZero(data[end:sectorEnd])
}

// scanRecords parses data as tidwall/wal binary framing (uvarint length +
// payload) of records whose first wal index is w. It returns the number of
// intact records, the byte offset after them and, if it stopped early, why.
// A record is intact if its framing, version, checksum and lengths are
// valid and its raft index equals wal index + off (off is learnt from the
// first intact record if not yet known).
func scanRecords(data []byte, w uint64, off *offset) (n, end int, bad error) {
	pos := 0
	for pos < len(data) {
		size, k := binary.Uvarint(data[pos:])
		if k <= 0 || size > uint64(len(data)-pos-k) {
			return n, pos, fmt.Errorf("torn or damaged record framing (%d bytes left)", len(data)-pos)
		}
		idx, err := checkRecord(data[pos+k : pos+k+int(size)])
		if err == nil {
			switch {
			case !off.known:
				off.v, off.known = idx-w, true
			case idx != w+off.v:
				err = fmt.Errorf("record holds raft index %d, expected %d", idx, w+off.v)
			}
		}
		if err != nil {
			return n, pos, err
		}
		pos += k + int(size)
		w++
		n++
	}
	return n, pos, nil
}

// findIntactRecord looks at every byte offset from `from` for an intact
// record whose raft index is at least minIdx (any index if !known). Finding
// one means the damage before it is not a torn tail.
func findIntactRecord(data []byte, from int, minIdx uint64, known bool) (idx uint64, at int, ok bool) {
	for p := from; p < len(data); p++ {
		size, k := binary.Uvarint(data[p:])
		if k <= 0 || size < headerSize || size > uint64(len(data)-p-k) {
			continue
		}
		rec := data[p+k : p+k+int(size)]
		if hint, ok := recordIndexHint(rec); !ok || (known && hint < minIdx) {
			continue
		}
		if idx, err := checkRecord(rec); err == nil {
			return idx, p, true
		}
	}
	return 0, 0, false
}

// refuse builds the Open error for damage that must not be cut.
func refuse(path string, data []byte, at int, w uint64, off offset, why error, detail string) error {
	if !off.known {
		off = guessOffset(data, at, w)
	}
	return fmt.Errorf("%w: %s: %s at byte %d: %v; %s; refusing to open (acknowledged entries may be damaged)",
		ErrCorrupt, path, describeIndex(w, off), at, why, detail)
}

// guessOffset tries to learn the offset from the first intact record after
// the damaged one at byte at, assuming the framing is intact. Used only to
// name the damaged raft index in errors.
func guessOffset(data []byte, at int, w uint64) offset {
	for pos := at; pos < len(data); w++ {
		size, k := binary.Uvarint(data[pos:])
		if k <= 0 || size > uint64(len(data)-pos-k) {
			break
		}
		if pos > at {
			if idx, err := checkRecord(data[pos+k : pos+k+int(size)]); err == nil {
				return offset{v: idx - w, known: true}
			}
		}
		pos += k + int(size)
	}
	return offset{}
}

func describeIndex(w uint64, off offset) string {
	if off.known {
		return fmt.Sprintf("raft index %d (wal index %d)", w+off.v, w)
	}
	return fmt.Sprintf("wal index %d (raft index unknown)", w)
}

// cutTail truncates a segment to its last intact record and fsyncs it.
// A crash can only tear bytes that were not fsynced, and a batch is
// acknowledged only after its fsync. (Media damage to the last record is
// indistinguishable from a torn write and is cut as well.) Preallocated
// zeros are cut the same way, and logged only at debug level.
func (s *Store) cutTail(c cutPlan) error {
	f, err := os.OpenFile(c.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("walstore: repair %s: %w", c.path, err)
	}
	err = f.Truncate(c.at)
	if err == nil && !s.opts.NoSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("walstore: repair %s: %w", c.path, err)
	}
	if c.reason == nil {
		s.logger.Debug("walstore: cut preallocated zeros", "file", c.path, "offset", c.at, "bytes_cut", c.size-c.at)
		return nil
	}
	s.logger.Warn("walstore: cut torn tail of a segment",
		"file", c.path, "offset", c.at, "bytes_cut", c.size-c.at,
		"first_cut", c.firstCut, "reason", c.reason.Error())
	return nil
}

// removeTemps deletes leftover temporary files (ending in suffix) of an
// interrupted atomic write. Safe because the directory lock is held.
func removeTemps(dir, suffix string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("walstore: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), suffix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("walstore: remove stale temp file: %w", err)
			}
		}
	}
	return nil
}
