package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/raftfsm"
)

// queueWaiter starts a waiting acquire of key by owner and returns its
// outcome channel once it is queued.
func queueWaiter(t *testing.T, ctx context.Context, n *Node, key, owner string) <-chan error {
	t.Helper()
	before := n.waits.count(key)
	done := make(chan error, 1)
	go func() {
		l, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: key, Owner: owner, TTL: time.Minute, Wait: 5 * time.Second})
		if err == nil && l.Owner != owner {
			err = errors.New("granted to " + l.Owner)
		}
		done <- err
	}()
	waitFor(t, 2*time.Second, owner+" to queue", func() bool { return n.waits.count(key) == before+1 })
	return done
}

// TestReleaseHandsOffInOneEntry: a release with a caller waiting grants it
// the lock in the release's own raft entry: one entry for the handover,
// and the grant's token is that entry's index.
func TestReleaseHandsOffInOneEntry(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ctx := ctxT(t)
	a, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	done := queueWaiter(t, ctx, n, "k", "b")
	before := n.raft.LastIndex()
	if err := n.Release(ctx, lockapi.ReleaseRequest{Key: "k", Owner: "a", Token: a.Token}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b, err := n.Info(ctx, "k")
	if err != nil || b.Owner != "b" {
		t.Fatalf("after the handover: %+v, %v", b, err)
	}
	if b.Token != before+1 || n.raft.LastIndex() != before+1 {
		t.Fatalf("handover took entries %d..%d with token %d, want one entry %d", before+1, n.raft.LastIndex(), b.Token, before+1)
	}
}

// TestRefusedReleaseKeepsWaiterQueued: a release that is refused (wrong
// token) hands nothing; the waiter stays at the head and is served by the
// holder's real release.
func TestRefusedReleaseKeepsWaiterQueued(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ctx := ctxT(t)
	a, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	done := queueWaiter(t, ctx, n, "k", "b")
	later := queueWaiter(t, ctx, n, "k", "c")
	if err := n.Release(ctx, lockapi.ReleaseRequest{Key: "k", Owner: "a", Token: a.Token + 100}); !errors.Is(err, lockapi.ErrNotHeld) {
		t.Fatalf("release with a wrong token: %v", err)
	}
	if got := n.waits.count("k"); got != 2 {
		t.Fatalf("%d waiters after a refused release, want 2", got)
	}
	if err := n.Release(ctx, lockapi.ReleaseRequest{Key: "k", Owner: "a", Token: a.Token}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("head waiter: %v", err)
	}
	if l, err := n.Info(ctx, "k"); err != nil || l.Owner != "b" || l.Waiters != 1 {
		t.Fatalf("after the release: %+v, %v (want b holding, c waiting)", l, err)
	}
	select {
	case err := <-later:
		t.Fatalf("second waiter served before b released: %v", err)
	default:
	}
}

// TestHandoffToDepartedCallerIsReleased: a lock handed to a caller that
// went away at that moment is released at once, not held until its TTL.
func TestHandoffToDepartedCallerIsReleased(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ctx := ctxT(t)
	res, err := n.apply(ctx, raftfsm.Command{Op: raftfsm.OpAcquire, Key: "k", Owner: "gone", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	w := &waiter{owner: "gone", ttl: time.Minute}
	if _, err := n.takeHandoff(gone, "k", w, handoff{res: raftfsm.Result{Granted: res.Lock}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("handoff to a departed caller: %v", err)
	}
	waitFor(t, 5*time.Second, "the orphaned lock to be released", func() bool {
		_, err := n.Info(ctx, "k")
		return errors.Is(err, lockapi.ErrNotFound)
	})
}
