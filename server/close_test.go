package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/distlock/distlock/lockapi"
)

// TestFollowerClosesPromptlyWithAForwardedHTTPWait: a follower closing while an
// HTTP client's waiting acquire is forwarded to the leader must close
// promptly and cleanly. Close shuts the HTTP server down first, whose
// Shutdown waits for that handler, which waits for the leader's answer on
// the forwarding connection, which Close closes only after the HTTP server.
func TestFollowerClosesPromptlyWithAForwardedHTTPWait(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	lead := c.leader()
	fi := c.follower()
	ctx := ctxT(t)
	if _, err := c.nodes[lead].Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "A", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	f := c.nodes[fi]
	done := make(chan error, 1)
	go func() {
		resp, err := http.Post("http://"+f.HTTPAddr()+"/locks/acquire", "application/json",
			strings.NewReader(`{"key":"k","owner":"B","ttl":"60s","wait":"30s"}`))
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	waitFor(t, 5*time.Second, "B queued on the leader", func() bool { return c.nodes[lead].waits.count("k") == 1 })
	start := time.Now()
	err := f.Close()
	took := time.Since(start)
	c.nodes[fi] = nil
	if took > 2*time.Second || err != nil {
		t.Fatalf("follower Close took %v and returned %v; want prompt and nil", took, err)
	}
}

// TestLeaderClosesPromptlyWithAnHTTPWait: the same on the leader itself: Close
// cancels the node's context, stopLeading wakes the waiters, and the head
// waiter's attempt then loops in leaderNow (raft still says Leader, the
// node is no longer "ready") until raft shuts down, which Close does only
// after the HTTP server's Shutdown has given up on that handler.
func TestLeaderClosesPromptlyWithAnHTTPWait(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) { c.HTTPAddr = "127.0.0.1:0" })
	ctx := ctxT(t)
	if _, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "A", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	go func() {
		resp, err := http.Post("http://"+n.HTTPAddr()+"/locks/acquire", "application/json",
			strings.NewReader(`{"key":"k","owner":"B","ttl":"60s","wait":"30s"}`))
		if err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, 5*time.Second, "B queued", func() bool { return n.waits.count("k") == 1 })
	start := time.Now()
	err := n.Close()
	if took := time.Since(start); took > 2*time.Second || err != nil {
		t.Fatalf("leader Close took %v and returned %v; want prompt and nil", took, err)
	}
}
