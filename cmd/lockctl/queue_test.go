package main

import (
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tidwall/redcon"
)

// slowNode is a minimal node: acquireDelay before granting token 1,
// renewDelay before renewing; release answers 1.
func slowNode(t *testing.T, acquireDelay, renewDelay time.Duration) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); ln.Close() })
	wait := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-stop:
		}
	}
	go redcon.Serve(ln, func(conn redcon.Conn, cmd redcon.Command) {
		switch strings.ToUpper(string(cmd.Args[0])) {
		case "HELLO":
			conn.WriteError("ERR unknown command 'HELLO'")
		case "LOCK.ACQUIRE":
			wait(acquireDelay)
			conn.WriteInt64(1)
		case "LOCK.RENEW":
			wait(renewDelay)
			conn.WriteInt64(1)
		case "LOCK.RELEASE":
			conn.WriteInt64(1)
		default:
			conn.WriteString("OK")
		}
	}, func(redcon.Conn) bool { return true }, nil)
	return ln.Addr().String()
}

// TestInterruptWhileQueued: ^C while lockctl queues for a lock
// (--timeout) ends lockctl at once with 128+SIGINT.
func TestInterruptWhileQueued(t *testing.T) {
	addr := slowNode(t, time.Minute, 0)
	c, _, errb, sigs := testCLI(nil)
	time.AfterFunc(200*time.Millisecond, func() { sigs <- syscall.SIGINT })
	start := time.Now()
	code := c.run([]string{"--addr", addr, "--request-timeout", "1s", "lock", "--timeout", "4s", "k", "--", "true"})
	took := time.Since(start)
	if code != 128+int(syscall.SIGINT) || took > 1500*time.Millisecond {
		t.Fatalf("exit %d after %s (SIGINT at 200ms); stderr %q", code, took.Round(10*time.Millisecond), errb)
	}
}

// TestQueueLongerThanTTL: lockctl lock --ttl 1s --timeout 5s, where the
// lock comes free after 1.5s and the cluster commits a renewal in 40ms:
// the command runs.
func TestQueueLongerThanTTL(t *testing.T) {
	addr := slowNode(t, 1500*time.Millisecond, 40*time.Millisecond)
	c, _, errb, _ := testCLI(nil)
	code := c.run([]string{"--addr", addr, "lock", "--ttl", "1s", "--timeout", "5s", "k", "--", "true"})
	if code != 0 {
		t.Fatalf("exit %d; stderr %q", code, errb)
	}
}
