package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distlock/distlock/tests/bench/internal/runner"
)

func writeRun(t *testing.T, dir string, r runner.Result) {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	name := r.Label + "-" + r.Mode + "-" + string(rune('0'+r.Clients%10)) + ".json"
	if err := os.WriteFile(filepath.Join(dir, "runs", name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// runDir returns a report directory and a function that writes a run of
// label in mode at clients into it, with the given cycles/s, handovers/s
// and acquire p50 (us).
func runDir(t *testing.T) (string, func(label, mode string, clients int, cps, hps, p50 float64)) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "runs"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, func(label, mode string, clients int, cps, hps, p50 float64) {
		writeRun(t, dir, runner.Result{Label: label, System: label, Mode: mode, Clients: clients, CyclesPerS: cps, HandoversPerS: hps,
			Acquire: runner.Latency{P50Us: p50, P99Us: 2500, P999Us: 4000}})
	}
}

func TestRender(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "runs"), 0o755)
	base := func(label, mode string, clients int, cps, hps float64) runner.Result {
		return runner.Result{Label: label, System: label, Mode: mode, Clients: clients, CyclesPerS: cps, HandoversPerS: hps,
			FencingActive: label != "redis-aof", Elections: 0, Acquire: runner.Latency{P50Us: 800, P99Us: 2500, P999Us: 4000}}
	}
	writeRun(t, dir, base("native", "uncontended", 1, 500, 0))
	writeRun(t, dir, base("etcd", "uncontended", 1, 100, 0)) // 5x: pass (goal 4x)
	writeRun(t, dir, base("native", "wait", 64, 500, 450))   // handovers
	writeRun(t, dir, base("etcd", "wait", 64, 10, 10))       // 45x: pass
	writeRun(t, dir, base("native", "uncontended", 64, 1000, 0))
	writeRun(t, dir, base("etcd", "uncontended", 64, 500, 0)) // 2x: FAIL (goal 6x)
	writeRun(t, dir, runner.Result{Label: "setnx", System: "setnx", Mode: "hot", Clients: 1, Error: "probe cycle failed: acquire: ERR unknown command 'SET', with args beginning with: 'a'"})
	writeRun(t, dir, runner.Result{Label: "setnx", System: "setnx", Mode: "hot", Clients: 4, Error: "probe cycle failed: acquire: ERR unknown command 'SET', with args beginning with: 'b'"})
	os.WriteFile(filepath.Join(dir, "ping.tsv"), []byte("redis\tPING_INLINE\t100000\nnode\tPING_INLINE\t80000\nredis\tPING_MBULK\t100000\nnode\tPING_MBULK\t60000\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "pipeline.tsv"), []byte("redis-aof\tSET\t90000\nnode\tSET\t9000.5\nbroken line\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "metrics-before.json"), []byte(`{"node1":{"raft_election_count":1,"raft_term":2},"etcd-e1":{"etcd_server_leader_changes_seen_total":1}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "metrics-after.json"), []byte(`{"node1":{"raft_election_count":1,"raft_term":2},"etcd-e1":{"etcd_server_leader_changes_seen_total":1}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "meta.txt"), []byte("nproc: 2\nCPU: Test CPU\n"), 0o644)

	md, err := Render(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"- **CPU**: Test CPU",
		"| uncontended, 1 client: native cycles/s vs etcd Mutex | 500 vs 100 cycles/s | 5.00x | ≥ 4x |  | pass |",
		"| uncontended, 64 clients: native cycles/s vs etcd Mutex | 1000 vs 500 cycles/s | 2.00x | ≥ 6x |  | FAIL |",
		"vs etcd blocking Lock | 450 vs 10.0 handovers/s | 45.00x | ≥ 10x |  | pass |",
		"no native uncontended run at 256 clients",
		"| 0.60x | ≥ 0.7x |  | FAIL |", // the worse of the two ping tests
		"p50 800 µs, p99 2.50 ms, p999 4.00 ms",
		"0 elections, raft_term +0 | | 0 | | pass |",
		"| setnx | all | not run: probe cycle failed: acquire: ERR unknown command 'SET' |",
		"| node1 | 1 → 1 | 2 → 2 | - |",
		"## redis-benchmark -t set -P 16 (pipelined writes, not a target)",
		"| redis-aof | SET | 90000 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in:\n%s", want, md)
		}
	}
}

