package clients

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/tidwall/redcon"

	"github.com/distlock/distlock/internal/testcerts"
)

// A node that refuses this client's TLS connection (it wants a client
// certificate the client does not have) fails the call at once with what
// happened, not as an outcome unknown retried on every node.
func TestTLSRefusalIsNotAnUnknownOutcome(t *testing.T) {
	dir := t.TempDir()
	ca, err := testcerts.NewCA(dir, "clients-test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Certificate("node", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	pool := ca.Pool()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := tls.NewListener(raw, &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert})
	t.Cleanup(func() { ln.Close() })
	n := &fakeNode{t: t, state: &fakeState{}}
	go redcon.Serve(ln, n.serve, func(redcon.Conn) bool { return true }, nil)

	c, err := New(Config{Addrs: []string{raw.Addr().String()}, TLSConfig: &tls.Config{RootCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Info(ctxFor(t), "k")
	if err == nil {
		t.Fatal("Info over a refused TLS connection succeeded")
	}
	if errors.Is(err, ErrUnknownOutcome) || strings.Contains(err.Error(), "gave up") ||
		!strings.Contains(err.Error(), "refused the TLS connection") {
		t.Fatalf("Info: %v; want the TLS refusal, at once", err)
	}
}
