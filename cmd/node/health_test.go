package main

import (
	"bytes"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/distlock/distlock/internal/testcerts"
)

// TestHealthCheck: node --health-check finds the node its own flags and
// DLOCK_* variables describe (port, bind address, password from either
// flag or file), as the node does.
func TestHealthCheck(t *testing.T) {
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path != "/health/ready":
			w.WriteHeader(http.StatusNotFound)
		case r.Header.Get("Authorization") != "Bearer s3cret":
			w.WriteHeader(http.StatusUnauthorized)
		case !ready.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	passFile := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(passFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		ready bool
		want  int
	}{
		{"flags", []string{"--port", port, "--requirepass", "s3cret"}, nil, true, 0},
		{"password file from the environment", []string{"--port", port}, map[string]string{"DLOCK_REQUIREPASS_FILE": passFile}, true, 0},
		{"everything from the environment, bound to every interface", nil,
			map[string]string{"DLOCK_PORT": port, "DLOCK_BIND": "0.0.0.0", "DLOCK_REQUIREPASS": "s3cret"}, true, 0},
		{"not ready", []string{"--port", port, "--requirepass", "s3cret"}, nil, false, 1},
		{"wrong password", []string{"--port", port, "--requirepass", "nope"}, nil, true, 1},
		{"another port than the node's", []string{"--port", "1", "--requirepass", "s3cret"}, nil, true, 1},
		{"bad flags", []string{"--port", "x"}, nil, true, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready.Store(tt.ready)
			var stderr bytes.Buffer
			got := healthCheck(tt.args, func(k string) string { return tt.env[k] }, os.ReadFile, &stderr)
			if got != tt.want {
				t.Fatalf("exit %d, want %d; stderr: %s", got, tt.want, stderr.String())
			}
		})
	}
}

// With a CA of the clients' own, the health check's certificate (the
// node's, of the peers' CA) is still let in by the node's client ports.
func TestHealthCheckWithAClientCA(t *testing.T) {
	dir := t.TempDir()
	peerCA, err := testcerts.NewCA(dir, "peers")
	if err != nil {
		t.Fatal(err)
	}
	clientCA, err := testcerts.NewCA(dir, "clients")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := peerCA.Issue("node", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	for _, auth := range []string{"yes", "optional"} {
		t.Run(auth, func(t *testing.T) {
			args := []string{"--tls-cert-file", pair.CertFile, "--tls-key-file", pair.KeyFile,
				"--tls-ca-cert-file", peerCA.CertFile, "--tls-client-ca-cert-file", clientCA.CertFile,
				"--tls-auth-clients", auth}
			node, _, err := parseConfig(args, noEnv, os.ReadFile)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}),
				ErrorLog: log.New(io.Discard, "", 0)}
			go srv.Serve(tls.NewListener(raw, node.TLS.Clients())) // as the node's HTTP port
			defer srv.Close()
			_, port, _ := net.SplitHostPort(raw.Addr().String())
			var stderr bytes.Buffer
			if got := healthCheck(append(args, "--port", port), noEnv, os.ReadFile, &stderr); got != 0 {
				t.Fatalf("exit %d; stderr: %s", got, stderr.String())
			}
		})
	}
}