// TestFloorTarget: with floor.json the 1-client latency row is judged
// against 2 x (fsync + round trip).
func TestFloorTarget(t *testing.T) {
	for _, c := range []struct {
		p50  float64
		want string
	}{
		{500, "p50 500 µs (p99 2.50 ms, p999 4.00 ms) vs 600 µs | 0.83x | ≤ 1x |  | pass |"},
		{900, "p50 900 µs (p99 2.50 ms, p999 4.00 ms) vs 600 µs | 1.50x | ≤ 1x |  | FAIL |"},
	} {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "runs"), 0o755)
		writeRun(t, dir, runner.Result{Label: "native", System: "native", Mode: "uncontended", Clients: 1, CyclesPerS: 100,
			Acquire: runner.Latency{P50Us: c.p50, P99Us: 2500, P999Us: 4000}})
		os.WriteFile(filepath.Join(dir, "floor.json"), []byte(`{"fsync_p50_us":250,"rtt_p50_us":50,"fsync_n":9,"rtt_n":9}`), 0o644)
		md, err := Render(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(md, "2 x (fsync 250 µs + loopback round trip 50 µs)") || !strings.Contains(md, c.want) {
			t.Errorf("p50 %v: missing %q in:\n%s", c.p50, c.want, md)
		}
	}
}

func TestElectionsFail(t *testing.T) {
	d := &Data{
		Before: map[string]map[string]float64{"node1": {"raft_election_count": 1, "raft_term": 2}},
		After:  map[string]map[string]float64{"node1": {"raft_election_count": 2, "raft_term": 3}},
	}
	el, td, ok := d.Elections()
	if !ok || el != 1 || td != 1 {
		t.Fatal(el, td, ok)
	}
	if !strings.Contains(d.Markdown(), "1 elections, raft_term +1 | | 0 | | FAIL |") {
		t.Fatal(d.Markdown())
	}
}

// TestCeilingLimits: with ceiling.json each target also shows what raft
// alone reaches against the same baseline, per way to commit, and a target
// that no way reached says so.
func TestCeilingLimits(t *testing.T) {
	dir, run := runDir(t)
	run("native", "uncontended", 64, 3000, 0, 9000)
	run("etcd", "uncontended", 64, 1000, 0, 9000) // 3x; raft alone 5x, packed 7x: a plain FAIL
	run("native", "uncontended", 256, 5000, 0, 9000)
	run("redis-aof", "uncontended", 256, 16000, 0, 9000) // 0.31x; raft alone 0.94x: a plain FAIL
	writeRun(t, dir, runner.Result{Label: "native", System: "native", Mode: "uncontended", Clients: 1, CyclesPerS: 250,
		Targets: []string{"n1:1", "n2:2"}, Leader: "n2:2", Acquire: runner.Latency{P50Us: 1600, P99Us: 2500, P999Us: 4000}})
	run("etcd", "uncontended", 1, 200, 0, 2000) // raft alone 300 cycles/s = 1.5x: below the goal too
	run("native", "wait", 64, 500, 500, 0)
	run("etcd", "wait", 64, 80, 80, 0) // raft alone 600 serial commands/s = 7.5x: below the goal too
	os.WriteFile(filepath.Join(dir, "floor.json"), []byte(`{"fsync_p50_us":450,"prealloc_fsync_p50_us":300,"rtt_p50_us":50,"fsync_n":9,"rtt_n":9}`), 0o644)
	os.WriteFile(filepath.Join(dir, "ceiling.json"), []byte(`[
		{"clients":1,"commits_per_s":600,"entries":3000,"seconds":5,"p50_us":1300,"p99_us":6000,"p999_us":9000,"max_us":50000},
		{"clients":1,"pack":2,"commits_per_s":590,"p50_us":1350,"p99_us":6000,"p999_us":9000,"max_us":50000},
		{"clients":64,"pack":2,"commits_per_s":14000,"entries":5000,"seconds":5,"p50_us":4000,"p99_us":15000,"p999_us":20000,"max_us":30000},
		{"clients":64,"commits_per_s":10000,"p50_us":5000,"p99_us":15000,"p999_us":20000,"max_us":30000},
		{"clients":256,"commits_per_s":30000,"p50_us":8000,"p99_us":20000,"p999_us":28000,"max_us":30000}]`), 0o644)
	md, err := Render(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| 3000 vs 1000 cycles/s | 3.00x | ≥ 6x | an entry per command: 10000 commands/s = 5000 cycles/s, 5.00x; packed (2 in flight): 14000 commands/s = 7000 cycles/s, 7.00x | FAIL |",
		"| 5000 vs 16000 cycles/s | 0.31x | ≥ 0.5x | an entry per command: 30000 commands/s = 15000 cycles/s, 0.94x | FAIL |",
		"| 250 vs 200 cycles/s (its client on a follower) | 1.25x | ≥ 4x | an entry per command: 600 commands/s = 300 cycles/s, 1.50x; packed (2 in flight): 590 commands/s = 295 cycles/s, 1.48x | FAIL; raft alone was below the goal too |",
		"| 500 vs 80.0 handovers/s | 6.25x | ≥ 10x | 600 serial commands/s: 7.50x | FAIL; raft alone was below the goal too |",
		"2 x (fsync 450 µs; over preallocated space, as the WAL writes: 300 µs + loopback round trip 50 µs)",
		"vs 1.00 ms (its client on a follower) | 1.60x | ≤ 1x | commit p50 1.30 ms: 1.30x | FAIL; raft alone was above the bound too |",
		"| 1 | an entry per command | 600 | 600 | 1.30 ms / 6.00 ms / 9.00 ms | 50.00 ms |",
		"| 64 | packed (2 in flight) | 14000 | 1000 | 4.00 ms / 15.00 ms / 20.00 ms | 30.00 ms |",
		"| 256 | an entry per command | 30000 | - |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in:\n%s", want, md)
		}
	}
}

