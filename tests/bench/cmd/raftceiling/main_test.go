package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"testing"

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
// and checks its JSON.
func TestEndToEnd(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-clients", "1,3", "-duration", "300ms", "-warmup", "100ms", "-json", "-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "RAFTCEILING_RUN=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var rs []ceiling.Result
	if err := json.Unmarshal(out, &rs); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(rs) != 2 || rs[0].Clients != 1 || rs[1].Clients != 3 || rs[0].Commits == 0 || rs[1].Commits == 0 {
		t.Fatalf("results %+v", rs)
	}
}

func TestBadClientCounts(t *testing.T) {
	for _, arg := range []string{"0", "x", "1,,2"} {
		if code := run([]string{"-clients", arg}); code != 2 {
			t.Errorf("-clients %q: exit %d, want 2", arg, code)
		}
	}
}
