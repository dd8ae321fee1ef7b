package main

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

// healthCheck probes this node's readiness endpoint, for container health
// checks in images that have no curl: `node --health-check` exits 0 when
// GET /health/ready on DLOCK_PORT (default 8001) answers 200.
func healthCheck(getenv func(string) string) int {
	port := getenv(envName("port"))
	if port == "" {
		port = "8001"
	}
	req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:"+port+"/health/ready", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if pw := getenv(envName("requirepass")); pw != "" {
		req.Header.Set("Authorization", "Bearer "+pw)
	}
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
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