// TestLeaderOnly: with native-leader runs in the matrix, each lock target
// also shows the figure with every client on the leader, against the same
// baseline, and the verdict stays the spread clients' own; without them the
// rows are unchanged.
func TestLeaderOnly(t *testing.T) {
	for _, withLeader := range []bool{true, false} {
		dir, run := runDir(t)
		run("native", "uncontended", 64, 3000, 0, 9000)
		run("etcd", "uncontended", 64, 1000, 0, 9000)
		run("native", "uncontended", 256, 7000, 0, 9000)
		run("redis-aof", "uncontended", 256, 16000, 0, 9000)
		run("native", "uncontended", 1, 250, 0, 1000)
		run("etcd", "uncontended", 1, 200, 0, 2000)
		run("native", "wait", 64, 500, 500, 0)
		run("etcd", "wait", 64, 80, 80, 0)
		if withLeader {
			run("native-leader", "uncontended", 64, 4500, 0, 6000)
			run("native-leader", "uncontended", 256, 8800, 0, 6000)
			run("native-leader", "uncontended", 1, 300, 0, 800)
			run("native-leader", "wait", 64, 560, 560, 0)
		}
		os.WriteFile(filepath.Join(dir, "floor.json"), []byte(`{"fsync_p50_us":200,"rtt_p50_us":50,"fsync_n":9,"rtt_n":9}`), 0o644)
		md, err := Render(dir)
		if err != nil {
			t.Fatal(err)
		}
		rows := []struct{ plain, lead string }{
			{"| 3000 vs 1000 cycles/s | 3.00x | ≥ 6x |  | FAIL |", "| 3000 vs 1000 cycles/s; every client on the leader: 4500, 4.50x | 3.00x | ≥ 6x |  | FAIL |"},
			{"| 7000 vs 16000 cycles/s | 0.44x | ≥ 0.5x |  | FAIL |", "| 7000 vs 16000 cycles/s; every client on the leader: 8800, 0.55x | 0.44x | ≥ 0.5x |  | FAIL |"},
			{"| 250 vs 200 cycles/s | 1.25x | ≥ 4x |", "| 250 vs 200 cycles/s; every client on the leader: 300, 1.50x | 1.25x | ≥ 4x |"},
			{"| 500 vs 80.0 handovers/s | 6.25x | ≥ 10x |", "| 500 vs 80.0 handovers/s; every client on the leader: 560, 7.00x | 6.25x | ≥ 10x |"},
			{"vs 500 µs | 2.00x | ≤ 1x |", "vs 500 µs; on the leader: p50 800 µs, 1.60x | 2.00x | ≤ 1x |"},
		}
		for _, r := range rows {
			want, not := r.plain, r.lead
			if withLeader {
				want, not = r.lead, r.plain
			}
			if !strings.Contains(md, want) || strings.Contains(md, not) {
				t.Errorf("leader runs %v: want %q and not %q in:\n%s", withLeader, want, not, md)
			}
		}
	}
}

// TestPassAboveCeilingIsFlagged: a target passed where raft alone stayed
// below the goal contradicts the bound, and the verdict says so.
func TestPassAboveCeilingIsFlagged(t *testing.T) {
	tg := target{ok: true, goal: 4, limit: "x", limitRatio: 2}
	if v := tg.verdict(); !strings.Contains(v, "above raft alone") {
		t.Fatalf("verdict %q", v)
	}
}

// TestEtcdTryLockNote: the hot-key section explains etcd's TryLock
// livelock when, and only when, etcd ran in that mode.
func TestEtcdTryLockNote(t *testing.T) {
	tests := []struct {
		name   string
		labels []string
		want   bool
	}{
		{"etcd among the hot runs", []string{"native", "etcd"}, true},
		{"no etcd hot run", []string{"native", "setnx"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, "runs"), 0o755)
			for _, l := range tt.labels {
				writeRun(t, dir, runner.Result{Label: l, System: l, Mode: "hot", Clients: 4, CyclesPerS: 10, AttemptsPerS: 100})
			}
			writeRun(t, dir, runner.Result{Label: "etcd", System: "etcd", Mode: "uncontended", Clients: 4, CyclesPerS: 10})
			md, err := Render(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(md, "a livelock of `TryLock` itself"); got != tt.want {
				t.Errorf("TryLock note shown: %v, want %v", got, tt.want)
			}
		})
	}
}
