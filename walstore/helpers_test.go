package walstore

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		os.Exit(crashChild(dir))
	}
	os.Exit(m.Run())
}

// quietLogger discards store logs unless -v is given.
func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// openT opens a store in dir and closes it at cleanup.
func openT(t testing.TB, dir string, opts *Options) *Store {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	if opts.Logger == nil {
		o := *opts
		o.Logger = quietLogger()
		opts = &o
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// reopen closes s and opens the same directory with the same options.
func reopen(t testing.TB, s *Store) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	o := s.opts
	return openT(t, s.dir, &o)
}

// testLog returns a log entry whose fields are all derived from idx and gen.
func testLog(idx, gen uint64) *raft.Log {
	r := rand.New(rand.NewPCG(idx, gen))
	l := &raft.Log{
		Index:      idx,
		Term:       gen,
		Type:       raft.LogType(r.IntN(6)),
		AppendedAt: time.Unix(1_700_000_000+int64(idx), int64(r.IntN(1e9))).UTC(),
	}
	if n := r.IntN(64); n > 0 {
		l.Data = []byte(fmt.Sprintf("%d/%d/%s", idx, gen, bytes.Repeat([]byte{'x'}, n)))
	}
	if r.IntN(4) == 0 {
		l.Extensions = []byte("ext-" + strconv.FormatUint(idx, 10))
	}
	return l
}

func testLogs(from, to, gen uint64) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, testLog(i, gen))
	}
	return out
}

// diffLog describes how got differs from want ("" if equal). Data and
// Extensions compare by content (nil == empty), AppendedAt with Equal.
func diffLog(want, got *raft.Log) string {
	switch {
	case want.Index != got.Index:
		return fmt.Sprintf("Index %d, want %d", got.Index, want.Index)
	case want.Term != got.Term:
		return fmt.Sprintf("Term %d, want %d", got.Term, want.Term)
	case want.Type != got.Type:
		return fmt.Sprintf("Type %v, want %v", got.Type, want.Type)
	case !bytes.Equal(want.Data, got.Data):
		return fmt.Sprintf("Data %q, want %q", got.Data, want.Data)
	case !bytes.Equal(want.Extensions, got.Extensions):
		return fmt.Sprintf("Extensions %q, want %q", got.Extensions, want.Extensions)
	case !want.AppendedAt.Equal(got.AppendedAt):
		return fmt.Sprintf("AppendedAt %v, want %v", got.AppendedAt, want.AppendedAt)
	}
	return ""
}

func mustStore(t testing.TB, s raft.LogStore, logs ...*raft.Log) {
	t.Helper()
	if err := s.StoreLogs(logs); err != nil {
		t.Fatalf("StoreLogs(%d..): %v", logs[0].Index, err)
	}
}

// checkRange asserts that s holds exactly [first, last] (0, 0 = empty) and
// that every entry equals want(i).
func checkRange(t testing.TB, s raft.LogStore, first, last uint64, want func(uint64) *raft.Log) {
	t.Helper()
	f, err := s.FirstIndex()
	if err != nil || f != first {
		t.Fatalf("FirstIndex = %d, %v; want %d", f, err, first)
	}
	l, err := s.LastIndex()
	if err != nil || l != last {
		t.Fatalf("LastIndex = %d, %v; want %d", l, err, last)
	}
	if first == 0 && last == 0 {
		return
	}
	for i := first; i <= last; i++ {
		var got raft.Log
		if err := s.GetLog(i, &got); err != nil {
			t.Fatalf("GetLog(%d): %v", i, err)
		}
		if d := diffLog(want(i), &got); d != "" {
			t.Fatalf("GetLog(%d): %s", i, d)
		}
	}
	for _, i := range []uint64{first - 1, last + 1} {
		if i == 0 && first == 0 {
			continue
		}
		if err := s.GetLog(i, new(raft.Log)); err != raft.ErrLogNotFound {
			t.Fatalf("GetLog(%d) outside [%d, %d] = %v, want raft.ErrLogNotFound", i, first, last, err)
		}
	}
}

// seed returns the seed for a randomized test: $WALSTORE_SEED if set, else
// the clock. It is logged so that a failure can be replayed.
func seed(t testing.TB) uint64 {
	t.Helper()
	v := uint64(time.Now().UnixNano())
	if s := os.Getenv("WALSTORE_SEED"); s != "" {
		var err error
		if v, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("WALSTORE_SEED: %v", err)
		}
	}
	t.Logf("seed %d (replay with WALSTORE_SEED=%d)", v, v)
	return v
}

// waitFor polls cond every 10ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
