package main

import (
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/distlock/distlock/tlsconf"
)

// healthCheck probes this node's readiness endpoint, for container health
// checks in images that have no curl: `node --health-check` exits 0 when
// GET /health/ready on DLOCK_PORT (default 8001) answers 200. With the
// DLOCK_TLS_* files set, it asks over TLS, presenting the node's own
// certificate and checking the node's against the CA (not its name).
func healthCheck(getenv func(string) string) int {
	port := getenv(envName("port"))
	if port == "" {
		port = "8001"
	}
	client := &http.Client{Timeout: 2 * time.Second}
	scheme := "http"
	files := tlsconf.Files{CertFile: getenv(envName("tls-cert-file")), KeyFile: getenv(envName("tls-key-file")),
		CAFile: getenv(envName("tls-ca-cert-file"))}
	if files.CertFile != "" || files.KeyFile != "" || files.CAFile != "" {
		tc, err := tlsconf.Load(files)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		client.Transport = &http.Transport{TLSClientConfig: tc.Local()}
		scheme = "https"
	}
	req, err := http.NewRequest(http.MethodGet, scheme+"://127.0.0.1:"+port+"/health/ready", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if pw := getenv(envName("requirepass")); pw != "" {
		req.Header.Set("Authorization", "Bearer "+pw)
	}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "unhealthy:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "unhealthy: status", resp.StatusCode)
		return 1
	}
	return 0
}
