package guard

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/distlock/distlock/internal/testcerts"
)

// A connection over the limit of a TLS listener is refused within the
// reply timeout even when it never says hello: the refusal's Write first
// runs the TLS handshake, which must not wait for ever.
func TestRejectOverTLSIsBounded(t *testing.T) {
	dir := t.TempDir()
	ca, err := testcerts.NewCA(dir, "guard")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Certificate("server", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := Listener(tls.NewListener(raw, &tls.Config{Certificates: []tls.Certificate{cert}}), Limits{}, 1)
	defer gl.Close()
	go func() {
		for { // keep every accepted connection open: the first holds the only slot
			if _, err := gl.Accept(); err != nil {
				return
			}
		}
	}()
	first, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	silent, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetReadDeadline(time.Now().Add(5 * replyTimeout))
	buf := make([]byte, 64)
	for {
		_, err = silent.Read(buf)
		if err != nil {
			break
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("a silent connection over the limit was still open after %s", 5*replyTimeout)
	}
}

// Closing a TLS connection whose client does not read takes at most about
// closeAlertTimeout, not crypto/tls's 5 s for the close alert: redcon closes
// its connections one after another when the server stops.
func TestCloseOverTLSIsBounded(t *testing.T) {
	server, client, err := testcerts.TLSPipe(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close() // never read from
	c := newConn(server, Limits{}, nil)
	done := make(chan struct{})
	go func() {
		c.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Close of a TLS connection whose client does not read took over 3 s")
	}
}

// A TLS client that never says hello is dropped after handshakeTimeout
// rather than holding its connection slot for good.
func TestTLSHandshakeTimeout(t *testing.T) {
	defer func(d time.Duration) { handshakeTimeout = d }(handshakeTimeout)
	handshakeTimeout = 200 * time.Millisecond
	server, client := net.Pipe()
	defer client.Close() // the client never writes
	c := newConn(tls.Server(server, &tls.Config{}), Limits{}, nil)
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 16))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Read returned without an error from a silent TLS client")
		}
	case <-time.After(handshakeTimeout + 5*time.Second):
		t.Fatalf("a silent TLS client was still being read after %s", handshakeTimeout+5*time.Second)
	}
}
