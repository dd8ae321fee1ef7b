package walstore

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// heldSync replaces the syncer's fsync for one test: each call reports on
// entered and then waits for release, and returns fail. Cleanup releases
// whatever still waits and restores the real fsync.
type heldSync struct {
	entered chan struct{}
	release chan struct{}
	fail    error
}

// holdSync holds the fsyncs of s's syncer (and of stores opened after it
// in the test). Cleanup closes s, so that no syncer still reads syncFile
// when it is restored.
func holdSync(t *testing.T, s *Store, fail error) *heldSync {
	t.Helper()
	h := &heldSync{entered: make(chan struct{}, 1), release: make(chan struct{}), fail: fail}
	syncFile = func(f *os.File) error {
		select {
		case h.entered <- struct{}{}:
		default:
		}
		<-h.release
		if h.fail != nil {
			return h.fail
		}
		return f.Sync()
	}
	t.Cleanup(func() {
		h.open()
		s.Close()
		syncFile = (*os.File).Sync
	})
	return h
}

// open lets every held and later fsync through. Idempotent.
func (h *heldSync) open() {
	select {
	case <-h.release:
	default:
		close(h.release)
	}
}

// waitEntered waits until the syncer is inside a held fsync.
func (h *heldSync) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-h.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the syncer never started an fsync")
	}
}

// waitAsync runs WaitDurable(index) in a goroutine and returns its result
// channel.
func waitAsync(s *Store, index uint64) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- s.WaitDurable(index) }()
	return ch
}

// notYet fails if ch delivers within a short while. It cannot fail
// spuriously: a correct store never delivers before the fsync is released.
func notYet(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s returned %v while the fsync is held", what, err)
	case <-time.After(50 * time.Millisecond):
	}
}

func recv(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("WaitDurable did not return")
		return nil
	}
}

// TestDeferredAppend: entries written with StoreLogsDeferred are readable at
// once and count as durable only after the syncer's fsync returns.
func TestDeferredAppend(t *testing.T) {
	s := openT(t, t.TempDir(), nil)
	mustStore(t, s, testLogs(1, 3, 1)...)
	if d := s.Durable(); d != 3 {
		t.Fatalf("Durable after StoreLogs = %d, want 3", d)
	}
	h := holdSync(t, s, nil)
	if err := s.StoreLogsDeferred(testLogs(4, 8, 1)); err != nil {
		t.Fatal(err)
	}
	checkRange(t, s, 1, 8, func(i uint64) *raft.Log { return testLog(i, 1) })
	h.waitEntered(t)
	if d := s.Durable(); d != 3 {
		t.Fatalf("Durable during the held fsync = %d, want 3", d)
	}
	if err := s.WaitDurable(3); err != nil {
		t.Fatalf("WaitDurable(3) = %v", err)
	}
	done := waitAsync(s, 8)
	notYet(t, done, "WaitDurable(8)")
	before := s.syncCount()
	h.open()
	if err := recv(t, done); err != nil {
		t.Fatalf("WaitDurable(8) = %v", err)
	}
	if d := s.Durable(); d != 8 {
		t.Fatalf("Durable = %d, want 8", d)
	}
	if s.syncCount() != before {
		t.Fatalf("fsyncs counted after the held one: %d -> %d", before, s.syncCount())
	}
}

