package walstore

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// TestDifferential runs random sequences of the operations raft issues
// (contiguous store batches, prefix/suffix/whole deletes, restart at any
// index after a whole delete, reopen) against both the store and
// raft.NewInmemStore, and requires identical FirstIndex, LastIndex and GetLog
// results (all fields, and the identical error) after every step.
func TestDifferential(t *testing.T) {
	const sequences, opsPerSeq = 2000, 25
	sd := seed(t)
	for seq := range sequences {
		rng := rand.New(rand.NewPCG(sd, uint64(seq)))
		var trace []string
		fail := func(format string, a ...any) {
			t.Helper()
			t.Fatalf("seed %d sequence %d: %s\nops:\n  %s", sd, seq, fmt.Sprintf(format, a...), strings.Join(trace, "\n  "))
		}
		// Small segments so that deletes and appends cross segment files.
		s := openT(t, t.TempDir(), &Options{NoSync: true, SegmentSize: 256 + rng.IntN(4096)})
		ref := raft.NewInmemStore()
		gen := uint64(0)
		for range opsPerSeq {
			first, _ := ref.FirstIndex()
			last, _ := ref.LastIndex()
			empty := first == 0 && last == 0
			var err, refErr error
			switch p := rng.IntN(100); {
			case p < 55 || empty:
				from := last + 1
				if empty {
					from = 1 + rng.Uint64N(1000)
					if rng.IntN(4) == 0 {
						from += 1 << 33
					}
				}
				gen++
				logs := testLogs(from, from+rng.Uint64N(8), gen)
				trace = append(trace, fmt.Sprintf("StoreLogs(%d..%d)", from, logs[len(logs)-1].Index))
				err, refErr = s.StoreLogs(logs), ref.StoreLogs(logs)
			case p < 67:
				k := first + rng.Uint64N(last-first+1)
				lo := first - minU64(first-1, rng.Uint64N(3))
				trace = append(trace, fmt.Sprintf("DeleteRange(%d, %d) prefix", lo, k))
				err, refErr = s.DeleteRange(lo, k), ref.DeleteRange(lo, k)
			case p < 77:
				k := first + rng.Uint64N(last-first+1)
				hi := last + rng.Uint64N(3)
				trace = append(trace, fmt.Sprintf("DeleteRange(%d, %d) suffix", k, hi))
				err, refErr = s.DeleteRange(k, hi), ref.DeleteRange(k, hi)
			case p < 82:
				lo, hi := first-minU64(first-1, rng.Uint64N(3)), last+rng.Uint64N(3)
				trace = append(trace, fmt.Sprintf("DeleteRange(%d, %d) whole", lo, hi))
				err, refErr = s.DeleteRange(lo, hi), ref.DeleteRange(lo, hi)
			case p < 90:
				trace = append(trace, "reopen")
				s = reopen(t, s)
			default:
				i := first + rng.Uint64N(last-first+3) - 1
				trace = append(trace, fmt.Sprintf("GetLog(%d)", i))
			}
			if err != refErr {
				fail("error %v, reference %v", err, refErr)
			}
			compareStores(fail, s, ref)
		}
		s.Close()
	}
}

// compareStores requires s and ref to answer FirstIndex, LastIndex and GetLog
// (one below first to one above last) identically.
func compareStores(fail func(string, ...any), s *Store, ref *raft.InmemStore) {
	f, err := s.FirstIndex()
	rf, _ := ref.FirstIndex()
	if f != rf || err != nil {
		fail("FirstIndex = %d, %v; reference %d", f, err, rf)
	}
	l, err := s.LastIndex()
	rl, _ := ref.LastIndex()
	if l != rl || err != nil {
		fail("LastIndex = %d, %v; reference %d", l, err, rl)
	}
	lo := rf
	if lo > 0 {
		lo--
	}
	for i := lo; i <= rl+1; i++ {
		var got, want raft.Log
		err, refErr := s.GetLog(i, &got), ref.GetLog(i, &want)
		if err != refErr {
			fail("GetLog(%d) = %v, reference %v", i, err, refErr)
		}
		if err == nil {
			if d := diffLog(&want, &got); d != "" {
				fail("GetLog(%d): %s", i, d)
			}
		}
	}
}
