package walstore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestStore_Implements(t *testing.T) {
	var s any = &Store{}
	if _, ok := s.(raft.LogStore); !ok {
		t.Error("Store is not a raft.LogStore")
	}
	if _, ok := s.(raft.StableStore); !ok {
		t.Error("Store is not a raft.StableStore")
	}
	m, ok := s.(raft.MonotonicLogStore)
	if !ok || !m.IsMonotonic() {
		t.Error("Store is not a monotonic raft.MonotonicLogStore")
	}
}

// TestConformance ports raft-boltdb's bolt_store_test.go cases. Each case
// runs, then the store is closed and reopened and the case's checks run
// again.
func TestConformance(t *testing.T) {
	plain := func(idx uint64, data string) *raft.Log { return &raft.Log{Index: idx, Data: []byte(data)} }
	three := []*raft.Log{plain(1, "log1"), plain(2, "log2"), plain(3, "log3")}
	byIndex := func(logs []*raft.Log) func(uint64) *raft.Log {
		return func(i uint64) *raft.Log { return logs[i-logs[0].Index] }
	}
	cases := []struct {
		name  string
		setup func(t *testing.T, s *Store)
		check func(t *testing.T, s *Store)
	}{
		{
			name:  "FirstIndex and LastIndex of empty log",
			check: func(t *testing.T, s *Store) { checkRange(t, s, 0, 0, nil) },
		},
		{
			name:  "FirstIndex and LastIndex of filled log",
			setup: func(t *testing.T, s *Store) { mustStore(t, s, three...) },
			check: func(t *testing.T, s *Store) { checkRange(t, s, 1, 3, byIndex(three)) },
		},
		{
			name: "GetLog missing then present",
			setup: func(t *testing.T, s *Store) {
				if err := s.GetLog(1, new(raft.Log)); err != raft.ErrLogNotFound {
					t.Fatalf("GetLog on empty log = %v, want raft.ErrLogNotFound", err)
				}
				mustStore(t, s, three...)
			},
			check: func(t *testing.T, s *Store) {
				var got raft.Log
				if err := s.GetLog(2, &got); err != nil {
					t.Fatal(err)
				}
				if d := diffLog(three[1], &got); d != "" {
					t.Fatal(d)
				}
			},
		},
		{
			name: "StoreLog",
			setup: func(t *testing.T, s *Store) {
				if err := s.StoreLog(plain(1, "log1")); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, s *Store) { checkRange(t, s, 1, 1, byIndex(three)) },
		},
		{
			name:  "StoreLogs",
			setup: func(t *testing.T, s *Store) { mustStore(t, s, three[:2]...) },
			check: func(t *testing.T, s *Store) { checkRange(t, s, 1, 2, byIndex(three)) },
		},
		{
			name: "DeleteRange prefix",
			setup: func(t *testing.T, s *Store) {
				mustStore(t, s, three...)
				if err := s.DeleteRange(1, 2); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, s *Store) {
				for _, i := range []uint64{1, 2} {
					if err := s.GetLog(i, new(raft.Log)); err != raft.ErrLogNotFound {
						t.Fatalf("GetLog(%d) after delete = %v", i, err)
					}
				}
				checkRange(t, s, 3, 3, byIndex(three))
			},
		},
		{
			name: "Set and Get",
			setup: func(t *testing.T, s *Store) {
				if _, err := s.Get([]byte("bad")); err == nil || err.Error() != "not found" {
					t.Fatalf("Get(missing) error = %v, want \"not found\"", err)
				}
				if err := s.Set([]byte("hello"), []byte("world")); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, s *Store) {
				v, err := s.Get([]byte("hello"))
				if err != nil || !bytes.Equal(v, []byte("world")) {
					t.Fatalf("Get = %q, %v", v, err)
				}
				if v, err := s.Get([]byte("bad")); v != nil || !errors.Is(err, ErrKeyNotFound) {
					t.Fatalf("Get(missing) = %q, %v", v, err)
				}
			},
		},
		{
			name: "SetUint64 and GetUint64",
			setup: func(t *testing.T, s *Store) {
				if v, err := s.GetUint64([]byte("bad")); v != 0 || err == nil || err.Error() != "not found" {
					t.Fatalf("GetUint64(missing) = %d, %v; want 0, \"not found\"", v, err)
				}
				if err := s.SetUint64([]byte("abc"), 123); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, s *Store) {
				if v, err := s.GetUint64([]byte("abc")); v != 123 || err != nil {
					t.Fatalf("GetUint64 = %d, %v", v, err)
				}
				if v, err := s.GetUint64([]byte("bad")); v != 0 || !errors.Is(err, ErrKeyNotFound) {
					t.Fatalf("GetUint64(missing) = %d, %v", v, err)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openT(t, t.TempDir(), nil)
			if tc.setup != nil {
				tc.setup(t, s)
			}
			tc.check(t, s)
			s = reopen(t, s)
			tc.check(t, s)
		})
	}
}

// TestRoundTripAllFields stores entries exercising every raft.Log field and
// reads them back before and after a reopen.
func TestRoundTripAllFields(t *testing.T) {
	now := time.Now() // has a monotonic reading and a local zone
	logs := []*raft.Log{
		{Index: 1},
		{Index: 2, Term: 1<<64 - 1, Type: raft.LogConfiguration, Data: []byte{0}, Extensions: []byte{1, 2, 3}, AppendedAt: now},
		{Index: 3, Term: 7, Type: raft.LogType(255), Data: bytes.Repeat([]byte("d"), 100_000), AppendedAt: time.Unix(0, 1)},
		{Index: 4, Term: 7, Type: raft.LogNoop, Extensions: []byte("only-ext"), AppendedAt: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)},
		{Index: 5, Term: 8, Type: raft.LogBarrier, Data: []byte("x"), AppendedAt: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("z", 3600))},
	}
	s := openT(t, t.TempDir(), nil)
	mustStore(t, s, logs...)
	for round := range 2 {
		for _, want := range logs {
			var got raft.Log
			if err := s.GetLog(want.Index, &got); err != nil {
				t.Fatal(err)
			}
			if d := diffLog(want, &got); d != "" {
				t.Fatalf("round %d, index %d: %s", round, want.Index, d)
			}
			if got.AppendedAt.Location() != time.UTC {
				t.Errorf("AppendedAt location %v, want UTC", got.AppendedAt.Location())
			}
		}
		s = reopen(t, s)
	}
	// Decoded slices must not alias each other or the store's buffers.
	var a, b raft.Log
	if err := s.GetLog(2, &a); err != nil {
		t.Fatal(err)
	}
	a.Data[0], a.Extensions = 9, append(a.Extensions, 4)
	if err := s.GetLog(2, &b); err != nil {
		t.Fatal(err)
	}
	if d := diffLog(logs[1], &b); d != "" {
		t.Fatalf("mutating a returned log changed the store: %s", d)
	}
}

