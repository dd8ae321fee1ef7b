package walstore

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// segmentFiles returns, for each segment file in index order, its size and
// where its records end.
func segmentFiles(t *testing.T, s *Store) (sizes, ends []int) {
	t.Helper()
	segs, err := listSegments(s.walDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, sg := range segs {
		data, err := os.ReadFile(sg.path)
		if err != nil {
			t.Fatal(err)
		}
		end, zeros, err := recordsEnd(bytes.NewReader(data))
		if err != nil || !zeros {
			t.Fatalf("%s: bytes other than zeros after its records end at %d (%v)", sg.path, end, err)
		}
		sizes, ends = append(sizes, len(data)), append(ends, int(end))
	}
	return sizes, ends
}

// checkPrealloc asserts that only the tail segment carries zeros after its
// records, up to segSize+preallocSlack (none once it is full), and that the
// store's mirror of the tail agrees.
func checkPrealloc(t *testing.T, s *Store, segSize int, what string) {
	t.Helper()
	sizes, ends := segmentFiles(t, s)
	last := len(sizes) - 1
	for i := range last {
		if sizes[i] != ends[i] {
			t.Errorf("%s: closed segment %d keeps %d zero bytes", what, i, sizes[i]-ends[i])
		}
	}
	want := segSize + preallocSlack
	if ends[last] >= segSize {
		want = ends[last]
	}
	if sizes[last] != want || int64(ends[last]) != s.tail {
		t.Errorf("%s: tail is %d bytes with records to %d (mirror %d), want %d bytes", what, sizes[last], ends[last], s.tail, want)
	}
}

// TestPreallocation: the tail segment is preallocated with zeros while the
// store is open, through appends across segment boundaries and every kind
// of truncation raft issues; no other segment keeps zeros (tidwall/wal may
// reload it); Close leaves only records; every entry reads back throughout.
func TestPreallocation(t *testing.T) {
	const seg = 2000
	dir := t.TempDir()
	s := openT(t, dir, &Options{SegmentSize: seg})
	checkPrealloc(t, s, seg, "new store")
	gen := map[uint64]uint64{}
	store := func(from, to, g uint64) {
		t.Helper()
		mustStore(t, s, testLogs(from, to, g)...)
		for i := from; i <= to; i++ {
			gen[i] = g
		}
	}
	want := func(i uint64) *raft.Log { return testLog(i, gen[i]) }
	for i := uint64(1); i <= 120; i += 3 {
		store(i, i+2, 1)
		checkPrealloc(t, s, seg, "append")
	}
	checkRange(t, s, 1, 120, want) // reads closed segments back from their files

	first, last := uint64(1), uint64(120)
	steps := []struct {
		name     string
		min, max uint64
	}{
		{"compaction", 1, 40},
		{"conflicting suffix", 100, 1 << 40}, // raft names a range past the end
		{"compaction inside the tail segment", 41, 97},
	}
	for _, st := range steps {
		if err := s.DeleteRange(st.min, st.max); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if st.min == first {
			first = st.max + 1
		} else {
			last = st.min - 1
		}
		checkPrealloc(t, s, seg, st.name)
		checkRange(t, s, first, last, want)
		store(last+1, last+5, 2)
		last += 5
		checkPrealloc(t, s, seg, st.name+", then an append")
		checkRange(t, s, first, last, want)
	}
	if err := s.DeleteRange(first, last); err != nil { // the whole log
		t.Fatal(err)
	}
	checkPrealloc(t, s, seg, "whole-log delete")
	store(500, 560, 3)
	checkPrealloc(t, s, seg, "append after a whole-log delete")

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	sizes, ends := segmentFiles(t, s)
	for i := range sizes {
		if sizes[i] != ends[i] {
			t.Errorf("after Close: segment %d keeps %d zero bytes", i, sizes[i]-ends[i])
		}
	}
	s2 := openT(t, dir, &Options{SegmentSize: seg})
	checkRange(t, s2, 500, 560, want)
	checkPrealloc(t, s2, seg, "reopened")
}

// TestPreallocationCrash: files left by a crash (copied while the store is
// open, so the tail still carries its zeros) open without a warning, with
// every entry, and the store appends after them.
func TestPreallocationCrash(t *testing.T) {
	const seg = 4096
	dir := t.TempDir()
	s := openT(t, dir, &Options{SegmentSize: seg})
	mustStore(t, s, testLogs(1, 100, 1)...)
	checkPrealloc(t, s, seg, "before the crash")

	crashed := t.TempDir()
	if err := os.MkdirAll(filepath.Join(crashed, walDirName), 0o750); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{stableFileName, walDirName} {
		src := filepath.Join(dir, name)
		if name == walDirName {
			ents, err := os.ReadDir(src)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				copyFile(t, filepath.Join(src, e.Name()), filepath.Join(crashed, name, e.Name()))
			}
			continue
		}
		if _, err := os.Stat(src); err == nil {
			copyFile(t, src, filepath.Join(crashed, name))
		}
	}
	var logs bytes.Buffer
	c, err := Open(crashed, &Options{SegmentSize: seg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("Open after a crash: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("preallocated zeros were reported as damage: %s", logs.String())
	}
	want := func(i uint64) *raft.Log { return testLog(i, 1) }
	checkRange(t, c, 1, 100, want)
	checkPrealloc(t, c, seg, "after the crash")
	mustStore(t, c, testLogs(101, 140, 1)...)
	checkRange(t, reopen(t, c), 1, 140, want)
}

// TestNoPreallocationWithoutSync: NoSync saves no fsync, so the store writes
// no zeros either.
func TestNoPreallocationWithoutSync(t *testing.T) {
	s := openT(t, t.TempDir(), &Options{SegmentSize: 2000, NoSync: true})
	mustStore(t, s, testLogs(1, 50, 1)...)
	sizes, ends := segmentFiles(t, s)
	for i := range sizes {
		if sizes[i] != ends[i] {
			t.Errorf("segment %d has %d zero bytes with NoSync", i, sizes[i]-ends[i])
		}
	}
}

// TestRecordsEnd: where the records of a segment file end, and whether
// only zeros follow.
func TestRecordsEnd(t *testing.T) {
	rec := func(n int) []byte { // a length prefix and n bytes of 0xaa
		return append([]byte{byte(n)}, bytes.Repeat([]byte{0xaa}, n)...)
	}
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	big := join(rec(100), make([]byte, 200<<10)) // past the reader's buffer
	cases := []struct {
		name  string
		data  []byte
		end   int64
		zeros bool
	}{
		{"empty", nil, 0, true},
		{"records only", join(rec(3), rec(5)), 10, true},
		{"records then zeros", join(rec(3), rec(5), make([]byte, 100)), 10, true},
		{"only zeros", make([]byte, 64), 0, true},
		{"record ending in zeros, then zeros", join([]byte{4, 1, 0, 0, 0}, make([]byte, 8)), 5, true},
		{"many zeros", big, 101, true},
		{"a byte after many zeros", append(big, 1), 101, false},
		{"zeros then a record", join(rec(3), []byte{0, 0}, rec(2)), 4, false},
		{"torn record", join(rec(3), []byte{9, 1, 2}), 4, false},
		{"torn length prefix", join(rec(3), []byte{0x80}), 4, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			end, zeros, err := recordsEnd(bytes.NewReader(tc.data))
			if err != nil || end != tc.end || zeros != tc.zeros {
				t.Errorf("recordsEnd = %d, %v, %v; want %d, %v", end, zeros, err, tc.end, tc.zeros)
			}
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// TestFailedCutIsFatal: zeros that cannot be cut off a segment tidwall has
// just closed would be parsed as empty entries when tidwall reloads it, so
// that failure stops the store's writes like a failed write does.
func TestFailedCutIsFatal(t *testing.T) {
	const seg = 2000
	s := openT(t, t.TempDir(), &Options{SegmentSize: seg})
	mustStore(t, s, testLogs(1, 4, 1)...)
	if s.prealloc == "" {
		t.Fatal("tail not preallocated")
	}
	// The path is gone (tidwall keeps writing through its open file), so
	// the cut after the next cycle cannot open it.
	if err := os.Remove(s.prealloc); err != nil {
		t.Fatal(err)
	}
	var err error
	next := uint64(5)
	for ; next < 200 && err == nil; next++ {
		err = s.StoreLogs(testLogs(next, next, 1))
	}
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("StoreLogs across a segment boundary after the tail's path vanished = %v (up to index %d), want ErrFailed", err, next-1)
	}
	if err := s.StoreLogs(testLogs(next, next, 1)); !errors.Is(err, ErrFailed) {
		t.Fatalf("StoreLogs after the failure = %v, want ErrFailed", err)
	}
	if _, err := s.LastIndex(); err != nil {
		t.Fatalf("LastIndex after the failure: %v", err)
	}
}
