//go:build unix

package chaos

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	flagSeed      = flag.Int64("chaos.seed", 0, "first seed (0: the default seeds 1 and 2)")
	flagSeeds     = flag.Int("chaos.seeds", 1, "number of seeds to run, starting at -chaos.seed")
	flagNodes     = flag.Int("chaos.nodes", 3, "cluster size: 3 or 5")
	flagDuration  = flag.Duration("chaos.duration", 30*time.Second, "how long faults are injected, per seed")
	flagFaults    = flag.String("chaos.faults", "all", "fault mix, kind[:weight],... of: "+strings.Join(AllFaults, ", "))
	flagElection  = flag.Duration("chaos.election", 150*time.Millisecond, "the nodes' --election-timeout")
	flagArtifacts = flag.String("chaos.artifacts", "", "directory for run artifacts (default: a new directory under os.TempDir())")
	flagKeep      = flag.Bool("chaos.keep", false, "keep the artifacts of passing runs too")
	flagWorkers   = flag.Int("chaos.workers", 3, "clients contending for each key")
	flagOpTimeout = flag.Duration("chaos.op-timeout", 2*time.Second, "client timeout per request (plus its WAIT)")
	flagNodeBin   = flag.String("chaos.node-bin", "", "use this node binary instead of building ./cmd/node")
)

// nodeBin is the node binary, built once by TestMain.
var nodeBin string

func TestMain(m *testing.M) {
	flag.Parse()
	nodeBin = *flagNodeBin
	if !testing.Short() && nodeBin == "" {
		dir, err := os.MkdirTemp("", "distlock-chaos-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		nodeBin = filepath.Join(dir, "node")
		build := exec.Command("go", "build", "-o", nodeBin, "../../cmd/node")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building ./cmd/node:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if nodeBin != "" && *flagNodeBin == "" {
		os.RemoveAll(filepath.Dir(nodeBin))
	}
	os.Exit(code)
}

// runChaos runs one configured run and returns its report. Artifacts go to
// a fresh directory that is removed when the run passes (unless
// -chaos.keep) and printed when it fails.
func runChaos(t *testing.T, cfg Config, wantFail bool) *Report {
	t.Helper()
	skipShort(t)
	base := *flagArtifacts
	if base == "" {
		base = os.TempDir()
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("distlock-chaos-%s-seed%d-", strings.ReplaceAll(t.Name(), "/", "_"), cfg.Seed)
	dir, err := os.MkdirTemp(base, name)
	if err != nil {
		t.Fatal(err)
	}
	cfg.NodeBin, cfg.DataDir, cfg.Dir, cfg.Logf = nodeBin, t.TempDir(), dir, t.Logf
	if cfg.ElectionTimeout == 0 {
		cfg.ElectionTimeout = *flagElection
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration+5*time.Minute)
	defer cancel()
	start := time.Now()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("seed %d: harness error: %v (artifacts in %s)", cfg.Seed, err, dir)
	}
	t.Logf("run took %s\n%s", time.Since(start).Round(time.Second), rep.Summary())
	if rep.Failed() != wantFail {
		t.Errorf("seed %d: checkers failed = %v, want %v; reproduce with: go test ./tests/chaos -run '%s' -chaos.seed=%d -chaos.nodes=%d -chaos.duration=%s; history, porcupine HTML and node logs in %s",
			cfg.Seed, rep.Failed(), wantFail, t.Name(), cfg.Seed, cfg.Nodes, cfg.Duration, dir)
		return rep
	}
	if len(rep.Inconclusive) > 0 {
		t.Logf("seed %d: some checks were inconclusive; artifacts kept in %s", cfg.Seed, dir)
	} else if !*flagKeep {
		os.RemoveAll(dir)
	}
	return rep
}

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos runs are skipped with -short")
	}
}

