package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/distlock/distlock/internal/testcerts"
)

func noEnv(string) string { return "" }

func TestParseConfigDefaults(t *testing.T) {
	cfg, _, err := parseConfig(nil, noEnv, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"id": "node1", "http": "127.0.0.1:8001", "raft": "127.0.0.1:9001", "resp": "127.0.0.1:6379",
		"data": "./data", "election": 150 * time.Millisecond, "heartbeat": 50 * time.Millisecond,
		"snapshot": 5 * time.Minute,
	}
	got := map[string]any{
		"id": cfg.ID, "http": cfg.HTTPAddr, "raft": cfg.RaftAddr, "resp": cfg.RESPAddr,
		"data": cfg.DataDir, "election": cfg.ElectionTimeout, "heartbeat": cfg.HeartbeatInterval,
		"snapshot": cfg.SnapshotInterval,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestParseConfigSeedCommandLine(t *testing.T) {
	args := strings.Fields("--id node2 --port 8002 --raft-port 9002 --peers node1:localhost:9001,node3:localhost:9003")
	cfg, _, err := parseConfig(args, noEnv, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ID != "node2" || cfg.HTTPAddr != "127.0.0.1:8002" || cfg.RaftAddr != "127.0.0.1:9002" {
		t.Errorf("cfg = %+v", cfg)
	}
	if cfg.RESPAddr != "127.0.0.1:6380" {
		t.Errorf("resp address = %s, want 127.0.0.1:6380 (6379 + port offset) so the seed's nodes do not collide", cfg.RESPAddr)
	}
	if len(cfg.Peers) != 2 || cfg.Peers[0].ID != "node1" || cfg.Peers[0].Addr != "localhost:9001" || cfg.Peers[1].Addr != "localhost:9003" {
		t.Errorf("peers = %+v", cfg.Peers)
	}
}

func TestParseConfigEnvironment(t *testing.T) {
	env := map[string]string{"DLOCK_ID": "envnode", "DLOCK_RESP_PORT": "7000", "DLOCK_PORT": "8100", "DLOCK_REQUIREPASS": "s3cret"}
	cfg, _, err := parseConfig([]string{"--port", "8200"}, func(k string) string { return env[k] }, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ID != "envnode" || cfg.RESPAddr != "127.0.0.1:7000" || cfg.Password != "s3cret" {
		t.Errorf("environment not applied: %+v", cfg)
	}
	if cfg.HTTPAddr != "127.0.0.1:8200" {
		t.Errorf("command line must win over environment: http = %s", cfg.HTTPAddr)
	}
}

func TestParseConfigPasswordFile(t *testing.T) {
	read := func(string) ([]byte, error) { return []byte("filepass\n"), nil }
	cfg, _, err := parseConfig([]string{"--requirepass-file", "/x"}, noEnv, read)
	if err != nil || cfg.Password != "filepass" {
		t.Fatalf("password = %q, err = %v", cfg.Password, err)
	}
}

func TestParseConfigRejectsBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"--port", "abc"}, want: "invalid value"},
		{args: []string{"--port", "70000"}, want: "not a port"},
		{args: []string{"--election-timeout", "fast"}, want: "invalid value"},
		{args: []string{"--peers", "node2"}, want: "id:host:port"},
		{args: []string{"--peers", "node2:localhost"}, want: "id:host:port"},
		{args: []string{"--bind", "nowhere"}, want: "not an IP"},
		{args: []string{"--log-level", "loud"}, want: "log-level"},
		{args: []string{"--no-such-flag"}, want: "not defined"},
		{args: []string{"stray"}, want: "unexpected argument"},
		{env: map[string]string{"DLOCK_RAFT_PORT": "x"}, want: "DLOCK_RAFT_PORT"},
		{args: []string{"--requirepass-file", "/does/not/exist"}, want: "requirepass-file"},
		{args: []string{"--tls-cert-file", "/x.pem"}, want: "--tls-*: tls: a certificate, its key and a CA file"},
		{args: []string{"--tls-cert-file", "/x.pem", "--tls-key-file", "/y.pem", "--tls-ca-cert-file", "/does/not/exist"}, want: "CA file"},
		{args: []string{"--tls-ca-cert-file", "/x.pem", "--tls-auth-clients", "maybe"}, want: "want yes, optional or no"},
		{args: []string{"--resp-port", "8001"}, want: "--port and --resp-port are both 8001"},
		{args: []string{"--port", "9001"}, want: "--port and --raft-port are both 9001"},
		{args: []string{"--port", "8002", "--raft-port", "6380"}, want: "--raft-port and --resp-port are both 6380"},
	}
	for _, tt := range tests {
		_, _, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, os.ReadFile)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseConfig(%q, %v) err = %v, want it to mention %q", tt.args, tt.env, err, tt.want)
		}
	}
}

func TestParseConfigHelp(t *testing.T) {
	_, _, err := parseConfig([]string{"-h"}, noEnv, os.ReadFile)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
}

func TestParseConfigTLS(t *testing.T) {
	cfg, _, err := parseConfig(nil, noEnv, os.ReadFile)
	if err != nil || cfg.TLS != nil {
		t.Fatalf("no TLS flags: TLS = %v, %v; want plain TCP", cfg.TLS, err)
	}
	dir := t.TempDir()
	ca, err := testcerts.NewCA(dir, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue("node1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DLOCK_TLS_CERT_FILE": pair.CertFile, "DLOCK_TLS_KEY_FILE": pair.KeyFile}
	cfg, _, err = parseConfig([]string{"--tls-ca-cert-file", ca.CertFile, "--tls-auth-clients", "optional"},
		func(k string) string { return env[k] }, os.ReadFile)
	if err != nil || cfg.TLS == nil {
		t.Fatalf("TLS flags and environment: TLS = %v, %v", cfg.TLS, err)
	}
	// A certificate is asked for and, if given, verified (by tlsconf's
	// VerifyConnection, which also lets the node's own in).
	if got := cfg.TLS.Clients(); got.ClientAuth != tls.RequestClientCert || got.VerifyConnection == nil {
		t.Fatalf("--tls-auth-clients optional: client auth %v, verified %v", got.ClientAuth, got.VerifyConnection != nil)
	}
}
