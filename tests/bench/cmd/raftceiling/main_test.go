package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/distlock/distlock/tests/bench/internal/ceiling"
)

// TestMain lets this test binary be the command: with RAFTCEILING_RUN=1 it
// runs run() on its arguments, both as the parent that TestEndToEnd starts
// and as the node processes that the parent starts (they inherit the
// environment and re-execute os.Executable, this binary).
func TestMain(m *testing.M) {
	if os.Getenv("RAFTCEILING_RUN") == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// TestEndToEnd runs the command the way run.sh does, for two client counts,
// and checks its JSON. Each run measures 1 s: a command counts only if it
// completes inside the window, and a 300 ms window once caught none on a
// machine busy with other tests.
func TestEndToEnd(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-clients", "1,3", "-pack", "0,1", "-duration", "1s", "-warmup", "100ms", "-json", "-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "RAFTCEILING_RUN=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var rs []ceiling.Result
	if err := json.Unmarshal(out, &rs); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(rs) != 4 {
		t.Fatalf("want 4 runs (2 client counts x 2 packs), got %+v", rs)
	}
	for i, want := range []struct{ clients, pack int }{{1, 0}, {1, 1}, {3, 0}, {3, 1}} {
		if rs[i].Clients != want.clients || rs[i].Pack != want.pack || rs[i].Commits == 0 {
			t.Fatalf("run %d: %+v, want clients %d pack %d", i, rs[i], want.clients, want.pack)
		}
	}
}

func TestBadLists(t *testing.T) {
	for _, args := range [][]string{
		{"-clients", "0"}, {"-clients", "x"}, {"-clients", "1,,2"},
		{"-pack", "-1"}, {"-pack", "a"},
	} {
		if code := run(args); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

// TestNodeExitFailsTheRun: a node that cannot start (its peers list is
// refused) ends the run with an error instead of a wait for the time limit.
func TestNodeExitFailsTheRun(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-clients", "1", "-pack", "0", "-payload", "-5", "-duration", "300ms", "-warmup", "100ms", "-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "RAFTCEILING_RUN=1")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("want a failed run, got: %s", out)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("the failure took %s to notice", took)
	}
	if !strings.Contains(string(out), "exited before a result") {
		t.Fatalf("output: %s", out)
	}
}

func TestHeadTail(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ""},
		{"a\nb", "a | b"},
		{"1\n2\n3\n4\n5\n6", "1 | 2 | 3 | 4 | 5 | 6"},
		{"1\n2\n3\n4\n5\n6\n7\n8", "1 | 2 | 3 | (2 lines) | 6 | 7 | 8"},
	}
	for _, c := range cases {
		if got := headTail(c.in, 3); got != c.want {
			t.Errorf("headTail(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
