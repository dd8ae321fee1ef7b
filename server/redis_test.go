package server

import (
	"testing"
	"time"

	"github.com/distlock/distlock/lockapi"
)

func do(t *testing.T, n *Node, args ...string) lockapi.Value {
	t.Helper()
	argv := make([][]byte, len(args))
	for i, a := range args {
		argv[i] = []byte(a)
	}
	v, err := n.Do(ctxT(t), argv)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return v
}

// TestNodeDoSharesTheLockKeyspace runs key commands on a node: a SET key is
// a lock for the lock service, a lock is a string for GET, EVALSHA of an
// unknown script is refused before the log, and DEL wakes a waiter.
func TestNodeDoSharesTheLockKeyspace(t *testing.T) {
	n := startNode(t, t.TempDir(), noClockCheckpoints) // it counts the log's entries
	ctx := ctxT(t)
	if v := do(t, n, "SET", "k", "alice", "NX", "PX", "30000"); v.String() != "OK" {
		t.Fatalf("SET = %v", v)
	}
	l, err := n.Info(ctx, "k")
	if err != nil || l.Owner != "alice" || l.Token == 0 || l.Remaining <= 29*time.Second {
		t.Fatalf("Info of a SET key = %+v, %v", l, err)
	}
	if _, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "bob", TTL: time.Second}); err == nil {
		t.Fatal("Acquire of a SET key by another owner succeeded")
	}
	if v := do(t, n, "GET", "k"); v.Str != "alice" {
		t.Fatalf("GET = %v", v)
	}
	before := n.fsm.AppliedIndex()
	if v := do(t, n, "EVALSHA", "0123456789012345678901234567890123456789", "0"); v.Str != "NOSCRIPT No matching script. Please use EVAL." {
		t.Fatalf("EVALSHA = %v", v)
	}
	if v := do(t, n, "EVAL", "return +", "0"); !v.IsError() {
		t.Fatalf("EVAL of a bad script = %v", v)
	}
	if n.fsm.AppliedIndex() != before {
		t.Fatal("refused scripts went through the log")
	}
	if v := do(t, n, "HSET", "h", "f", "1"); v.Int != 1 {
		t.Fatalf("HSET = %v", v)
	}
	if _, err := n.Info(ctx, "h"); err != lockapi.ErrWrongType {
		t.Fatalf("Info of a hash: %v", err)
	}
	if locks, _ := n.List(ctx); len(locks) != 1 {
		t.Fatalf("List = %+v, want only k", locks)
	}
	done := make(chan error, 1)
	go func() {
		_, err := n.Acquire(ctx, lockapi.AcquireRequest{Key: "k", Owner: "bob", TTL: time.Second, Wait: 5 * time.Second})
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if v := do(t, n, "DEL", "k"); v.Int != 1 {
		t.Fatalf("DEL = %v", v)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waiter: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("DEL did not wake the waiter")
	}
	if st := n.KeyStats(); st.Keys != 2 || st.Expires != 1 {
		t.Fatalf("KeyStats = %+v", st)
	}
}

// TestClusterDoForwarding runs writes, reads and scripts through a follower.
func TestClusterDoForwarding(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	f := c.nodes[c.follower()]
	sha := do(t, f, "SCRIPT", "LOAD", "return redis.call('get', KEYS[1])").Str
	if v := do(t, f, "SET", "fk", "v", "PX", "10000"); v.String() != "OK" {
		t.Fatalf("SET via follower = %v", v)
	}
	if v := do(t, f, "EVALSHA", sha, "1", "fk"); v.Str != "v" {
		t.Fatalf("EVALSHA via follower = %v", v)
	}
	if v := do(t, f, "PTTL", "fk"); v.Int <= 9000 {
		t.Fatalf("PTTL via follower = %v", v)
	}
	if v := do(t, f, "EVALSHA_RO", sha, "1", "fk"); v.Str != "v" {
		t.Fatalf("EVALSHA_RO via follower = %v", v)
	}
}
