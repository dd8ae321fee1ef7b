package walstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// recordSpans returns the [start, end) byte span of each framed record of a
// segment file.
func recordSpans(t *testing.T, data []byte) [][2]int {
	t.Helper()
	var spans [][2]int
	for pos := 0; pos < len(data); {
		size, k := binary.Uvarint(data[pos:])
		if k <= 0 {
			t.Fatalf("bad framing at %d", pos)
		}
		spans = append(spans, [2]int{pos, pos + k + int(size)})
		pos += k + int(size)
	}
	return spans
}

// TestCorruption damages the segment files of a closed store and checks that
// Open cuts a damaged tail (and only that) and refuses damage elsewhere,
// naming the file and the raft index.
func TestCorruption(t *testing.T) {
	type layout struct {
		segSize     int
		first, last uint64 // raft indexes stored after a whole-log reset
	}
	single := layout{segSize: 1 << 20, first: 1, last: 20}
	offset := layout{segSize: 1 << 20, first: 501, last: 520} // wal index != raft index
	multi := layout{segSize: 600, first: 1, last: 40}
	flip := func(at func(spans [][2]int) int, bit byte) func(*testing.T, []byte) []byte {
		return func(t *testing.T, b []byte) []byte {
			b[at(recordSpans(t, b))] ^= bit
			return b
		}
	}
	lastRec := func(sp [][2]int) int { return sp[len(sp)-1][1] - 3 }
	cases := []struct {
		name     string
		layout   layout
		seg      int // which segment file to damage: 0 = last, 1 = the one before
		damage   func(t *testing.T, b []byte) []byte
		wantLast uint64 // raft index of the last entry after recovery (0 = empty)
		refuse   string // if set, Open must fail naming this raft index
		zeros    bool   // the damage looks like preallocated space: cut without a warning
	}{
		{name: "truncated tail", layout: single, wantLast: 19,
			damage: func(t *testing.T, b []byte) []byte { return b[:len(b)-5] }},
		{name: "truncated inside length prefix", layout: single, wantLast: 19,
			damage: func(t *testing.T, b []byte) []byte {
				sp := recordSpans(t, b)
				return b[:sp[len(sp)-1][0]+1]
			}},
		{name: "zero-filled tail", layout: single, wantLast: 20, // not the preallocated size: a warning
			damage: func(t *testing.T, b []byte) []byte { return append(b, make([]byte, 4096)...) }},
		{name: "unwritten sector, later sectors of the same batch written", layout: single, wantLast: 12,
			damage: func(t *testing.T, b []byte) []byte {
				// As if records 13-20 were one batch, never acknowledged:
				// the sector where record 13 starts kept its preallocated
				// zeros, later sectors (records 15-20 intact) were written.
				sp := recordSpans(t, b)
				start := sp[12][0]
				end := (start/sectorSize + 1) * sectorSize
				if len(sp) != 20 || sp[14][0] < end {
					t.Fatalf("layout changed: record 13 at %d, 15 at %d, sector ends at %d", start, sp[14][0], end)
				}
				clear(b[start:end])
				return append(b, make([]byte, 1<<20+preallocSlack-len(b))...)
			}},
		{name: "zeroed length prefix of an early record", layout: single, refuse: "raft index 5 ",
			damage: func(t *testing.T, b []byte) []byte {
				b[recordSpans(t, b)[4][0]] = 0
				return b
			}},
		{name: "preallocated tail of a crashed store", layout: multi, wantLast: 40, zeros: true,
			damage: func(t *testing.T, b []byte) []byte { return append(b, make([]byte, 600+preallocSlack-len(b))...) }},
		{name: "zeros after the records of the segment closed before a crash", layout: multi, seg: 1, wantLast: 40, zeros: true,
			damage: func(t *testing.T, b []byte) []byte { return append(b, make([]byte, 600+preallocSlack-len(b))...) }},
		{name: "zero-filled torn record", layout: single, wantLast: 19,
			damage: func(t *testing.T, b []byte) []byte {
				sp := recordSpans(t, b)
				clear(b[sp[len(sp)-1][0]+2:])
				return b
			}},
		{name: "garbage tail", layout: single, wantLast: 20,
			damage: func(t *testing.T, b []byte) []byte { return append(b, 3, 'z', 'z', 'z', 0xff, 0x01, 0x02) }},
		{name: "flipped bit in last record", layout: single, wantLast: 19, damage: flip(lastRec, 0x10)},
		{name: "flipped bit in last record after reset", layout: offset, wantLast: 519, damage: flip(lastRec, 0x01)},
		{name: "flipped bit in last segment", layout: multi, wantLast: 39, damage: flip(lastRec, 0x04)},
		{name: "only record of new log torn", layout: layout{segSize: 1 << 20, first: 7, last: 7}, wantLast: 0,
			damage: func(t *testing.T, b []byte) []byte { return b[:len(b)-1] }},
		{name: "flipped bit in early record", layout: single, refuse: "raft index 3 ",
			damage: flip(func(sp [][2]int) int { return sp[2][1] - 1 }, 0x01)},
		{name: "flipped bit in early record after reset", layout: offset, refuse: "raft index 503 ",
			damage: flip(func(sp [][2]int) int { return sp[2][0] + 10 }, 0x80)},
		{name: "flipped bit in first record", layout: single, refuse: "raft index 1 ",
			damage: flip(func(sp [][2]int) int { return sp[0][0] + 3 }, 0x02)},
		{name: "flipped bit in length prefix", layout: single, refuse: "raft index 5 ",
			damage: flip(func(sp [][2]int) int { return sp[4][0] }, 0x01)},
		{name: "flipped bit in second-to-last record", layout: single, refuse: "raft index 19 ",
			damage: flip(func(sp [][2]int) int { return sp[18][1] - 1 }, 0x40)},
		{name: "flipped bit in earlier segment", layout: multi, seg: 1, refuse: "raft index ",
			damage: flip(lastRec, 0x01)},
		{name: "truncated earlier segment", layout: multi, seg: 1, refuse: "raft index ",
			damage: func(t *testing.T, b []byte) []byte { return b[:len(b)-2] }},
		{name: "zeros in place of an earlier segment's last record", layout: multi, seg: 1, refuse: "raft index ",
			damage: func(t *testing.T, b []byte) []byte {
				sp := recordSpans(t, b)
				clear(b[sp[len(sp)-1][0]:])
				return b
			}},
		{name: "zeros then a byte after an earlier segment's records", layout: multi, seg: 1, refuse: "raft index ",
			damage: func(t *testing.T, b []byte) []byte { return append(b, 0, 0, 0, 7) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			lay := tc.layout
			s := openT(t, dir, &Options{SegmentSize: lay.segSize})
			if lay.first != 1 {
				mustStore(t, s, testLogs(1, 10, 9)...)
				if err := s.DeleteRange(1, 10); err != nil {
					t.Fatal(err)
				}
			}
			for i := lay.first; i <= lay.last; i += 4 {
				mustStore(t, s, testLogs(i, minU64(i+3, lay.last), 1)...)
			}
			s.Close()

			segs, err := listSegments(s.walDir)
			if err != nil || len(segs) < tc.seg+1 {
				t.Fatalf("segments %v, %v", segs, err)
			}
			if tc.layout == multi && len(segs) < 3 {
				t.Fatalf("multi layout has %d segments", len(segs))
			}
			if fi, err := os.Stat(segs[len(segs)-1].path); err != nil || fi.Size() == 0 {
				t.Fatalf("layout leaves an empty last segment (%v); change its sizes", err)
			}
			path := segs[len(segs)-1-tc.seg].path
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.damage(t, b), 0o640); err != nil {
				t.Fatal(err)
			}

			var logs bytes.Buffer
			opts := &Options{SegmentSize: lay.segSize, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			s2, err := Open(dir, opts)
			if tc.refuse != "" {
				if err == nil {
					s2.Close()
					t.Fatal("Open succeeded, want refusal")
				}
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.refuse) {
					t.Fatalf("Open error %q: want ErrCorrupt naming %s and %q", err, path, tc.refuse)
				}
				t.Logf("refused as expected: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			t.Cleanup(func() { s2.Close() })
			if got := strings.Contains(logs.String(), "cut torn tail"); got == tc.zeros {
				t.Errorf("cut of damage logged: %v, want %v; log output: %s", got, !tc.zeros, logs.String())
			}
			want := func(i uint64) *raft.Log { return testLog(i, 1) }
			first := lay.first
			if tc.wantLast == 0 {
				first = 0
			}
			checkRange(t, s2, first, tc.wantLast, want)
			// The repaired log accepts the next entry and stays clean.
			next := tc.wantLast + 1
			if tc.wantLast == 0 {
				next, first = 77, 77
			}
			mustStore(t, s2, testLog(next, 1))
			s3 := reopen(t, s2)
			checkRange(t, s3, first, next, want)
		})
	}
}

// TestGetLogDetectsCorruption: damage made while the store is open is
// reported by GetLog instead of returning altered data.
func TestGetLogDetectsCorruption(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, &Options{SegmentSize: 400})
	mustStore(t, s, testLogs(1, 30, 1)...)
	segs, err := listSegments(s.walDir)
	if err != nil || len(segs) < 2 {
		t.Fatalf("segments %v, %v", segs, err)
	}
	// Damage the first (not cached: tidwall caches the tail and recently
	// read segments) segment's second record.
	b, err := os.ReadFile(segs[0].path)
	if err != nil {
		t.Fatal(err)
	}
	sp := recordSpans(t, b)
	b[sp[1][1]-1] ^= 0x01
	if err := os.WriteFile(segs[0].path, b, 0o640); err != nil {
		t.Fatal(err)
	}
	var got raft.Log
	err = s.GetLog(2, &got)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), segs[0].path) || !strings.Contains(err.Error(), "raft index 2") {
		t.Fatalf("GetLog of damaged record = %v, want ErrCorrupt naming the file and index", err)
	}
	if got.Index != 0 || got.Data != nil {
		t.Fatalf("GetLog filled out with %+v despite the error", got)
	}
	if err := s.GetLog(1, &got); err != nil {
		t.Fatalf("GetLog of intact record: %v", err)
	}
}
