package testcerts

import (
	"crypto/tls"
	"fmt"
	"net"
)

// TLSPipe returns the two ends of an in-memory connection (net.Pipe: no
// buffer, so a write waits for the other end to read) after a TLS
// handshake between them, the server's certificate made by a fresh CA in
// dir. Tests use it for a TLS peer that stops reading.
func TLSPipe(dir string) (server, client *tls.Conn, err error) {
	ca, err := NewCA(dir, "pipe")
	if err != nil {
		return nil, nil, err
	}
	pair, err := ca.Issue("server", "server")
	if err != nil {
		return nil, nil, err
	}
	cert, err := tls.LoadX509KeyPair(pair.CertFile, pair.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("testcerts: %w", err)
	}
	a, b := net.Pipe()
	server = tls.Server(a, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	client = tls.Client(b, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) //nolint:gosec // a test's own pipe
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		a.Close()
		b.Close()
		return nil, nil, fmt.Errorf("testcerts: client handshake: %w", err)
	}
	if err := <-errc; err != nil {
		a.Close()
		b.Close()
		return nil, nil, fmt.Errorf("testcerts: server handshake: %w", err)
	}
	return server, client, nil
}