// TestDeleteRange covers raft's three kinds of deletes and the refused
// middle delete, each checked again after a reopen.
func TestDeleteRange(t *testing.T) {
	cases := []struct {
		name                  string
		min, max              uint64
		wantFirst, wantLast   uint64
		wantErr               error
		restartAt             uint64 // if set, store 3 entries from here afterwards
		wantFirst2, wantLast2 uint64
	}{
		{name: "prefix", min: 10, max: 14, wantFirst: 15, wantLast: 29},
		{name: "prefix from before first", min: 1, max: 14, wantFirst: 15, wantLast: 29},
		{name: "single first", min: 10, max: 10, wantFirst: 11, wantLast: 29},
		{name: "suffix", min: 20, max: 29, wantFirst: 10, wantLast: 19},
		{name: "suffix past last", min: 20, max: 1000, wantFirst: 10, wantLast: 19},
		{name: "single last", min: 29, max: 29, wantFirst: 10, wantLast: 28},
		{name: "whole", min: 10, max: 29, restartAt: 1001, wantFirst2: 1001, wantLast2: 1003},
		{name: "whole wider", min: 0, max: 1 << 40, restartAt: 5, wantFirst2: 5, wantLast2: 7},
		{name: "whole then same next index", min: 10, max: 29, restartAt: 30, wantFirst2: 30, wantLast2: 32},
		{name: "before log", min: 1, max: 9, wantFirst: 10, wantLast: 29},
		{name: "after log", min: 30, max: 40, wantFirst: 10, wantLast: 29},
		{name: "min greater than max", min: 20, max: 15, wantFirst: 10, wantLast: 29},
		{name: "middle", min: 15, max: 20, wantFirst: 10, wantLast: 29, wantErr: ErrMiddleRange},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openT(t, t.TempDir(), &Options{SegmentSize: 512}) // several segments
			mustStore(t, s, testLogs(10, 29, 1)...)
			err := s.DeleteRange(tc.min, tc.max)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("DeleteRange(%d, %d) = %v, want %v", tc.min, tc.max, err, tc.wantErr)
			}
			gen := func(i uint64) *raft.Log { return testLog(i, 1) }
			for range 2 {
				checkRange(t, s, tc.wantFirst, tc.wantLast, gen)
				s = reopen(t, s)
			}
			if tc.restartAt == 0 {
				// The log must still accept the next entry.
				mustStore(t, s, testLog(tc.wantLast+1, 2))
				return
			}
			mustStore(t, s, testLogs(tc.restartAt, tc.restartAt+2, 2)...)
			gen2 := func(i uint64) *raft.Log { return testLog(i, 2) }
			for range 2 {
				checkRange(t, s, tc.wantFirst2, tc.wantLast2, gen2)
				s = reopen(t, s)
			}
		})
	}
}

