// Package tlsconf builds a node's TLS configurations from its certificate
// files: one for the clients of its RESP and HTTP ports, one for the raft
// port's peers (mutual TLS: a peer must present a certificate of the
// cluster's CA that may serve as well, as a node's does, and a node checks
// the name of the peer it dials), and one for probing its own ports.
//
// The raft port carries raft and the requests followers forward, which
// no password guards: only nodes may reach it. So a client's certificate,
// signed for client authentication only, is refused there even when the
// same CA signed it; clients may also have a CA of their own
// (Files.ClientCAFile).
//
// The node's certificate and key are read again when their files change
// (checked at most once a second, at a handshake), so certificates can be
// rotated without a restart, as etcd does; a pair that fails to load (say,
// half rotated) leaves the previous one in use. The CA file is read once.
// A node's certificate serves its ports and is presented when it dials a
// peer, so it must allow both server and client authentication.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// ErrConfig is wrapped by every error of [Load] and [ParseClientAuth].
var ErrConfig = errors.New("tls")

// ClientAuth is whether the clients of the RESP and HTTP ports must present
// a certificate of the CA (Redis's tls-auth-clients). Peers on the raft port
// always must.
type ClientAuth uint8

const (
	// ClientCertRequired: a client without a certificate of the CA is
	// refused ("yes", Redis's default).
	ClientCertRequired ClientAuth = iota
	// ClientCertOptional: a certificate is verified when a client presents
	// one ("optional").
	ClientCertOptional
	// ClientCertIgnored: clients are not asked for one ("no").
	ClientCertIgnored
)

// ParseClientAuth reads "yes", "optional" or "no".
func ParseClientAuth(s string) (ClientAuth, error) {
	switch s {
	case "yes":
		return ClientCertRequired, nil
	case "optional":
		return ClientCertOptional, nil
	case "no":
		return ClientCertIgnored, nil
	}
	return 0, fmt.Errorf("%w: client authentication %q: want yes, optional or no", ErrConfig, s)
}

// String returns the name ParseClientAuth reads.
func (a ClientAuth) String() string {
	switch a {
	case ClientCertRequired:
		return "yes"
	case ClientCertOptional:
		return "optional"
	case ClientCertIgnored:
		return "no"
	}
	return fmt.Sprintf("ClientAuth(%d)", uint8(a))
}

// Files names a node's PEM files.
type Files struct {
	// CertFile and KeyFile are the node's certificate (chain) and key.
	CertFile, KeyFile string
	// CAFile holds the CA certificates that sign peers' certificates, and
	// clients' unless ClientCAFile is set.
	CAFile string
	// ClientCAFile, when set, holds the CA certificates that sign the
	// certificates of RESP and HTTP clients instead.
	ClientCAFile string
	// ClientAuth applies to the RESP and HTTP ports.
	ClientAuth ClientAuth
	// Logger hears of a rotated certificate, loaded or not. Default
	// slog.Default().
	Logger *slog.Logger
}

// Config is a node's loaded TLS material.
type Config struct {
	pair        *keyPair
	roots       *x509.CertPool // of peers
	clientRoots *x509.CertPool // of clients
	clientAuth  ClientAuth
}

// Load reads the files and checks that they make a usable configuration.
func Load(f Files) (*Config, error) {
	if f.CertFile == "" || f.KeyFile == "" || f.CAFile == "" {
		return nil, fmt.Errorf("%w: a certificate, its key and a CA file are all needed (peers authenticate each other)", ErrConfig)
	}
	roots, err := ReadCAFile(f.CAFile)
	if err != nil {
		return nil, err
	}
	clientRoots := roots
	if f.ClientCAFile != "" {
		if clientRoots, err = ReadCAFile(f.ClientCAFile); err != nil {
			return nil, err
		}
	}
	if f.Logger == nil {
		f.Logger = slog.Default()
	}
	pair := &keyPair{certFile: f.CertFile, keyFile: f.KeyFile, log: f.Logger}
	if err := pair.load(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if f.ClientAuth > ClientCertIgnored {
		return nil, fmt.Errorf("%w: client authentication %d unknown", ErrConfig, f.ClientAuth)
	}
	return &Config{pair: pair, roots: roots, clientRoots: clientRoots, clientAuth: f.ClientAuth}, nil
}

// serverCertificate and clientCertificate present the node's current
// certificate (reloaded when its files change) in a handshake.
func (c *Config) serverCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.pair.get(), nil
}

func (c *Config) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return c.pair.get(), nil
}

// ReadCAFile reads a PEM file of CA certificates into a pool.
func ReadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: CA file: %w", ErrConfig, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrConfig, path)
	}
	return pool, nil
}

