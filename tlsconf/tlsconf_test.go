package tlsconf

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/distlock/distlock/internal/testcerts"
)

// pki is a CA with a node's certificate (for "node1" and 127.0.0.1),
// another node's, a client's (client authentication only), and a
// stranger's from another CA.
type pki struct {
	ca, other               *testcerts.CA
	node, node2, client, st testcerts.Pair
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	var p pki
	var err error
	must := func(e error) {
		t.Helper()
		if e != nil {
			t.Fatal(e)
		}
	}
	p.ca, err = testcerts.NewCA(dir, "cluster")
	must(err)
	p.other, err = testcerts.NewCA(dir, "other")
	must(err)
	p.node, err = p.ca.Issue("node1", "node1", "127.0.0.1")
	must(err)
	p.node2, err = p.ca.Issue("node2", "node2")
	must(err)
	p.client, err = p.ca.IssueClient("client")
	must(err)
	p.st, err = p.other.Issue("stranger", "node1", "127.0.0.1")
	must(err)
	return p
}

func (p pki) load(t *testing.T, auth ClientAuth) *Config {
	t.Helper()
	c, err := Load(Files{CertFile: p.node.CertFile, KeyFile: p.node.KeyFile, CAFile: p.ca.CertFile, ClientAuth: auth})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// handshake runs both sides of a TLS handshake over loopback TCP (a pipe
// has no buffer: each side's alert would wait for the other) and returns
// the client's error, or the server's when the client saw none, and the
// serial number of the certificate the client saw.
func handshake(t *testing.T, server, client *tls.Config) (string, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	deadline := time.Now().Add(10 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	srv := tls.Server(a, server)
	errc := make(chan error, 1)
	go func() {
		err := srv.Handshake()
		if err == nil {
			// TLS 1.3 verifies the client's certificate after the client's
			// handshake returns: read until the client closes.
			_, err = srv.Read(make([]byte, 1))
			if errors.Is(err, io.EOF) {
				err = nil
			}
		}
		a.Close()
		errc <- err
	}()
	cl := tls.Client(b, client)
	err = cl.Handshake()
	var serial string
	if err == nil {
		serial = cl.ConnectionState().PeerCertificates[0].SerialNumber.String()
		b.Close()
	} else {
		b.Close()
	}
	if serr := <-errc; err == nil {
		err = serr
	}
	return serial, err
}

func clientWith(p testcerts.Pair, roots *Config, name string) *tls.Config {
	cfg := &tls.Config{ServerName: name, RootCAs: roots.roots, MinVersion: tls.VersionTLS12}
	if p.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
		if err != nil {
			panic(err)
		}
		// Always present it: Go's client would otherwise send none that
		// the server's CA list does not name.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	return cfg
}

func TestLoadErrors(t *testing.T) {
	p := newPKI(t)
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		files Files
	}{
		{"no certificate", Files{KeyFile: p.node.KeyFile, CAFile: p.ca.CertFile}},
		{"no key", Files{CertFile: p.node.CertFile, CAFile: p.ca.CertFile}},
		{"no CA", Files{CertFile: p.node.CertFile, KeyFile: p.node.KeyFile}},
		{"CA file missing", Files{CertFile: p.node.CertFile, KeyFile: p.node.KeyFile, CAFile: notPEM + ".gone"}},
		{"CA file not PEM", Files{CertFile: p.node.CertFile, KeyFile: p.node.KeyFile, CAFile: notPEM}},
		{"key of another certificate", Files{CertFile: p.node.CertFile, KeyFile: p.client.KeyFile, CAFile: p.ca.CertFile}},
		{"unknown client auth", Files{CertFile: p.node.CertFile, KeyFile: p.node.KeyFile, CAFile: p.ca.CertFile, ClientAuth: 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Load(tt.files); !errors.Is(err, ErrConfig) {
				t.Fatalf("Load: %v, want ErrConfig", err)
			}
		})
	}
}

func TestParseClientAuth(t *testing.T) {
	for _, s := range []string{"yes", "optional", "no"} {
		a, err := ParseClientAuth(s)
		if err != nil || a.String() != s {
			t.Fatalf("%q: %v, %v", s, a, err)
		}
	}
	if _, err := ParseClientAuth("true"); !errors.Is(err, ErrConfig) {
		t.Fatalf("true: %v", err)
	}
}

// The client ports ask for a certificate of the CA as configured; the raft
// port always requires one.
func TestClientAuthentication(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name   string
		auth   ClientAuth
		peer   bool // the raft port instead of a client port
		client testcerts.Pair
		ok     bool
	}{
		{"required, none", ClientCertRequired, false, testcerts.Pair{}, false},
		{"required, of the CA", ClientCertRequired, false, p.client, true},
		{"required, of another CA", ClientCertRequired, false, p.st, false},
		{"optional, none", ClientCertOptional, false, testcerts.Pair{}, true},
		{"optional, of the CA", ClientCertOptional, false, p.client, true},
		{"optional, of another CA", ClientCertOptional, false, p.st, false},
		{"ignored, none", ClientCertIgnored, false, testcerts.Pair{}, true},
		{"peer port, none", ClientCertIgnored, true, testcerts.Pair{}, false},
		{"peer port, of another CA", ClientCertIgnored, true, p.st, false},
		{"peer port, a client's of the CA", ClientCertIgnored, true, p.client, false},
		{"peer port, a node's of the CA", ClientCertIgnored, true, p.node2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := p.load(t, tt.auth)
			server := c.Clients()
			if tt.peer {
				server = c.PeerServer()
			}
			_, err := handshake(t, server, clientWith(tt.client, c, "node1"))
			if (err == nil) != tt.ok {
				t.Fatalf("handshake: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// A node dialing a peer checks the peer's certificate against the CA and
// the name it dialed, and presents its own certificate.
func TestPeerClient(t *testing.T) {
	p := newPKI(t)
	c := p.load(t, ClientCertRequired)
	stranger, err := Load(Files{CertFile: p.st.CertFile, KeyFile: p.st.KeyFile, CAFile: p.ca.CertFile})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		server *Config
		host   string
		ok     bool
	}{
		{"the dialed name", c, "node1", true},
		{"the dialed IP", c, "127.0.0.1", true},
		{"another name", c, "node2", false},
		{"a certificate of another CA", stranger, "node1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := handshake(t, tt.server.PeerServer(), c.PeerClient(tt.host))
			if (err == nil) != tt.ok {
				t.Fatalf("handshake: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// Local verifies the server's certificate against the CA but not its name.
func TestLocal(t *testing.T) {
	p := newPKI(t)
	c := p.load(t, ClientCertRequired)
	if _, err := handshake(t, c.Clients(), c.Local()); err != nil {
		t.Fatalf("probing the node: %v", err)
	}
	stranger, err := Load(Files{CertFile: p.st.CertFile, KeyFile: p.st.KeyFile, CAFile: p.ca.CertFile, ClientAuth: ClientCertIgnored})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, stranger.Clients(), c.Local()); err == nil {
		t.Fatal("Local accepted a server certificate of another CA")
	}
}

// A rotated certificate is served from the next handshake a second later;
// a pair that does not load leaves the previous one in use.
func TestReload(t *testing.T) {
	p := newPKI(t)
	c := p.load(t, ClientCertIgnored)
	client := clientWith(testcerts.Pair{}, c, "node1")
	first, err := handshake(t, c.Clients(), client)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.ca.Issue("node1", "node1"); err != nil { // rotate
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		serial, err := handshake(t, c.Clients(), client)
		if err != nil {
			t.Fatal(err)
		}
		if serial != first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rotated certificate was never served")
		}
		time.Sleep(100 * time.Millisecond)
	}
	rotated, _ := handshake(t, c.Clients(), client)
	if err := os.WriteFile(p.node.KeyFile, []byte("half written"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(reloadCheck + 100*time.Millisecond)
	serial, err := handshake(t, c.Clients(), client)
	if err != nil || serial != rotated {
		t.Fatalf("after a broken key file: serial %s, %v; want the rotated %s still served", serial, err, rotated)
	}
}

// With a CA of their own, clients' certificates are checked against it on
// the client ports, and peers' against the cluster's CA alone.
func TestClientCAFile(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	clientCA, err := testcerts.NewCA(dir, "clients")
	if err != nil {
		t.Fatal(err)
	}
	own, err := clientCA.IssueClient("app")
	if err != nil {
		t.Fatal(err)
	}
	ownNode, err := clientCA.Issue("fake-node", "node1") // may serve, but of the clients' CA
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(Files{CertFile: p.node.CertFile, KeyFile: p.node.KeyFile, CAFile: p.ca.CertFile, ClientCAFile: clientCA.CertFile})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		peer   bool
		client testcerts.Pair
		ok     bool
	}{
		{"client port, of the clients' CA", false, own, true},
		{"client port, of the cluster's CA", false, p.client, false},
		{"client port, this node's own (its health check)", false, p.node, true},
		{"client port, another node's of the cluster's CA", false, p.node2, false},
		{"peer port, of the clients' CA", true, ownNode, false},
		{"peer port, a node's of the cluster's CA", true, p.node2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := c.Clients()
			if tt.peer {
				server = c.PeerServer()
			}
			if _, err := handshake(t, server, clientWith(tt.client, c, "node1")); (err == nil) != tt.ok {
				t.Fatalf("handshake: %v, want ok=%v", err, tt.ok)
			}
		})
	}
	if _, err := Load(Files{CertFile: p.node.CertFile, KeyFile: p.node.KeyFile, CAFile: p.ca.CertFile, ClientCAFile: dir + "/none.pem"}); !errors.Is(err, ErrConfig) {
		t.Fatalf("a missing client CA file: %v", err)
	}
}
