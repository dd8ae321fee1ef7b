package server

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distlock/distlock/raftconn"
)

// raftConn dials s and sends the first byte of a raft RPC, so that s routes
// the connection to raft (Accept).
func raftConn(t *testing.T, s *streamLayer) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
	return c
}

func newTestStreamLayer(t *testing.T) *streamLayer {
	t.Helper()
	s, err := newStreamLayer("127.0.0.1:0", "", peerDialer{}, func(c net.Conn, _ *bufio.Reader) { c.Close() })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// hashicorp/raft handles heartbeats on the connection's goroutine, which
// neither raft.Shutdown nor the transport's Close waits for; the node must
// not close its log store under one (raft panics on the store's error).
// drain makes the handlers' reads fail and returns only once each handler
// has closed its connection.
func TestDrainWaitsForRaftConnectionHandlers(t *testing.T) {
	s := newTestStreamLayer(t)
	const conns = 3
	var finished atomic.Int32
	for range conns {
		peer := raftConn(t, s)
		c, err := s.Accept()
		if err != nil {
			t.Fatal(err)
		}
		go func() { // raft's handleConn: read until the socket fails, finish the RPC in hand, close
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
			time.Sleep(20 * time.Millisecond)
			finished.Add(1)
		}()
		if _, err := peer.Write([]byte("rpc")); err != nil { // the handler is reading
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.drain(10 * time.Second); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if got := finished.Load(); got != conns {
		t.Fatalf("drain returned with %d of %d handlers finished", got, conns)
	}
}

func TestDrainTimesOutOnAStuckHandler(t *testing.T) {
	s := newTestStreamLayer(t)
	raftConn(t, s)
	c, err := s.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.drain(50 * time.Millisecond); !errors.Is(err, raftconn.ErrDrainTimeout) {
		t.Fatalf("drain with a handler that never closes: %v, want raftconn.ErrDrainTimeout", err)
	}
	c.Close() // the handler ends: a later drain completes
	if err := s.drain(10 * time.Second); err != nil {
		t.Fatalf("drain after the handler closed: %v", err)
	}
}

// A connection that route had accepted but not yet handed to raft when
// drain began is closed instead of reaching raft (drain runs after Close,
// so only such a late one can arrive; here the listener stays open to
// make one).
func TestConnectionsAfterDrainAreRefused(t *testing.T) {
	s := newTestStreamLayer(t)
	if err := s.drain(time.Second); err != nil {
		t.Fatal(err)
	}
	peer := raftConn(t, s)
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := peer.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a raft connection routed after drain: read %v, want it closed", err)
	}
	s.Close()
	if _, err := s.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
}