// Clients returns the configuration of the RESP and HTTP ports. A client
// certificate must be of the clients' CA and valid for client
// authentication, as crypto/tls checks it, or be this node's own current
// certificate: the node's health check presents it, and with a CA of the
// clients' own (ClientCAFile) that CA did not sign it.
func (c *Config) Clients() *tls.Config {
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: c.serverCertificate,
		ClientCAs:      c.clientRoots, // the CAs the request names
	}
	switch c.clientAuth {
	case ClientCertIgnored:
		cfg.ClientAuth = tls.NoClientCert
		return cfg
	case ClientCertRequired:
		cfg.ClientAuth = tls.RequireAnyClientCert // verified by verifyClient
	default:
		cfg.ClientAuth = tls.RequestClientCert // verified by verifyClient if given
	}
	cfg.VerifyConnection = c.verifyClient
	return cfg
}

// verifyClient checks the client certificate a client port was given, if
// any (the ClientAuth of Clients refuses a missing one where required).
func (c *Config) verifyClient(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	if own := c.pair.get(); own != nil && own.Leaf != nil && leaf.Equal(own.Leaf) {
		return nil
	}
	inter := x509.NewCertPool()
	for _, ic := range cs.PeerCertificates[1:] {
		inter.AddCert(ic)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: c.clientRoots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("tls: client certificate: %w", err)
	}
	return nil
}

// PeerServer returns the configuration of the raft port, which serves
// only peers: a certificate of the CA, valid for server authentication as
// well (a node's serves its own ports; a client's is for client
// authentication only).
func (c *Config) PeerServer() *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS12,
		GetCertificate:   c.serverCertificate,
		ClientCAs:        c.roots,
		ClientAuth:       tls.RequireAndVerifyClientCert,
		VerifyConnection: verifyPeer,
	}
}

// ErrNotAPeer refuses a certificate on the raft port that is not a node's.
var ErrNotAPeer = errors.New("tls: the certificate is not valid for server authentication, so not a node's: the raft port serves only peers")

// verifyPeer checks, after the chain, that the peer's certificate names
// server authentication among its usages.
func verifyPeer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return ErrNotAPeer
	}
	for _, u := range cs.PeerCertificates[0].ExtKeyUsage {
		if u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny {
			return nil
		}
	}
	return ErrNotAPeer
}

// PeerClient returns the configuration for dialing a peer's raft port at
// host (a name or an IP address its certificate must hold).
func (c *Config) PeerClient(host string) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		ServerName:           host,
		RootCAs:              c.roots,
		GetClientCertificate: c.clientCertificate,
	}
}

// Local returns a configuration for probing this node's own ports over
// loopback (the health check): it presents the node's certificate and
// verifies the server's against the CA, but not its name, which is the
// one other hosts reach the node at.
func (c *Config) Local() *tls.Config {
	roots := c.roots
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		InsecureSkipVerify:   true, // the chain is verified below, only the name is not
		GetClientCertificate: c.clientCertificate,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("tls: no server certificate")
			}
			inter := x509.NewCertPool()
			for _, ic := range cs.PeerCertificates[1:] {
				inter.AddCert(ic)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			return err
		},
	}
}

// reloadCheck is how often a handshake may look at the key pair's files.
const reloadCheck = time.Second

// keyPair is a certificate and key read again when their files change.
type keyPair struct {
	certFile, keyFile string
	log               *slog.Logger

	mu       sync.Mutex
	cert     *tls.Certificate
	stamp    [2]fileStamp // of certFile and keyFile when cert was read
	failed   [2]fileStamp // of the files that last failed to load
	lastLook time.Time
}

// fileStamp tells a file's versions apart.
type fileStamp struct {
	modNanos int64
	size     int64
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{modNanos: fi.ModTime().UnixNano(), size: fi.Size()}
}

// load reads the pair.
func (k *keyPair) load() error {
	stamp := [2]fileStamp{stampOf(k.certFile), stampOf(k.keyFile)}
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return fmt.Errorf("certificate %s and key %s: %w", k.certFile, k.keyFile, err)
	}
	k.cert, k.stamp = &cert, stamp
	return nil
}

// get returns the current pair, reading the files again if they changed
// since and the last look is more than reloadCheck ago. A pair that does
// not load leaves the previous one; it is tried again at the next look.
func (k *keyPair) get() *tls.Certificate {
	k.mu.Lock()
	defer k.mu.Unlock()
	if now := time.Now(); now.Sub(k.lastLook) >= reloadCheck {
		k.lastLook = now
		if st := [2]fileStamp{stampOf(k.certFile), stampOf(k.keyFile)}; st != k.stamp {
			if err := k.load(); err == nil {
				var notAfter time.Time
				if k.cert.Leaf != nil {
					notAfter = k.cert.Leaf.NotAfter
				}
				k.log.Info("tls: loaded the changed certificate and key", "cert", k.certFile, "not_after", notAfter)
			} else if st != k.failed { // k.cert stays
				k.failed = st
				k.log.Warn("tls: the changed certificate or key does not load; serving the previous one", "error", err)
			}
		}
	}
	return k.cert
}
