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
// certificate the client does not have) never ran the request: the client
// moves on to the next node, and when every node refuses, it fails with
// what happened, not as an outcome unknown.
func TestTLSRefusal(t *testing.T) {
	ca, err := testcerts.NewCA(t.TempDir(), "clients-test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Certificate("node", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	state := &fakeState{}
	listen := func(auth tls.ClientAuthType) string {
		raw, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln := tls.NewListener(raw, &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: ca.Pool(), ClientAuth: auth})
		t.Cleanup(func() { ln.Close() })
		n := &fakeNode{t: t, state: state}
		go redcon.Serve(ln, n.serve, func(redcon.Conn) bool { return true }, nil)
		return raw.Addr().String()
	}
	refusing, serving := listen(tls.RequireAndVerifyClientCert), listen(tls.NoClientCert)
	client := func(addrs ...string) *Client {
		c, err := New(Config{Addrs: addrs, TLSConfig: &tls.Config{RootCAs: ca.Pool()}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("every node refuses", func(t *testing.T) {
		_, err := client(refusing).Info(ctxFor(t), "k")
		if err == nil || errors.Is(err, ErrUnknownOutcome) || !strings.Contains(err.Error(), "refused the TLS connection") {
			t.Fatalf("Info: %v; want the TLS refusal, not an unknown outcome", err)
		}
	})
	t.Run("another node serves", func(t *testing.T) {
		c := client(refusing, serving)
		for i := range 3 {
			if _, err := c.Info(ctxFor(t), "k"); err != nil && !errors.Is(err, ErrNotFound) {
				t.Fatalf("call %d: %v; want the serving node's answer (not found)", i, err)
			}
		}
	})
}
