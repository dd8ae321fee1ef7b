package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/distlock/distlock/lockapi"
)

func TestFrameRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		kind byte
		id   uint64
		body []byte
	}{
		{"request", frameRequest, 1, []byte(`{"op":"acquire"}`)},
		{"empty cancel", frameCancel, 1<<64 - 1, nil},
		{"large response", frameResponse, 42, bytes.Repeat([]byte("x"), 100_000)},
	}
	var wire []byte
	for _, c := range cases {
		wire = appendFrame(wire, c.kind, c.id, c.body)
	}
	r := bytes.NewReader(wire)
	for _, c := range cases {
		kind, id, body, err := readFrame(r)
		if err != nil || kind != c.kind || id != c.id || !bytes.Equal(body, c.body) {
			t.Fatalf("%s: got kind %d id %d body %d bytes, %v", c.name, kind, id, len(body), err)
		}
	}
	if _, _, _, err := readFrame(r); err == nil {
		t.Fatal("read past the last frame")
	}
}

func TestReadFrameRejectsBadLengths(t *testing.T) {
	cases := map[string][]byte{
		"shorter than a header": {0, 0, 0, 3, 1, 0, 0},
		"over maxFrame":         {0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0, 0, 0, 0, 1},
		"truncated body":        appendFrame(nil, frameRequest, 1, []byte("abcdef"))[:15],
	}
	for name, wire := range cases {
		if _, _, _, err := readFrame(bytes.NewReader(wire)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestReadFrameAllocatesWhatArrives: a frame that announces nearly
// maxFrame bytes and sends a few makes readFrame allocate about what came,
// not what was announced.
func TestReadFrameAllocatesWhatArrives(t *testing.T) {
	wire := binary.BigEndian.AppendUint32(nil, maxFrame)
	wire = append(wire, frameRequest, 0, 0, 0, 0, 0, 0, 0, 1)
	wire = append(wire, bytes.Repeat([]byte("x"), 200_000)...) // then EOF
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, _, _, err := readFrame(bytes.NewReader(wire)); err == nil {
		t.Fatal("a truncated frame was read")
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
		t.Fatalf("reading 200 kB of a %d-byte frame allocated %d bytes", maxFrame, got)
	}
	// Sizes around the chunk and doubling boundaries read back intact.
	for _, size := range []int{0, 1, bodyChunk - 1, bodyChunk, bodyChunk + 1, 3*bodyChunk + 7, 1 << 20} {
		body := bytes.Repeat([]byte{byte(size)}, size)
		_, _, got, err := readFrame(bytes.NewReader(appendFrame(nil, frameResponse, 9, body)))
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("size %d: got %d bytes, %v", size, len(got), err)
		}
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(appendFrame(nil, frameRequest, 7, []byte(`{"op":"info","key":"k"}`)))
	f.Add(appendFrame(nil, frameCancel, 7, nil))
	f.Add([]byte{0, 0, 0, 9, 2})
	f.Fuzz(func(t *testing.T, wire []byte) {
		r := bytes.NewReader(wire)
		for i := 0; i < 1000; i++ {
			kind, id, body, err := readFrame(r)
			if err != nil {
				return
			}
			again := appendFrame(nil, kind, id, body)
			if k2, id2, b2, err := readFrame(bytes.NewReader(again)); err != nil || k2 != kind || id2 != id || !bytes.Equal(b2, body) {
				t.Fatalf("frame does not round-trip: %v", err)
			}
		}
	})
}

// fakeLeader accepts one forwarding connection and hands each request
// frame to answer, which may reply or not.
func fakeLeader(t *testing.T, answer func(w *frameWriter, kind byte, id uint64, body []byte)) (addr string, closeConn func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		conns <- c
		br := bufio.NewReader(c)
		if b, err := br.ReadByte(); err != nil || b != forwardMagic {
			c.Close()
			return
		}
		w := newFrameWriter(c)
		defer w.stop()
		for {
			kind, id, body, err := readFrame(br)
			if err != nil {
				return
			}
			answer(w, kind, id, body)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), func() {
		select {
		case c := <-conns:
			c.Close()
		case <-time.After(5 * time.Second):
			t.Error("no connection to close")
		}
	}
}

func TestMuxAnswersOutOfOrderAndFailsOnClose(t *testing.T) {
	var mu sync.Mutex
	var held []uint64
	addr, closeConn := fakeLeader(t, func(w *frameWriter, kind byte, id uint64, body []byte) {
		if kind != frameRequest {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if string(body) == "hold" {
			held = append(held, id)
			return
		}
		w.send(frameResponse, id, append([]byte("re:"), body...))
	})
	var f forwarder
	t.Cleanup(f.close)
	m, err := f.conn(context.Background(), addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, heldCh, err := m.start(frameRequest, []byte("hold"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		_, ch, err := m.start(frameRequest, fmt.Appendf(nil, "%d", i))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-ch:
			if r.err != nil || string(r.body) != fmt.Sprintf("re:%d", i) {
				t.Fatalf("answer %d: %q, %v", i, r.body, r.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no answer to %d while an earlier request is held", i)
		}
	}
	if m2, _ := f.conn(context.Background(), addr, time.Second); m2 != m {
		t.Fatal("a second connection was dialed to the same leader")
	}
	closeConn()
	select {
	case r := <-heldCh:
		if r.err == nil {
			t.Fatalf("held request answered %q after the leader closed", r.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a request in flight was not failed when its connection closed")
	}
	waitFor(t, 5*time.Second, "the closed connection to be forgotten", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.conns[addr] == nil
	})
}

// TestForwardedWaitCancelledLeavesQueue: a caller waiting through a
// follower that gives up is taken out of the leader's queue at once (the
// cancel frame), so it is not granted a lock nobody will use.
func TestForwardedWaitCancelledLeavesQueue(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	lead, f := c.leader(), c.follower()
	if _, err := c.nodes[lead].Acquire(ctxT(t), lockapi.AcquireRequest{Key: "k", Owner: "a", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	done := make(chan error, 1)
	go func() {
		_, err := c.nodes[f].Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "b", TTL: time.Second, Wait: 30 * time.Second})
		done <- err
	}()
	waitFor(t, 5*time.Second, "the forwarded waiter to queue on the leader", func() bool { return c.nodes[lead].waits.count("k") == 1 })
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a cancelled waiter was granted the lock")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelling the caller did not end its forwarded wait")
	}
	waitFor(t, 5*time.Second, "the leader to drop the waiter", func() bool { return c.nodes[lead].waits.count("k") == 0 })
}

// TestForwardingManyConcurrent: concurrent requests through a follower
// share one connection and each gets its own answer.
func TestForwardingManyConcurrent(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	f := c.follower()
	ctx := ctxT(t)
	const workers = 64
	tokens := make([]uint64, workers)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("k%d", i)
			l, err := c.nodes[f].Acquire(ctx, lockapi.AcquireRequest{Key: key, Owner: "o", TTL: time.Minute})
			if err != nil || l.Key != key {
				errs <- fmt.Errorf("acquire %s: %+v, %w", key, l, err)
				return
			}
			tokens[i] = l.Token
			if err := c.nodes[f].Release(ctx, lockapi.ReleaseRequest{Key: key, Owner: "o", Token: l.Token}); err != nil {
				errs <- fmt.Errorf("release %s: %w", key, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := map[uint64]bool{}
	for _, tok := range tokens {
		if seen[tok] {
			t.Fatalf("token %d granted twice", tok)
		}
		seen[tok] = true
	}
	c.nodes[f].fwd.mu.Lock()
	n := len(c.nodes[f].fwd.conns)
	c.nodes[f].fwd.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d forwarding connections, want 1", n)
	}
	if _, err := c.nodes[f].Info(ctx, "k0"); !errors.Is(err, lockapi.ErrNotFound) {
		t.Fatalf("info of a released key: %v", err)
	}
}

// TestMuxConnDeadOnArrivalIsForgotten: a connection the leader closes at
// once is never kept, so the next request dials anew instead of failing
// on a dead connection forever.
func TestMuxConnDeadOnArrivalIsForgotten(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	var f forwarder
	defer f.close()
	ctx := ctxT(t)
	for i := range 300 {
		if _, err := f.conn(ctx, addr, time.Second); err != nil {
			continue // refused before it was registered: fine
		}
		waitFor(t, 2*time.Second, fmt.Sprintf("dead connection %d to be forgotten", i), func() bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.conns[addr] == nil
		})
	}
}

// TestForwarderConnHonoursContext: callers waiting for a dial give up when
// their context ends.
func TestForwarderConnHonoursContext(t *testing.T) {
	var f forwarder
	defer f.close()
	call := &dialCall{done: make(chan struct{})}
	f.dialing = map[string]*dialCall{"10.0.0.1:1": call} // a dial that never ends
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := f.conn(ctx, "10.0.0.1:1", time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("conn with a stuck dial: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("waited %s for a dial past the caller's deadline", d)
	}
}

// serveWrite runs n.serveForwardedWrite and waits for its answer; served
// is false when n left req to the general path.
func serveWrite(t *testing.T, n *Node, req fwdRequest) (resp fwdResponse, served bool) {
	t.Helper()
	req.Timeout = 5 * time.Second
	got := make(chan fwdResponse, 1)
	if !n.serveForwardedWrite(req, func(r fwdResponse) { got <- r }) {
		return fwdResponse{}, false
	}
	select {
	case r := <-got:
		return r, true
	case <-time.After(10 * time.Second):
		t.Fatalf("%s %s: no answer", req.Op, req.Key)
		return fwdResponse{}, false
	}
}

// TestForwardedWritesWithoutGoroutine: on the leader, a forwarded acquire
// without WAIT, renew and release are queued for raft at once and answered
// when applied, with the answers the general path gives; what needs the
// general path (a waiting acquire, a release with callers waiting, reads)
// is left to it, untouched. One node, so no election moves the leader.
func TestForwardedWritesWithoutGoroutine(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	r, ok := serveWrite(t, n, fwdRequest{Op: "acquire", Key: "k", Owner: "a", TTL: time.Minute})
	if !ok || r.Code != "" || r.Lock == nil || r.Lock.Owner != "a" || r.Lock.Token == 0 {
		t.Fatalf("acquire: served %v, %+v", ok, r)
	}
	token := r.Lock.Token
	if r, ok := serveWrite(t, n, fwdRequest{Op: "acquire", Key: "k", Owner: "b", TTL: time.Minute}); !ok || r.Code != "held" {
		t.Fatalf("acquire of a held lock: served %v, %+v", ok, r)
	}
	if r, ok := serveWrite(t, n, fwdRequest{Op: "renew", Key: "k", Owner: "a", TTL: 2 * time.Minute, Token: token}); !ok || r.Code != "" || r.Lock == nil || r.Lock.Token != token {
		t.Fatalf("renew: served %v, %+v", ok, r)
	}
	if r, ok := serveWrite(t, n, fwdRequest{Op: "release", Key: "k", Owner: "b"}); !ok || r.Code != "not_held" {
		t.Fatalf("release by another owner: served %v, %+v", ok, r)
	}
	for _, req := range []fwdRequest{
		{Op: "acquire", Key: "k", Owner: "b", TTL: time.Minute, Wait: time.Second},
		{Op: "info", Key: "k"},
	} {
		if _, ok := serveWrite(t, n, req); ok {
			t.Fatalf("%+v took the path without a goroutine", req)
		}
	}
	waiter := queueWaiter(t, ctxT(t), n, "k", "w")
	if _, ok := serveWrite(t, n, fwdRequest{Op: "release", Key: "k", Owner: "a", Token: token}); ok {
		t.Fatal("a release with a caller waiting took the path without a goroutine")
	}
	if l, err := n.Info(ctxT(t), "k"); err != nil || l.Owner != "a" {
		t.Fatalf("after the release left to the general path: %+v, %v", l, err)
	}
	if r := n.handleForwarded(ctxT(t), fwdRequest{Op: "release", Key: "k", Owner: "a", Token: token}); r.Code != "" {
		t.Fatalf("release through the general path: %+v", r)
	}
	if err := <-waiter; err != nil {
		t.Fatalf("the waiter after the release: %v", err)
	}
	if r, ok := serveWrite(t, n, fwdRequest{Op: "release", Key: "k", Owner: "w"}); !ok || r.Code != "" {
		t.Fatalf("release: served %v, %+v", ok, r)
	}
	if _, err := n.Info(ctxT(t), "k"); !errors.Is(err, lockapi.ErrNotFound) {
		t.Fatalf("info after the release: %v", err)
	}
}

// TestForwardedWriteNotOnAFollower: a node that does not lead leaves a
// forwarded write to the general path (which passes it on or refuses it).
func TestForwardedWriteNotOnAFollower(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	survivor := c.follower()
	for i := range c.nodes {
		if i != survivor {
			c.stop(i)
		}
	}
	f := c.nodes[survivor]
	waitFor(t, 5*time.Second, "the survivor to lose its leader", func() bool { return !f.IsLeader() && !f.isLeader() })
	if _, ok := serveWrite(t, f, fwdRequest{Op: "acquire", Key: "k", Owner: "a", TTL: time.Minute}); ok {
		t.Fatal("a node that does not lead took a forwarded acquire")
	}
}
