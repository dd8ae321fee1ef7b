package resp

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distlock/distlock/lockapi"
)

// pipelineRecorder is a service that takes each write's turn the way the
// real one does (wait, "submit", pass on) and then finishes after a delay
// that makes later commands answer first.
type pipelineRecorder struct {
	mu        sync.Mutex
	submitted []string // keys in submission order
	finished  int
	allIn     chan struct{} // closed once wantIn writes have submitted
	wantIn    int
}

func (r *pipelineRecorder) write(ctx context.Context, key string) (uint64, error) {
	turn := lockapi.TurnFrom(ctx)
	if err := turn.Wait(ctx); err != nil {
		return 0, err
	}
	r.mu.Lock()
	r.submitted = append(r.submitted, key)
	seq := uint64(len(r.submitted))
	if len(r.submitted) == r.wantIn {
		close(r.allIn)
	}
	r.mu.Unlock()
	turn.Done()
	// A write commits only once every write of the run is in: they can
	// only all answer if they run at once.
	select {
	case <-r.allIn:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(5 * time.Second):
		return 0, fmt.Errorf("%s: the pipeline's writes did not run concurrently", key)
	}
	time.Sleep(time.Duration(r.wantIn-int(seq)) * time.Millisecond) // the last in answers first
	r.mu.Lock()
	r.finished++
	r.mu.Unlock()
	return seq, nil
}

func TestPipelinedWritesRunConcurrentlyInOrder(t *testing.T) {
	const run = 20
	rec := &pipelineRecorder{allIn: make(chan struct{}), wantIn: run + 1} // + the EVALSHA
	var infoSawFinished int
	svc := &fakeService{
		acquireFn: func(ctx context.Context, req lockapi.AcquireRequest) (lockapi.Lock, error) {
			if req.Wait > 0 {
				// A waiting acquire runs alone: nothing of the run is still pending.
				rec.mu.Lock()
				defer rec.mu.Unlock()
				if lockapi.TurnFrom(ctx) != nil {
					return lockapi.Lock{}, fmt.Errorf("a WAIT acquire ran with a turn")
				}
				return lockapi.Lock{Token: 999}, nil
			}
			tok, err := rec.write(ctx, req.Key)
			return lockapi.Lock{Token: tok}, err
		},
		releaseFn: func(ctx context.Context, req lockapi.ReleaseRequest) error {
			if lockapi.TurnFrom(ctx) != nil {
				return fmt.Errorf("a lone release ran with a turn")
			}
			return nil
		},
		infoFn: func(ctx context.Context, key string) (lockapi.Lock, error) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			infoSawFinished = rec.finished
			return lockapi.Lock{}, lockapi.ErrNotFound
		},
		doFn: func(ctx context.Context, argv [][]byte) (lockapi.Value, error) {
			tok, err := rec.write(ctx, string(argv[0]))
			return lockapi.IntValue(int64(tok)), err
		},
	}
	_, addr := startServer(t, Config{Service: svc})
	c := dialRaw(t, addr)

	var send, want strings.Builder
	for i := 0; i < run-1; i++ {
		send.WriteString(cmd("LOCK.ACQUIRE", fmt.Sprintf("k%d", i), "o", "1000"))
		fmt.Fprintf(&want, ":%d\r\n", i+1)
	}
	// A command refused before it reaches the service passes its turn on.
	send.WriteString(cmd("LOCK.ACQUIRE", "bad", "o", "notattl"))
	want.WriteString("-ERR invalid ttl: duration \"notattl\" is neither milliseconds nor a duration like 30s\r\n")
	send.WriteString(cmd("EVALSHA", "0123456789012345678901234567890123456789", "0"))
	fmt.Fprintf(&want, ":%d\r\n", run)
	send.WriteString(cmd("LOCK.ACQUIRE", "last", "o", "1000"))
	fmt.Fprintf(&want, ":%d\r\n", run+1)
	// A read runs alone, after the run has answered.
	send.WriteString(cmd("LOCK.INFO", "k0"))
	want.WriteString("*-1\r\n")
	// A lone write and a waiting acquire run without a turn.
	send.WriteString(cmd("LOCK.RELEASE", "k0", "o"))
	want.WriteString(":1\r\n")
	send.WriteString(cmd("LOCK.ACQUIRE", "w", "o", "1000", "WAIT", "10"))
	want.WriteString(":999\r\n")

	c.send(send.String())
	c.expect(want.String())

	rec.mu.Lock()
	defer rec.mu.Unlock()
	var wantOrder []string
	for i := 0; i < run-1; i++ {
		wantOrder = append(wantOrder, fmt.Sprintf("k%d", i))
	}
	wantOrder = append(wantOrder, "EVALSHA", "last")
	if got := strings.Join(rec.submitted, " "); got != strings.Join(wantOrder, " ") {
		t.Fatalf("submission order:\n got %s\nwant %s", got, strings.Join(wantOrder, " "))
	}
	if infoSawFinished != run+1 {
		t.Fatalf("LOCK.INFO ran with %d of the %d writes before it answered", infoSawFinished, run+1)
	}
}

// TestPipelineQuitStops: QUIT inside a pipeline answers OK, and nothing
// after it runs, even writes that would run concurrently.
func TestPipelineQuitStops(t *testing.T) {
	var mu sync.Mutex
	var keys []string
	svc := &fakeService{acquireFn: func(ctx context.Context, req lockapi.AcquireRequest) (lockapi.Lock, error) {
		defer lockapi.TurnFrom(ctx).Done()
		if err := lockapi.TurnFrom(ctx).Wait(ctx); err != nil {
			return lockapi.Lock{}, err
		}
		mu.Lock()
		defer mu.Unlock()
		keys = append(keys, req.Key)
		return lockapi.Lock{Token: uint64(len(keys))}, nil
	}}
	_, addr := startServer(t, Config{Service: svc})
	c := dialRaw(t, addr)
	c.send(cmd("LOCK.ACQUIRE", "a", "o", "1000") + cmd("LOCK.ACQUIRE", "b", "o", "1000") + cmd("QUIT") +
		cmd("LOCK.ACQUIRE", "c", "o", "1000") + cmd("LOCK.ACQUIRE", "d", "o", "1000"))
	c.expect(":1\r\n:2\r\n+OK\r\n")
	c.expectEOF()
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(keys, ",") != "a,b" {
		t.Fatalf("ran %v, want a,b", keys)
	}
}