// TestChaos is the chaos run: every fault, under load, on 3 nodes for two
// seeds by default. -chaos.seed, -chaos.seeds, -chaos.nodes and
// -chaos.duration select a longer run.
func TestChaos(t *testing.T) {
	skipShort(t)
	seeds := []int64{1, 2}
	if *flagSeed != 0 {
		seeds = nil
		for i := 0; i < max(*flagSeeds, 1); i++ {
			seeds = append(seeds, *flagSeed+int64(i))
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runChaos(t, Config{Seed: seed, Nodes: *flagNodes, Duration: *flagDuration, Faults: *flagFaults, SnapshotPressure: true,
				WorkersPerKey: *flagWorkers, OpTimeout: *flagOpTimeout}, false)
		})
	}
}

// plantedSeed returns the seed for the planted-bug tests.
func plantedSeed() int64 {
	if *flagSeed != 0 {
		return *flagSeed
	}
	return 11
}

// TestPlantedStaleReads proves the checkers catch reads served from a
// node's own state (--test-unsafe stale-reads): followers and deposed
// leaders are cut off while the majority moves on, and readers read
// through every node. The same run without the bug must pass.
func TestPlantedStaleReads(t *testing.T) {
	skipShort(t)
	cfg := Config{Seed: plantedSeed(), Nodes: 3, Duration: 15 * time.Second, Quiet: 2 * time.Second,
		Faults: "isolate-one:3,isolate-leader:1,pause-leader:1"}
	t.Run("bug", func(t *testing.T) {
		c := cfg
		c.Unsafe = "stale-reads"
		rep := runChaos(t, c, true)
		t.Logf("failed checkers: %v", rep.FailedCheckers())
	})
	t.Run("control", func(t *testing.T) { runChaos(t, cfg, false) })
}

// TestPlantedWallClockExpiry proves the checkers catch a leader that takes
// cluster time from its wall clock (--test-unsafe wall-clock-expiry): wall
// clocks jump forward and held locks expire early. The same run without
// the bug must pass.
func TestPlantedWallClockExpiry(t *testing.T) {
	skipShort(t)
	cfg := Config{Seed: plantedSeed(), Nodes: 3, Duration: 15 * time.Second, Quiet: 2 * time.Second,
		Faults: "clock-forward"}
	t.Run("bug", func(t *testing.T) {
		c := cfg
		c.Unsafe = "wall-clock-expiry"
		rep := runChaos(t, c, true)
		t.Logf("failed checkers: %v", rep.FailedCheckers())
	})
	t.Run("control", func(t *testing.T) { runChaos(t, cfg, false) })
}

// TestPausedHolderIsFenced shows the fencing check at work: lock holders
// stall past their TTL in the middle of a read-modify-write and then write
// anyway; by then another client holds the lock with a higher token, so
// the resource turns the stale write away and no update is lost.
func TestPausedHolderIsFenced(t *testing.T) {
	rep := runChaos(t, Config{Seed: plantedSeed(), Nodes: 3, Duration: 10 * time.Second, Quiet: time.Second, Faults: "pause-holder"}, false)
	if rep.StaleAccesses == 0 || rep.StaleRejected == 0 {
		t.Errorf("%d stale writes, %d rejected: want some of them rejected by fencing", rep.StaleAccesses, rep.StaleRejected)
	}
}

var flagReplay = flag.String("chaos.replay", "", "re-run the offline checkers on a saved history.json (with -run TestReplay)")

// TestReplay re-checks a saved history (-chaos.replay=dir/history.json):
// linearizability, mutual exclusion, reads, tokens and the resource.
func TestReplay(t *testing.T) {
	if *flagReplay == "" {
		t.Skip("no -chaos.replay history")
	}
	h, err := LoadHistory(*flagReplay)
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{cfg: Config{Dir: t.TempDir(), LinTimeout: 5 * time.Minute}, h: h, owners: map[string]int{}}
	for _, op := range h.Ops() {
		if _, ok := r.owners[op.Owner]; !ok && op.Kind != KindInfo {
			r.owners[op.Owner] = op.Client
		}
	}
	rep := &Report{Dir: r.cfg.Dir}
	r.check(rep)
	t.Logf("%s", rep.Summary())
}
