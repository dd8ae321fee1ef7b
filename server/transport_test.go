package server

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/raftconn"
)

// firstRPC is how hashicorp/raft's NetworkTransport opens a connection:
// an RPC type byte (0, AppendEntries) and the msgpack-encoded request,
// whose header names the sender.
func firstRPC(t *testing.T, sender string) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteByte(0)
	req := raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax,
		ID: []byte(sender), Addr: []byte("127.0.0.1:1")}, Term: 7, PrevLogEntry: 3,
		Entries: []*raft.Log{{Index: 4, Term: 7, Type: raft.LogCommand, Data: []byte("entry")}}}
	if err := codec.NewEncoder(&buf, &codec.MsgpackHandle{}).Encode(&req); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// raftConn dials s and sends the first RPC of a raft connection from peer
// "p1", so that s routes the connection to raft (Accept).
func raftConn(t *testing.T, s *streamLayer) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(firstRPC(t, "p1")); err != nil {
		t.Fatal(err)
	}
	return c
}

// A raft connection reaches raft only if admit lets its sender, and the
// cluster id it announced, in; raft then reads every byte the peer sent
// after the announcement, those read to find the sender included.
func TestRouteAdmitsRaftConnectionsBySender(t *testing.T) {
	s, err := newStreamLayer("127.0.0.1:0", "", peerDialer{}, func(c net.Conn, _ *bufio.Reader) { c.Close() })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.setAdmit(func(sender, cluster string) bool { return sender == "p1" && (cluster == "" || cluster == "ours") }, func() string { return "" })
	rpc := firstRPC(t, "p1")
	for _, tt := range []struct {
		name   string
		hello  []byte // sent before the first RPC
		sender string
		admit  bool
	}{
		{"p1", nil, "p1", true},
		{"stranger", nil, "stranger", false},
		{"p1 of this cluster", appendClusterHello(nil, "ours"), "p1", true},
		{"p1 of another cluster", appendClusterHello(nil, "theirs"), "p1", false},
		{"an empty id", []byte{clusterMagic, 0}, "p1", false},
		{"an id too long", appendClusterHello(nil, strings.Repeat("x", maxClusterIDLen+1)), "p1", false},
		{"an id, then forwarding", append(appendClusterHello(nil, "ours"), forwardMagic), "p1", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", s.ln.Addr().String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			sent := append(firstRPC(t, tt.sender), "and the rest"...)
			if _, err := c.Write(append(append([]byte(nil), tt.hello...), sent...)); err != nil {
				t.Fatal(err)
			}
			if !tt.admit {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("a raft connection from %s: read %v, want it closed", tt.sender, err)
				}
				return
			}
			accepted := make(chan net.Conn, 1)
			go func() {
				if got, err := s.Accept(); err == nil {
					accepted <- got
				}
			}()
			var got net.Conn
			select {
			case got = <-accepted:
			case <-time.After(5 * time.Second):
				t.Fatal("the connection from p1 never reached raft")
			}
			defer got.Close()
			buf := make([]byte, len(sent))
			got.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(got, buf); err != nil || !bytes.Equal(buf, sent) {
				t.Fatalf("raft read %q, %v; want %q", buf, err, sent)
			}
			if !bytes.HasPrefix(sent, rpc) {
				t.Fatal("test set-up: the first RPC differs")
			}
		})
	}
}

func newTestStreamLayer(t *testing.T) *streamLayer {
	t.Helper()
	s, err := newStreamLayer("127.0.0.1:0", "", peerDialer{}, func(c net.Conn, _ *bufio.Reader) { c.Close() })
	if err != nil {
		t.Fatal(err)
	}
	s.setAdmit(func(string, string) bool { return true }, func() string { return "" })
	t.Cleanup(func() { s.Close() })
	return s
}

// Once a node knows its cluster's id, each raft connection it dials
// announces it, and the receiving node's admission check sees it.
func TestDialAnnouncesTheClusterID(t *testing.T) {
	rx, err := newStreamLayer("127.0.0.1:0", "", peerDialer{}, func(c net.Conn, _ *bufio.Reader) { c.Close() })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close() })
	seen := make(chan string, 4)
	rx.setAdmit(func(_, cluster string) bool { seen <- cluster; return true }, func() string { return "" })
	tx := newTestStreamLayer(t)
	var id atomic.Value
	id.Store("")
	tx.cluster = func() string { return id.Load().(string) }
	for _, want := range []string{"", "c0ffee"} {
		id.Store(want)
		c, err := tx.Dial(raft.ServerAddress(rx.ln.Addr().String()), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(firstRPC(t, "p1")); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-seen:
			if got != want {
				t.Fatalf("the receiver saw cluster id %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the connection never reached the admission check")
		}
		c.Close()
		if a, err := rx.Accept(); err == nil {
			a.Close()
		}
	}
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

// The log of refused senders stays small whatever ids the network sends.
func TestRefusalLogIsBounded(t *testing.T) {
	var r refusalLog
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	long := strings.Repeat("x", 1<<16)
	for i := range 1000 {
		r.note(quiet, fmt.Sprint(i, long), "refused")
	}
	size := 0
	for k := range r.last {
		size += len(k)
	}
	if len(r.last) > refusalSenders || size > refusalSenders*(refusalIDLen+3) {
		t.Fatalf("refusal log holds %d senders in %d bytes", len(r.last), size)
	}
}