// TestStoreLogsAfterDeferred: a synchronous append makes everything before
// it durable too, without the syncer.
func TestStoreLogsAfterDeferred(t *testing.T) {
	s := openT(t, t.TempDir(), nil)
	h := holdSync(t, s, nil)
	if err := s.StoreLogsDeferred(testLogs(1, 5, 1)); err != nil {
		t.Fatal(err)
	}
	h.waitEntered(t)
	mustStore(t, s, testLogs(6, 7, 1)...)
	if d := s.Durable(); d != 7 {
		t.Fatalf("Durable after StoreLogs = %d, want 7", d)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestDeferredFsyncFails: a failed fsync fails the store and every waiter.
func TestDeferredFsyncFails(t *testing.T) {
	s := openT(t, t.TempDir(), nil)
	broken := errors.New("disk gone")
	h := holdSync(t, s, broken)
	if err := s.StoreLogsDeferred(testLogs(1, 5, 1)); err != nil {
		t.Fatal(err)
	}
	done := waitAsync(s, 5)
	h.waitEntered(t)
	h.open()
	if err := recv(t, done); !errors.Is(err, ErrFailed) || !errors.Is(err, broken) {
		t.Fatalf("WaitDurable = %v, want ErrFailed wrapping %v", err, broken)
	}
	if d := s.Durable(); d != 0 {
		t.Fatalf("Durable = %d after a failed fsync, want 0", d)
	}
	if err := s.StoreLogs(testLogs(6, 6, 1)); !errors.Is(err, ErrFailed) {
		t.Fatalf("StoreLogs after the failure = %v, want ErrFailed", err)
	}
}

// TestDeferredTruncation: DeleteRange makes the deferred entries durable
// first and Durable follows the log's new end; a whole-log delete resets it.
func TestDeferredTruncation(t *testing.T) {
	s := openT(t, t.TempDir(), nil)
	h := holdSync(t, s, nil)
	if err := s.StoreLogsDeferred(testLogs(1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	h.waitEntered(t)
	if err := s.DeleteRange(8, 10); err != nil {
		t.Fatal(err)
	}
	if d := s.Durable(); d != 7 {
		t.Fatalf("Durable after deleting 8-10 = %d, want 7", d)
	}
	// The held fsync was of entries up to 10, on the log before the
	// truncation: when it returns it must count for nothing.
	rounds := s.rounds.Load()
	h.open()
	waitFor(t, 10*time.Second, "the syncer's held round", func() bool { return s.rounds.Load() > rounds })
	if d := s.Durable(); d != 7 {
		t.Fatalf("Durable after the stale fsync returned = %d, want 7", d)
	}
	if err := s.StoreLogsDeferred(testLogs(8, 9, 2)); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, waitAsync(s, 9)); err != nil {
		t.Fatal(err)
	}
	checkRange(t, s, 1, 9, func(i uint64) *raft.Log {
		if i >= 8 {
			return testLog(i, 2)
		}
		return testLog(i, 1)
	})
	if err := s.DeleteRange(1, 9); err != nil {
		t.Fatal(err)
	}
	if d := s.Durable(); d != 0 {
		t.Fatalf("Durable after deleting everything = %d, want 0", d)
	}
	mustStore(t, s, testLogs(100, 101, 3)...)
	if d := s.Durable(); d != 101 {
		t.Fatalf("Durable = %d, want 101", d)
	}
}

// TestDeferredCloseAndReopen: Close wakes a waiter with ErrClosed and
// flushes what was deferred; Open counts what it finds as durable.
func TestDeferredCloseAndReopen(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, nil)
	h := holdSync(t, s, nil)
	if err := s.StoreLogsDeferred(testLogs(1, 4, 1)); err != nil {
		t.Fatal(err)
	}
	h.waitEntered(t)
	beyond := waitAsync(s, 9) // an index nobody writes
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	h.open()
	if err := recv(t, closed); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := recv(t, beyond); !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitDurable past the end after Close = %v, want ErrClosed", err)
	}
	s = openT(t, dir, nil)
	checkRange(t, s, 1, 4, func(i uint64) *raft.Log { return testLog(i, 1) })
	if d := s.Durable(); d != 4 {
		t.Fatalf("Durable after Open = %d, want 4", d)
	}
}

// TestDeferredAcrossSegments: deferred batches that cross segment
// boundaries all become durable (tidwall fsyncs the segments it closes, the
// syncer the tail).
func TestDeferredAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, &Options{SegmentSize: 1000})
	var next uint64 = 1
	for i := range 40 {
		n := uint64(i%5 + 1)
		if err := s.StoreLogsDeferred(testLogs(next, next+n-1, 1)); err != nil {
			t.Fatal(err)
		}
		next += n
	}
	if err := recv(t, waitAsync(s, next-1)); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s)
	checkRange(t, s, 1, next-1, func(i uint64) *raft.Log { return testLog(i, 1) })
}
