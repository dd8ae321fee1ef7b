//go:build unix

// Package tests holds the end-to-end tests: they build ./cmd/node once, run
// real node processes on loopback ports chosen at run time, and drive them
// with real clients (go-redis, redis-cli, net/http). Processes are stopped
// by PID. Tests that need an outside tool skip when it is absent, except
// under CI=true, where they fail instead.
package tests
