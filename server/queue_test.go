package server

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestCloseUnderLoadAnswersEveryCaller closes a node while 200 callers
// keep writing: Close returns, and every caller returns too, the last
// write of each with a definite failure (no leader, shutting down). With raft's buffered apply queue, a
// command still queued when raft shut down used to be answered never
// (found in review: callers hung after Close).
func TestCloseUnderLoadAnswersEveryCaller(t *testing.T) {
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
					_, err := n.Do(ctx, [][]byte{[]byte("SET"), []byte(fmt.Sprint("k", g)), []byte("v")})
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
