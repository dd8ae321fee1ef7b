package guard

import (
	"crypto/tls"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/distlock/distlock/internal/testcerts"
)

// TestHungUp: a server connection from the Listener, plain or TLS, is hung
// up once its client closes or resets it, and not before, even with the
// client's last bytes (a request, a TLS close alert) still unread.
func TestHungUp(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("HungUp reads the TCP state on Linux only")
	}
	dir := t.TempDir()
	ca, err := testcerts.NewCA(dir, "hangup")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Certificate("server", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		tls   bool
		write bool // the client sends a request it never reads the reply of
		reset bool // the client resets instead of closing
	}{
		{"plain close", false, false, false},
		{"plain close with a request unread", false, true, false},
		{"plain reset", false, false, true},
		{"TLS close (a close alert unread)", true, false, false},
		{"TLS close with a request unread", true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var ln net.Listener = raw
			if tt.tls {
				ln = tls.NewListener(raw, &tls.Config{Certificates: []tls.Certificate{cert}})
			}
			ln = Listener(ln, Limits{}, 0)
			defer ln.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := ln.Accept()
				if err == nil {
					accepted <- c
				}
			}()
			var client net.Conn
			client, err = net.Dial("tcp", raw.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			if tt.tls {
				tc := tls.Client(client, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
				client = tc
			}
			var server net.Conn
			select {
			case server = <-accepted:
			case <-time.After(5 * time.Second):
				t.Fatal("no connection accepted")
			}
			defer server.Close()
			if tt.tls { // (the guard would run it on its first read)
				go server.(*conn).Conn.(*tls.Conn).Handshake()
				if err := client.(*tls.Conn).Handshake(); err != nil {
					t.Fatal(err)
				}
			}
			if tt.write {
				if _, err := client.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
					t.Fatal(err)
				}
			}
			if HungUp(server) {
				t.Fatal("hung up while the client is connected")
			}
			if tt.reset {
				client.(*net.TCPConn).SetLinger(0)
			}
			client.Close()
			deadline := time.Now().Add(5 * time.Second)
			for !HungUp(server) {
				if time.Now().After(deadline) {
					t.Fatal("the client closed, and HungUp still says no after 5s")
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}