// TestEmptyStartAnywhere: a new log, and a log emptied by a whole delete
// (also across a reopen while empty), accept any first index; the offset is
// recovered from the records on reopen.
func TestEmptyStartAnywhere(t *testing.T) {
	s := openT(t, t.TempDir(), nil)
	mustStore(t, s, testLogs(1001, 1010, 1)...)
	checkRange(t, s, 1001, 1010, func(i uint64) *raft.Log { return testLog(i, 1) })
	s = reopen(t, s)
	checkRange(t, s, 1001, 1010, func(i uint64) *raft.Log { return testLog(i, 1) })

	if err := s.DeleteRange(1001, 1010); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s) // empty wal on disk, offset unknown
	checkRange(t, s, 0, 0, nil)
	mustStore(t, s, testLogs(50, 60, 2)...) // lower than before
	s = reopen(t, s)
	checkRange(t, s, 50, 60, func(i uint64) *raft.Log { return testLog(i, 2) })

	if err := s.DeleteRange(50, 60); err != nil {
		t.Fatal(err)
	}
	mustStore(t, s, testLogs(1<<40, 1<<40+3, 3)...) // much higher, no reopen in between
	s = reopen(t, s)
	checkRange(t, s, 1<<40, 1<<40+3, func(i uint64) *raft.Log { return testLog(i, 3) })
}

func TestStoreLogsNotContiguous(t *testing.T) {
	cases := []struct {
		name  string
		batch []*raft.Log
	}{
		{"gap after last", testLogs(12, 13, 2)},
		{"overlaps last", testLogs(5, 6, 2)},
		{"gap inside batch", []*raft.Log{testLog(6, 2), testLog(8, 2)}},
		{"reversed batch", []*raft.Log{testLog(7, 2), testLog(6, 2)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openT(t, t.TempDir(), nil)
			mustStore(t, s, testLogs(1, 5, 1)...)
			if err := s.StoreLogs(tc.batch); !errors.Is(err, ErrNotContiguous) {
				t.Fatalf("StoreLogs = %v, want ErrNotContiguous", err)
			}
			// Refused batches leave the log unchanged and writable.
			mustStore(t, s, testLog(6, 1))
			checkRange(t, s, 1, 6, func(i uint64) *raft.Log { return testLog(i, 1) })
		})
	}
}

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, nil)
	if _, err := Open(dir, &Options{Logger: quietLogger()}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openT(t, dir, nil) // released by Close
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestClosed(t *testing.T) {
	s := openT(t, t.TempDir(), nil)
	mustStore(t, s, testLog(1, 1))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	for name, err := range map[string]error{
		"StoreLog":    s.StoreLog(testLog(2, 1)),
		"GetLog":      s.GetLog(1, new(raft.Log)),
		"DeleteRange": s.DeleteRange(1, 1),
		"Set":         s.Set([]byte("k"), nil),
		"SetUint64":   s.SetUint64([]byte("k"), 1),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	if _, err := s.FirstIndex(); !errors.Is(err, ErrClosed) {
		t.Errorf("FirstIndex after Close = %v", err)
	}
	if _, err := s.Get([]byte("k")); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close = %v", err)
	}
}

// TestFailedWriteIsFatal: once a write fails, every later write fails with
// ErrFailed, reads keep working, and a reopen recovers.
func TestFailedWriteIsFatal(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(t *testing.T, s *Store)
		write   func(s *Store) error
	}{
		{
			name:    "log write",
			breakIt: func(t *testing.T, s *Store) { s.log.Close() }, // tidwall now fails every call
			write:   func(s *Store) error { return s.StoreLog(testLog(6, 1)) },
		},
		{
			name: "stable write",
			breakIt: func(t *testing.T, s *Store) {
				// A directory where the temp file goes makes the create fail.
				if err := os.Mkdir(filepath.Join(s.dir, stableFileName+".tmp"), 0o700); err != nil {
					t.Fatal(err)
				}
			},
			write: func(s *Store) error { return s.SetUint64([]byte("CurrentTerm"), 2) },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openT(t, dir, nil)
			mustStore(t, s, testLogs(1, 5, 1)...)
			if err := s.SetUint64([]byte("CurrentTerm"), 1); err != nil {
				t.Fatal(err)
			}
			tc.breakIt(t, s)
			if err := tc.write(s); !errors.Is(err, ErrFailed) {
				t.Fatalf("failing write = %v, want ErrFailed", err)
			}
			for name, err := range map[string]error{
				"StoreLogs":   s.StoreLogs(testLogs(6, 6, 1)),
				"DeleteRange": s.DeleteRange(1, 1),
				"Set":         s.Set([]byte("k"), []byte("v")),
			} {
				if !errors.Is(err, ErrFailed) {
					t.Errorf("%s after failure = %v, want ErrFailed", name, err)
				}
			}
			if v, err := s.GetUint64([]byte("CurrentTerm")); v != 1 || err != nil {
				t.Errorf("GetUint64 after failure = %d, %v; want the last durable value 1", v, err)
			}
			s.Close()
			if tc.name == "stable write" {
				os.Remove(filepath.Join(dir, stableFileName+".tmp"))
			}
			s = openT(t, dir, nil)
			checkRange(t, s, 1, 5, func(i uint64) *raft.Log { return testLog(i, 1) })
			mustStore(t, s, testLog(6, 1))
		})
	}
}

