package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// healthCheck probes this node's readiness endpoint, for container health
// checks in images that have no curl: `node --health-check [flags]` exits 0
// when GET /health/ready on the node's HTTP port answers 200. It reads the
// node's own flags and DLOCK_* variables (parseConfig), so it finds the
// port, the bind address (an unspecified one is reached on loopback), the
// password (--requirepass or --requirepass-file) and, with TLS, presents
// the node's own certificate and checks the node's against the CA (not its
// name).
func healthCheck(args []string, getenv func(string) string, readFile func(string) ([]byte, error), stderr io.Writer) int {
	cfg, _, err := parseConfig(args, getenv, readFile)
	if err != nil {
		fmt.Fprintf(stderr, "node --health-check: %v\n", err)
		return 2
	}
	host, port, err := net.SplitHostPort(cfg.HTTPAddr)
	if err != nil || port == "0" {
		fmt.Fprintf(stderr, "node --health-check: cannot probe HTTP address %q\n", cfg.HTTPAddr)
		return 2
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	client := &http.Client{Timeout: 2 * time.Second}
	scheme := "http"
	if cfg.TLS != nil {
		client.Transport = &http.Transport{TLSClientConfig: cfg.TLS.Local()}
		scheme = "https"
	}
	req, err := http.NewRequest(http.MethodGet, scheme+"://"+net.JoinHostPort(host, port)+"/health/ready", nil)
	if err != nil {
		fmt.Fprintln(stderr, "node --health-check:", err)
		return 1
	}
	if cfg.Password != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.Password)
	}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "unhealthy:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(stderr, "unhealthy: status", resp.StatusCode)
		return 1
	}
	return 0
}
