package walstore

import (
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/raft"
)

// Deferred appends. A raft leader may write its own entries to disk while it
// sends them to its followers (Raft thesis, section 10.2.1), as long as
// nothing counts its copy as durable before it is. [Store.StoreLogsDeferred]
// writes a batch and returns before the fsync; a goroutine of the store (the
// syncer) fsyncs the tail segment behind it, one fsync for everything
// written by then. [Store.Durable] says how far the log is durable and
// [Store.WaitDurable] waits for it. [Store.StoreLogs] still returns only
// once its batch, and everything written before it, is durable.
//
// Only the tail segment can hold bytes that are not yet durable: tidwall
// fsyncs a segment when it closes it. A truncation first makes everything
// durable (syncNow) and bumps gen, so that a sync in flight, which may
// address a file that the truncation replaced, advances nothing.

// syncFile fsyncs the tail segment for the syncer; tests replace it to hold
// or fail the fsync.
var syncFile = (*os.File).Sync

// StoreLogsDeferred appends logs like [Store.StoreLogs] but returns before
// they are fsynced: they are durable once [Store.Durable] reaches their
// last index. GetLog reads them at once. A failed fsync fails the store
// ([ErrFailed]) and wakes every [Store.WaitDurable].
func (s *Store) StoreLogsDeferred(logs []*raft.Log) error {
	return s.storeLogs(logs, false)
}

// Durable returns the raft index through which no entry waits for an
// fsync: every entry of the log up to it is on disk. It is 0 for an empty
// log and may trail LastIndex only after StoreLogsDeferred.
func (s *Store) Durable() uint64 { return s.durable.Load() }

// WaitDurable waits until Durable reaches index. It returns the store's
// failure ([ErrFailed]) if a write or fsync failed, or [ErrClosed] once the
// store is closed, whichever comes first.
func (s *Store) WaitDurable(index uint64) error {
	for {
		if s.durable.Load() >= index {
			return nil
		}
		s.dmu.Lock()
		wake := s.dwake
		s.dmu.Unlock()
		// Checked again after taking wake: an advance from here on closes it.
		switch {
		case s.durable.Load() >= index:
			return nil
		case s.failure() != nil:
			return s.failure()
		case s.isClosed.Load():
			return ErrClosed
		}
		<-wake
	}
}

// Sync makes every entry written so far durable before it returns.
func (s *Store) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	return s.syncNow()
}

// settle finishes an append of entries up to s.last: with sync it fsyncs
// them (and whatever was deferred before), else it hands them to the
// syncer. s.mu must be held.
func (s *Store) settle(sync bool) error {
	if !sync {
		select {
		case s.kick <- struct{}{}:
		default: // a kick is pending: the syncer will see s.last
		}
		return nil
	}
	return s.syncNow()
}

// syncNow fsyncs the tail segment if an entry waits for it. s.mu must be
// held.
func (s *Store) syncNow() error {
	if s.empty || s.durable.Load() >= s.last {
		return nil
	}
	if !s.opts.NoSync {
		s.syncs.Add(1)
		if err := s.log.Sync(); err != nil {
			return s.fail(fmt.Errorf("fsync raft indexes up to %d: %w", s.last, err))
		}
	}
	s.setDurable(s.last)
	return nil
}

// setDurable raises Durable to index and wakes the waiters. s.mu must be
// held (every writer of durable holds it; readers need not).
func (s *Store) setDurable(index uint64) {
	if index <= s.durable.Load() {
		return
	}
	s.durable.Store(index)
	s.wakeDurable()
}

// wakeDurable wakes every WaitDurable to look again.
func (s *Store) wakeDurable() {
	s.dmu.Lock()
	if s.dwake != nil {
		close(s.dwake)
	}
	s.dwake = make(chan struct{})
	s.dmu.Unlock()
}

// findTail records the path of the tail segment, after Open, a segment
// cycle or a truncation. s.mu must be held.
func (s *Store) findTail() error {
	segs, err := listSegments(s.walDir)
	if err != nil {
		return err
	}
	if len(segs) == 0 {
		return fmt.Errorf("walstore: no segment in %s", s.walDir)
	}
	s.tailPath = segs[len(segs)-1].path
	return nil
}

// startSyncer makes what Open found durable (a process that stopped before
// its fsyncs leaves entries, and the name of a segment it had just
// created, in the page cache, where a machine crash could still lose them)
// and starts the syncer.
func (s *Store) startSyncer() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wakeDurable()
	if err := s.findTail(); err != nil {
		return err
	}
	if err := s.syncDir(s.walDir); err != nil {
		return err
	}
	if err := s.syncNow(); err != nil {
		return err
	}
	s.kick = make(chan struct{}, 1)
	s.stopSync = make(chan struct{})
	s.syncDone = make(chan struct{})
	go s.syncLoop()
	return nil
}

// stopSyncer stops the syncer and waits for it. Idempotent.
func (s *Store) stopSyncer() {
	s.closeSync.Do(func() {
		if s.stopSync != nil {
			close(s.stopSync)
			<-s.syncDone
		}
	})
}

// syncLoop is the syncer: on each kick it fsyncs the tail segment through
// its own descriptor (fsync flushes the file, whichever descriptor wrote),
// outside s.mu, so that appends and reads go on meanwhile.
func (s *Store) syncLoop() {
	defer close(s.syncDone)
	var tail tailFile
	defer tail.close()
	for {
		select {
		case <-s.kick:
		case <-s.stopSync:
			return
		}
		s.mu.Lock()
		target, gen, path := s.last, s.gen, s.tailPath
		idle := s.closed || s.empty || s.failure() != nil || s.durable.Load() >= target
		s.mu.Unlock()
		if idle {
			continue
		}
		var err error
		if !s.opts.NoSync {
			time.Sleep(s.opts.DeferredSyncDelay)
			s.syncs.Add(1)
			err = tail.sync(path, gen)
		}
		s.mu.Lock()
		switch {
		case err != nil && gen == s.gen && !s.closed:
			s.fail(fmt.Errorf("fsync raft indexes up to %d: %w", target, err))
		case err == nil && gen == s.gen:
			s.setDurable(target)
		}
		s.rounds.Add(1)
		s.mu.Unlock()
	}
}

// tailFile is the syncer's own descriptor of the tail segment.
type tailFile struct {
	f    *os.File
	path string
	gen  uint64
}

// sync fsyncs the segment at path, as of truncation generation gen,
// opening it again when either changed (a truncation may replace the file
// under the same name).
func (t *tailFile) sync(path string, gen uint64) error {
	if t.f == nil || t.path != path || t.gen != gen {
		t.close()
		f, err := os.OpenFile(path, os.O_RDONLY, 0)
		if err != nil {
			return err
		}
		t.f, t.path, t.gen = f, path, gen
	}
	return syncFile(t.f)
}

func (t *tailFile) close() {
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
}