// TestStableFile: keys survive reopen; a damaged key file is refused.
func TestStableFile(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, nil)
	for i, k := range []string{"CurrentTerm", "LastVoteTerm", ""} {
		if err := s.SetUint64([]byte(k), uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("node-2")); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("empty"), nil); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s)
	if v, err := s.GetUint64([]byte("LastVoteTerm")); v != 2 || err != nil {
		t.Fatalf("GetUint64 = %d, %v", v, err)
	}
	if v, err := s.Get([]byte("LastVoteCand")); string(v) != "node-2" || err != nil {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if v, err := s.Get([]byte("empty")); len(v) != 0 || err != nil {
		t.Fatalf("Get(empty) = %q, %v", v, err)
	}
	if _, err := s.GetUint64([]byte("LastVoteCand")); err == nil {
		t.Fatal("GetUint64 of a 6-byte value succeeded")
	}
	s.Close()

	path := filepath.Join(dir, stableFileName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, &Options{Logger: quietLogger()})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open with damaged key file = %v, want ErrCorrupt naming %s", err, path)
	}
}

// TestOneFsyncPerBatch: StoreLogs issues exactly one fsync per batch when no
// segment boundary is crossed.
func TestOneFsyncPerBatch(t *testing.T) {
	s := openT(t, t.TempDir(), nil)
	before := s.syncCount()
	for i := uint64(0); i < 10; i++ {
		mustStore(t, s, testLogs(i*16+1, i*16+16, 1)...)
	}
	if got := s.syncCount() - before; got != 10 {
		t.Fatalf("10 batches issued %d fsyncs, want 10", got)
	}
}

// TestSegmentAccounting: the store's mirror of tidwall's segment cycling
// agrees with the files on disk.
func TestSegmentAccounting(t *testing.T) {
	s := openT(t, t.TempDir(), &Options{SegmentSize: 1000})
	var next uint64 = 1
	for i := range 60 {
		n := uint64(i%7 + 1)
		if i%2 == 0 {
			mustStore(t, s, testLogs(next, next+n-1, 1)...)
		} else if err := s.StoreLogsDeferred(testLogs(next, next+n-1, 1)); err != nil {
			t.Fatal(err)
		}
		next += n
		s.mu.Lock() // the syncer reads tailPath
		want, wantPath := s.tail, s.tailPath
		err := s.refreshTail()
		gotTail, gotPath := s.tail, s.tailPath
		s.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if gotTail != want {
			t.Fatalf("after batch %d: mirrored tail size %d, file size %d", i, want, gotTail)
		}
		// The syncer fsyncs the segment the mirror names: it must be the
		// one tidwall appends to.
		if gotPath != wantPath {
			t.Fatalf("after batch %d: the store names %s as the tail, the files %s", i, wantPath, gotPath)
		}
	}
	segs, _ := listSegments(s.walDir)
	if len(segs) < 5 {
		t.Fatalf("only %d segments; test does not cross boundaries", len(segs))
	}
	// Only the tail is preallocated; tidwall may reload any other segment.
	checkPrealloc(t, s, 1000, "after the last batch")
}
