package guard

import (
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/distlock/distlock/internal/testcerts"
)

// hangupPair is a guarded server connection and the client's end of it.
type hangupPair struct {
	server, client net.Conn
}

// newHangupPair connects a client to a Listener, plain or TLS, and returns
// both ends once the TLS handshake (if any) is done.
func newHangupPair(t *testing.T, useTLS bool) hangupPair {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener = raw
	var ca *testcerts.CA
	if useTLS {
		if ca, err = testcerts.NewCA(t.TempDir(), "hangup"); err != nil {
			t.Fatal(err)
		}
		cert, err := ca.Certificate("server", "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		ln = tls.NewListener(raw, &tls.Config{Certificates: []tls.Certificate{cert}})
	}
	ln = Listener(ln, Limits{}, 0)
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	client, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var server net.Conn
	select {
	case server = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted")
	}
	t.Cleanup(func() { server.Close() })
	if useTLS { // (the guard would run it on its first read)
		tc := tls.Client(client, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
		go server.(*conn).Conn.(*tls.Conn).Handshake()
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		client = tc
	}
	t.Cleanup(func() { client.Close() })
	return hangupPair{server: server, client: client}
}

const ping = "*1\r\n$4\r\nPING\r\n"

// TestWatchHangup: a watch over a server connection from the Listener, plain
// or TLS, fires once its client closes or resets it, and not before, even
// with the client's last bytes (a request, a TLS close alert) still unread,
// and also when the client hung up before the watch began.
func TestWatchHangup(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("WatchHangup reads the TCP state on Linux only")
	}
	tests := []struct {
		name   string
		tls    bool
		write  bool // the client sends a request it never reads the reply of
		reset  bool // the client resets instead of closing
		before bool // the client hangs up before the watch begins
	}{
		{"plain close", false, false, false, false},
		{"plain close with a request unread", false, true, false, false},
		{"plain reset", false, false, true, false},
		{"plain close before the watch", false, false, false, true},
		{"plain close with a request before the watch", false, true, false, true},
		{"TLS close (a close alert unread)", true, false, false, false},
		{"TLS close with a request unread", true, true, false, false},
		{"TLS close before the watch", true, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newHangupPair(t, tt.tls)
			hungUp := make(chan struct{})
			watch := func() func() { return WatchHangup(p.server, func() { close(hungUp) }) }
			var stop func()
			if !tt.before {
				stop = watch()
			}
			if tt.write {
				if _, err := p.client.Write([]byte(ping)); err != nil {
					t.Fatal(err)
				}
			}
			if !tt.before {
				select {
				case <-hungUp:
					t.Fatal("hung up while the client is connected")
				case <-time.After(100 * time.Millisecond):
				}
			}
			if tt.reset {
				tcp := p.client.(*net.TCPConn)
				if err := tcp.SetLinger(0); err != nil {
					t.Fatal(err)
				}
			}
			p.client.Close()
			if tt.before {
				time.Sleep(50 * time.Millisecond) // let the FIN land first
				stop = watch()
			}
			defer stop()
			select {
			case <-hungUp:
			case <-time.After(5 * time.Second):
				t.Fatal("the client hung up, and the watch did not fire in 5s")
			}
		})
	}
}

// TestWatchHangupStop: after stop the connection reads as before (no
// deadline is left behind), the bytes the client sent during the watch
// included, and a later hang-up calls nothing.
func TestWatchHangupStop(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "plain"
		if useTLS {
			name = "TLS"
		}
		t.Run(name, func(t *testing.T) {
			p := newHangupPair(t, useTLS)
			fired := make(chan struct{}, 1)
			stop := WatchHangup(p.server, func() { fired <- struct{}{} })
			if _, err := p.client.Write([]byte(ping)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond) // the watch sees the request arrive
			stop()
			buf := make([]byte, len(ping))
			if _, err := io.ReadFull(p.server, buf); err != nil || string(buf) != ping {
				t.Fatalf("read after stop: %q, %v; want the request", buf, err)
			}
			// A read that must wait (no deadline left behind) ends with
			// the client's next request.
			read := make(chan error, 1)
			go func() {
				_, err := io.ReadFull(p.server, buf)
				read <- err
			}()
			time.Sleep(20 * time.Millisecond)
			if _, err := p.client.Write([]byte(ping)); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-read:
				if err != nil {
					t.Fatalf("waiting read after stop: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no read after stop")
			}
			p.client.Close()
			time.Sleep(50 * time.Millisecond)
			select {
			case <-fired:
				t.Fatal("onHangup called after stop")
			default:
			}
		})
	}
}

// TestWatchHangupWithoutASocket: a connection with no socket beneath (a
// pipe) is watched by nothing, and stop returns.
func TestWatchHangupWithoutASocket(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	stop := WatchHangup(a, func() { t.Error("onHangup called for a pipe") })
	b.Close()
	stop()
}
