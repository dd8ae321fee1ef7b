package server

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/distlock/distlock/lockapi"
)

// TestCloseUnderLoadAnswersEveryCaller closes a node while 200 callers
// keep writing, or reading: Close returns, and every caller returns too,
// the last command of each with a definite failure (no leader, shutting
// down). raft's apply queue and its leader-verify queue are buffered, and
// a future still queued when raft shut down used to be answered never
// (found in review: callers hung after Close).
func TestCloseUnderLoadAnswersEveryCaller(t *testing.T) {
	errNoQuorum := fmt.Errorf("%w: cluster info shows no quorum", lockapi.ErrNoLeader)
	for _, tc := range []struct {
		name string
		call func(ctx context.Context, n *Node, g int) error
	}{
		{"writes", func(ctx context.Context, n *Node, g int) error {
			_, err := n.Do(ctx, [][]byte{[]byte("SET"), []byte(fmt.Sprint("k", g)), []byte("v")})
			return err
		}},
		{"linearizable reads", func(ctx context.Context, n *Node, g int) error {
			_, err := n.Do(ctx, [][]byte{[]byte("GET"), []byte(fmt.Sprint("k", g))})
			return err
		}},
		{"cluster info", func(ctx context.Context, n *Node, _ int) error {
			info, err := n.ClusterInfo(ctx)
			if err == nil && !info.HasQuorum {
				err = errNoQuorum // the leader confirms its quorum with VerifyLeader
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { closeUnderLoad(t, tc.call) })
	}
}

func closeUnderLoad(t *testing.T, call func(ctx context.Context, n *Node, g int) error) {
	for round := range 5 {
		n := startNode(t, t.TempDir(), nil)
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		for g := range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					err := call(ctx, n, g)
					cancel()
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		time.Sleep(200 * time.Millisecond)
		closed := make(chan struct{})
		go func() { n.Close(); close(closed) }()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		for what, ch := range map[string]chan struct{}{"Close": closed, "every caller": done} {
			select {
			case <-ch:
			case <-time.After(15 * time.Second):
				t.Fatalf("round %d: %s did not return after Close", round, what)
			}
		}
		close(errs)
		for err := range errs {
			if !definiteFailure(err) {
				t.Fatalf("round %d: a caller got %v, want a definite failure (nothing was left half done)", round, err)
			}
		}
	}
}
