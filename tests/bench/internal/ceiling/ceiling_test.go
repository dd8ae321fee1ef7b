package ceiling

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is an io.Writer that three nodes can share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestThreeNodesOneResult runs short measurements with three nodes in this
// process, an entry per command and packed: exactly one node (the leader)
// reports, and its figures are consistent.
func TestThreeNodesOneResult(t *testing.T) {
	for _, tc := range []struct {
		name          string
		clients, pack int
	}{
		{"an entry per command", 4, 0},
		{"packed, one entry in flight", 8, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCluster(t, tc.clients, tc.pack)
			if r.Clients != tc.clients || r.Pack != tc.pack || r.Payload != 64 || r.Commits == 0 || r.CommitsPerS <= 0 || r.Entries == 0 || !strings.HasPrefix(r.Leader, "n") {
				t.Fatalf("result %+v", r)
			}
			if !(r.P50Us > 0 && r.P50Us <= r.P99Us && r.P99Us <= r.P999Us && r.P999Us <= r.MaxUs) {
				t.Fatalf("quantiles out of order: %+v", r)
			}
			// Eight clients behind one entry in flight: entries carry
			// several commands each.
			if tc.pack > 0 && r.Entries*2 > r.Commits {
				t.Fatalf("packed run committed %d commands in %d entries", r.Commits, r.Entries)
			}
		})
	}
}

// runCluster runs three nodes in this process for a 1 s measurement and
// returns the one result line they wrote. A command counts only if it
// completes inside the window, so the window must outlast a stall of the
// shared disk (a 300 ms one in cmd/raftceiling once counted nothing).
func runCluster(t *testing.T, clients, pack int) Result {
	t.Helper()
	var addrs []string
	var ls []net.Listener
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out lockedBuffer
	errs := make(chan error, 3)
	for i := range 3 {
		cfg := Config{ID: fmt.Sprintf("n%d", i+1), Addr: addrs[i], Dir: filepath.Join(dir, fmt.Sprint(i)),
			Clients: clients, Pack: pack, Payload: 64, Warmup: 100 * time.Millisecond, Measure: time.Second}
		for j := range 3 {
			if j != i {
				cfg.Peers = append(cfg.Peers, Peer{ID: fmt.Sprintf("n%d", j+1), Addr: addrs[j]})
			}
		}
		go func() { errs <- RunNode(ctx, cfg, &out) }()
	}
	for ctx.Err() == nil && !strings.Contains(out.String(), "\n") {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // a second report would show up by now
	cancel()
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one result line, got %q", out.String())
	}
	var r Result
	if err := json.Unmarshal([]byte(lines[0]), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRunNodeRefusesNoLoad(t *testing.T) {
	if err := RunNode(context.Background(), Config{ID: "n1", Dir: t.TempDir()}, &bytes.Buffer{}); err == nil {
		t.Fatal("a node without clients or a measured time must be refused")
	}
}
