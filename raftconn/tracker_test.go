package raftconn

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distlock/distlock/internal/testcerts"
)

// handler stands for raft's handleConn: it reads until the socket fails,
// finishes the RPC in hand, and closes its connection.
func handler(c net.Conn, finished *atomic.Int32) {
	defer c.Close()
	_, _ = io.Copy(io.Discard, c)
	time.Sleep(20 * time.Millisecond)
	finished.Add(1)
}

func TestDrain(t *testing.T) {
	tests := []struct {
		name     string
		handlers int
	}{
		{name: "no connections", handlers: 0},
		{name: "one handler", handlers: 1},
		{name: "three handlers", handlers: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr Tracker
			var finished atomic.Int32
			for range tt.handlers {
				ours, peer := net.Pipe()
				t.Cleanup(func() { peer.Close() })
				c, err := tr.Track(ours, "")
				if err != nil {
					t.Fatal(err)
				}
				go handler(c, &finished)
				if _, err := peer.Write([]byte("rpc")); err != nil { // the handler is reading
					t.Fatal(err)
				}
			}
			if err := tr.Drain(10 * time.Second); err != nil {
				t.Fatalf("Drain: %v", err)
			}
			if got := finished.Load(); got != int32(tt.handlers) {
				t.Fatalf("Drain returned with %d of %d handlers finished", got, tt.handlers)
			}
		})
	}
}

func TestDrainTimesOutOnAStuckHandler(t *testing.T) {
	var tr Tracker
	ours, peer := net.Pipe()
	defer peer.Close()
	c, err := tr.Track(ours, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Drain(50 * time.Millisecond); !errors.Is(err, ErrDrainTimeout) {
		t.Fatalf("Drain with a handler that never closes: %v, want ErrDrainTimeout", err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("Drain left the stuck handler's socket open")
	}
	c.Close() // the handler ends: a later Drain completes
	c.Close() // and a second Close is not counted again
	if err := tr.Drain(10 * time.Second); err != nil {
		t.Fatalf("Drain after the handler closed: %v", err)
	}
}

func TestTrackAfterDrainRefuses(t *testing.T) {
	var tr Tracker
	if err := tr.Drain(time.Second); err != nil {
		t.Fatal(err)
	}
	ours, peer := net.Pipe()
	defer peer.Close()
	if c, err := tr.Track(ours, ""); !errors.Is(err, ErrDrained) || c != nil {
		t.Fatalf("Track after Drain: %v, %v; want nil, ErrDrained", c, err)
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := peer.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("the refused connection: read %v, want it closed (EOF)", err)
	}
}

// Under TLS, Drain closes the socket itself: a TLS Close first sends its
// close alert, which waits up to 5 s for a peer that does not read, and
// the handler's read would fail only then.
func TestDrainClosesTLSSocketsAtOnce(t *testing.T) {
	server, client, err := testcerts.TLSPipe(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close() // never read from: the peer that does not read
	var tr Tracker
	c, err := tr.Track(server, "")
	if err != nil {
		t.Fatal(err)
	}
	var finished atomic.Int32
	go handler(c, &finished)
	if err := tr.Drain(3 * time.Second); err != nil {
		t.Fatalf("Drain of a TLS connection whose peer does not read: %v", err)
	}
}

// CloseUnless closes exactly the connections whose tag is not kept; the
// others stay usable, and the closed ones' handlers end.
func TestCloseUnless(t *testing.T) {
	var tr Tracker
	var finished atomic.Int32
	tags := []string{"a", "", "b", "a"}
	conns := make([]net.Conn, len(tags))
	for i, tag := range tags {
		ours, peer := net.Pipe()
		t.Cleanup(func() { peer.Close() })
		c, err := tr.Track(ours, tag)
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		if tag != "a" {
			go handler(c, &finished)
		}
	}
	if got := tr.CloseUnless(func(tag string) bool { return tag == "a" }); got != 2 {
		t.Fatalf("CloseUnless closed %d connections, want 2", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for finished.Load() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 2 handlers of closed connections ended", finished.Load())
		}
		time.Sleep(time.Millisecond)
	}
	for i, c := range conns {
		if tags[i] != "a" {
			continue
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("kept connection %d: read %v, want it open (deadline exceeded)", i, err)
		}
	}
	if err := tr.Drain(10 * time.Millisecond); !errors.Is(err, ErrDrainTimeout) {
		t.Fatalf("Drain with two kept handlers never closing: %v", err)
	}
}
