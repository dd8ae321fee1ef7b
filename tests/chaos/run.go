//go:build unix

package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config describes one chaos run.
type Config struct {
	// Seed drives the fault schedule and every client's choices.
	Seed int64
	// Nodes is the cluster size (3 or 5).
	Nodes int
	// Duration is how long faults are injected under load.
	Duration time.Duration
	// Quiet is the fault-free period under load after the final heal and
	// restart of every node. Default 3s.
	Quiet time.Duration
	// Faults is the fault mix, "kind[:weight],..." ("" = every fault but
	// clock-forward; see AllFaults).
	Faults string
	// Unsafe is passed to every node as --test-unsafe (planted bugs).
	Unsafe string
	// ElectionTimeout is each node's --election-timeout. Default 150ms.
	ElectionTimeout time.Duration
	// SnapshotPressure gives nodes tiny snapshot thresholds so a lagging
	// node catches up by snapshot install.
	SnapshotPressure bool
	// Keys is the number of hot keys (TTLs 1s, 1.5s, 2s, ...). Default 3.
	Keys int
	// WorkersPerKey contend for each key. Default 3.
	WorkersPerKey int
	// OpTimeout bounds each request (plus its WAIT). Default 2s.
	OpTimeout time.Duration
	// LinTimeout bounds the porcupine check. Default 60s.
	LinTimeout time.Duration
	// NodeBin is the node binary; DataDir holds the nodes' data; Dir
	// receives the artifacts (history, HTML, node logs).
	NodeBin, DataDir, Dir string
	// Logf reports progress (t.Logf).
	Logf func(format string, args ...any)
}

func (cfg *Config) defaults() error {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Nodes < 3 || cfg.Nodes > 7 {
		return fmt.Errorf("chaos: %d nodes (want 3-7)", cfg.Nodes)
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 30 * time.Second
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = 3 * time.Second
	}
	if cfg.ElectionTimeout <= 0 {
		cfg.ElectionTimeout = 150 * time.Millisecond
	}
	if cfg.Keys <= 0 {
		cfg.Keys = 3
	}
	if cfg.WorkersPerKey <= 0 {
		cfg.WorkersPerKey = 3
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 2 * time.Second
	}
	if cfg.LinTimeout <= 0 {
		cfg.LinTimeout = 60 * time.Second
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.NodeBin == "" || cfg.DataDir == "" || cfg.Dir == "" {
		return errors.New("chaos: NodeBin, DataDir and Dir are required")
	}
	return nil
}

// runner is the state of one run.
type runner struct {
	cfg      Config
	c        *cluster
	h        *History
	res      *resource
	keys     []keySpec
	workers  []*worker
	owners   map[string]int // owner -> client id
	auditor  *actor
	killAlls []killAllRecord
	nextID   int
	lag      *lagMonitor
	ctx      context.Context // the whole run's: recovery steps are not cut short by the end of the fault period
}

// overloaded is the harness timer lag above which a timing verdict
// (liveness, readiness, convergence time) is reported as inconclusive.
const overloaded = 250 * time.Millisecond

// timing records a failed timing check: a violation, or, if the machine
// was overloaded since history time `since`, an inconclusive result.
func (r *runner) timing(rep *Report, since int64, checker, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if lag := r.lag.maxSince(since); lag > overloaded {
		rep.mu.Lock()
		defer rep.mu.Unlock()
		rep.Inconclusive = append(rep.Inconclusive, fmt.Sprintf("%s: %s; not counted: the machine was overloaded (harness timers up to %s late)", checker, msg, lag.Round(time.Millisecond)))
		return
	}
	rep.violate(checker, "%s", msg)
}

// killAllRecord is what the durability checker needs about one kill-all.
type killAllRecord struct {
	KillAt, RestartAt, ReadyAt int64
	ProbeKey                   string
	ProbeToken                 uint64 // 0: the probe lock could not be taken
	ProbeSeen                  *Op    // the probe's read after the restart
}

// Run performs one chaos run and checks its history. The error is for
// harness failures (the cluster could not even start); checker verdicts
// are in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	faults, err := parseFaults(cfg.Faults)
	if err != nil {
		return nil, err
	}
	args := []string{"--election-timeout", cfg.ElectionTimeout.String(), "--heartbeat-interval", (cfg.ElectionTimeout / 3).String(), "--log-level", "info"}
	if cfg.SnapshotPressure {
		args = append(args, "--snapshot-threshold", "24", "--trailing-logs", "8", "--snapshot-interval", "1s")
	}
	if cfg.Unsafe != "" {
		args = append(args, "--test-unsafe", cfg.Unsafe)
	}
	c, err := newCluster(cfg.NodeBin, cfg.Nodes, cfg.DataDir, cfg.Dir, args)
	if err != nil {
		return nil, err
	}
	defer c.close()
	r := &runner{cfg: cfg, c: c, h: NewHistory(), owners: map[string]int{}, ctx: ctx}
	r.res = newResource(r.h)
	r.lag = &lagMonitor{h: r.h}
	lagCtx, stopLag := context.WithCancel(ctx)
	defer stopLag()
	go r.lag.run(lagCtx)
	rep := &Report{Seed: cfg.Seed, Nodes: cfg.Nodes, Dir: cfg.Dir, Unsafe: cfg.Unsafe}

	for i := range c.nodes {
		if err := c.start(i); err != nil {
			return nil, err
		}
	}
	if err := r.waitReady(ctx, 30*time.Second); err != nil {
		return nil, err
	}
	cfg.Logf("seed %d: %d nodes up (pids %v), artifacts in %s", cfg.Seed, cfg.Nodes, c.pids(), cfg.Dir)

	// Load and faults.
	r.setupClients()
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var load sync.WaitGroup
	for _, w := range r.workers {
		load.Add(1)
		go func() { defer load.Done(); w.run(loadCtx) }()
	}
	for i, k := range r.keys {
		rd := newActor(r, r.newID(), fmt.Sprintf("reader-%d", i))
		load.Add(1)
		go func() { defer load.Done(); rd.reader(loadCtx, k.name) }()
	}
	nem := &nemesis{r: r, rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6e656d)), faults: faults}
	faultCtx, stopFaults := context.WithTimeout(ctx, cfg.Duration)
	nem.run(faultCtx)
	stopFaults()

	// Heal, restart every node, then a quiet period under load.
	ev := r.h.AddEvent("heal", "")
	if err := c.heal(); err != nil {
		rep.violate("harness", "%v", err)
	}
	r.h.EndEvent(ev, "")
	ev = r.h.AddEvent("final-restart", "")
	r.h.EndEvent(ev, r.killAll(ctx, 200*time.Millisecond))
	ev = r.h.AddEvent("quiet", "")
	sleep(ctx, cfg.Quiet)
	stopLoad()
	load.Wait()
	r.h.EndEvent(ev, "")

	// Live checks on the healed cluster.
	r.checkLiveness(ctx, rep)
	r.checkConvergence(ctx, rep)
	for i := range c.nodes {
		c.stop(i, syscall.SIGTERM, 5*time.Second)
	}
	for _, crash := range c.crashes() {
		rep.violate("crash", "%s (see its log)", crash)
	}

	// Offline checks over the history.
	r.check(rep)
	if err := r.h.Save(filepath.Join(cfg.Dir, "history.json")); err != nil {
		rep.violate("harness", "saving history: %v", err)
	}
	rep.SnapshotInstalls = countInLogs(c, "Installed remote snapshot")
	rep.MaxLag = r.lag.max()
	if err := rep.save(); err != nil {
		rep.violate("harness", "saving report: %v", err)
	}
	return rep, nil
}

func (r *runner) newID() int {
	r.nextID++
	return r.nextID - 1
}

// setupClients creates the keys and the workers (client ids 0..).
func (r *runner) setupClients() {
	for i := 0; i < r.cfg.Keys; i++ {
		r.keys = append(r.keys, keySpec{name: fmt.Sprintf("hot-%d", i), ttl: time.Second + time.Duration(i)*500*time.Millisecond})
	}
	for _, k := range r.keys {
		for j := 0; j < r.cfg.WorkersPerKey; j++ {
			id := r.newID()
			w := &worker{actor: newActor(r, id, fmt.Sprintf("c%d", id)), key: k}
			w.proto = []string{"resp", "http"}[id%2]
			w.home = id % len(r.c.nodes)
			r.owners[w.owner] = id
			r.workers = append(r.workers, w)
		}
	}
	r.auditor = newActor(r, r.newID(), "auditor")
	r.owners[r.auditor.owner] = r.auditor.id
}

// waitReady waits for a ready cluster for at most d.
func (r *runner) waitReady(ctx context.Context, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return r.c.waitReady(ctx)
}

// retry runs f on random running nodes until it gives a definite answer or
// d passes; it returns the last operation.
func (r *runner) retry(ctx context.Context, a *actor, d time.Duration, f func(node int) Op) Op {
	deadline := time.Now().Add(d)
	var op Op
	for {
		node := a.rng.IntN(len(r.c.nodes))
		op = f(node)
		if op.Outcome == OK || op.Outcome == Fail || time.Now().After(deadline) || ctx.Err() != nil {
			return op
		}
		sleep(ctx, 50*time.Millisecond)
	}
}

// killAll is the durability fault: a probe lock with a long TTL is taken,
// every node is killed -9 and restarted after down, and then the probe lock
// and every hot key are read back (the durability checker judges them).
func (r *runner) killAll(faultCtx context.Context, down time.Duration) string {
	ctx := r.ctx
	n := len(r.killAlls)
	rec := killAllRecord{ProbeKey: fmt.Sprintf("durable-%d", n)}
	probe := r.auditor
	probeKey := keySpec{name: rec.ProbeKey, ttl: 30 * time.Second}
	if op := r.retry(ctx, probe, 3*time.Second, func(i int) Op { return probe.acquire(i, "resp", probeKey, 0) }); op.Outcome == OK {
		rec.ProbeToken = op.Token
	}
	rec.KillAt = r.h.Now()
	var wg sync.WaitGroup
	for i := range r.c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); r.c.kill(i) }()
	}
	wg.Wait()
	sleep(faultCtx, down)
	rec.RestartAt = r.h.Now()
	detail := fmt.Sprintf("probe %s token %d", rec.ProbeKey, rec.ProbeToken)
	for i := range r.c.nodes {
		if err := r.c.start(i); err != nil {
			detail += fmt.Sprintf("; restart %s: %v", r.c.nodes[i].id, err)
		}
	}
	if err := r.waitReady(ctx, 30*time.Second); err != nil {
		r.killAlls = append(r.killAlls, rec)
		return detail + "; " + err.Error()
	}
	rec.ReadyAt = r.h.Now()
	for _, k := range r.keys {
		r.retry(ctx, probe, time.Second, func(i int) Op { return probe.info(i, "http", k.name) })
	}
	if rec.ProbeToken != 0 {
		op := r.retry(ctx, probe, 5*time.Second, func(i int) Op { return probe.info(i, "resp", rec.ProbeKey) })
		rec.ProbeSeen = &op
		r.retry(ctx, probe, 2*time.Second, func(i int) Op { return probe.release(i, "resp", probeKey, rec.ProbeToken) })
	}
	r.killAlls = append(r.killAlls, rec)
	return detail + fmt.Sprintf("; ready %.2fs after restart", float64(rec.ReadyAt-rec.RestartAt)/1e9)
}

// checkLiveness: on the healed, idle cluster every key must be acquirable
// within its TTL plus a few election timeouts (plus a second of slack for a
// loaded machine), counted from when the cluster reports a leader again.
func (r *runner) checkLiveness(ctx context.Context, rep *Report) {
	since := r.h.Now()
	if err := r.waitReady(ctx, 30*time.Second); err != nil {
		r.timing(rep, since, "liveness", "no ready leader 30s after healing: %v", err)
		return
	}
	var wg sync.WaitGroup
	for _, k := range r.keys {
		a := newActor(r, r.newID(), "live-"+k.name)
		r.owners[a.owner] = a.id
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer a.close()
			budget := k.ttl + 5*r.cfg.ElectionTimeout + time.Second
			start := time.Now()
			op := r.retry(ctx, a, budget, func(i int) Op {
				return a.acquire(i, "resp", k, max(time.Until(start.Add(budget)), time.Millisecond))
			})
			took := time.Since(start)
			if op.Outcome != OK || took > budget+r.cfg.OpTimeout {
				r.timing(rep, since, "liveness", "%s not acquired within %s after healing (took %s, last: %s %s)", k.name, budget, took.Round(time.Millisecond), op.Outcome, op.Err)
				return
			}
			r.retry(ctx, a, 2*time.Second, func(i int) Op { return a.release(i, "resp", k, op.Token) })
		}()
	}
	wg.Wait()
}

// checkConvergence: once idle, every node must reach the same applied
// index with the same state machine hash (GET /debug/state).
func (r *runner) checkConvergence(ctx context.Context, rep *Report) {
	since := r.h.Now()
	deadline := time.Now().Add(15 * time.Second)
	var last []debugState
	var lastErr error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		last, lastErr = nil, nil
		for i := range r.c.nodes {
			var ds debugState
			if err := r.c.getJSON(i, "/debug/state", &ds); err != nil {
				lastErr = fmt.Errorf("%s: %v", r.c.nodes[i].id, err)
				break
			}
			last = append(last, ds)
		}
		if lastErr == nil && sameIndex(last) {
			for _, ds := range last[1:] {
				if ds.SHA256 != last[0].SHA256 {
					rep.violate("convergence", "at applied index %d: %s has state %s but %s has %s", ds.Applied, last[0].NodeID, last[0].SHA256, ds.NodeID, ds.SHA256)
				}
			}
			rep.ConvergedAt = last[0].Applied
			return
		}
		sleep(ctx, 100*time.Millisecond)
	}
	r.timing(rep, since, "convergence", "nodes did not reach the same applied index within 15s: %v (last error: %v)", last, lastErr)
}

func sameIndex(s []debugState) bool {
	for _, ds := range s[1:] {
		if ds.Applied != s[0].Applied {
			return false
		}
	}
	return len(s) > 0
}

// countInLogs counts lines containing s in every node's log.
func countInLogs(c *cluster, s string) int {
	n := 0
	for _, nd := range c.nodes {
		b, err := os.ReadFile(nd.logPath)
		if err == nil {
			n += strings.Count(string(b), s)
		}
	}
	return n
}

// Report is the outcome of a run.
type Report struct {
	Seed             int64
	Nodes            int
	Unsafe           string
	Dir              string
	Ops              map[Outcome]int
	OpsByKind        map[Kind]int
	Faults           map[string]int
	Linearizability  map[string]string // key -> Ok / Illegal / Unknown
	Violations       []string
	Inconclusive     []string
	StaleAccesses    int
	StaleRejected    int
	SnapshotInstalls int
	ConvergedAt      uint64
	MaxLag           time.Duration // worst harness timer lag (machine load)
	mu               sync.Mutex
}

func (rep *Report) violate(checker, format string, args ...any) {
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if len(rep.Violations) < 200 {
		rep.Violations = append(rep.Violations, checker+": "+fmt.Sprintf(format, args...))
	}
}

// Failed reports whether any checker found a violation.
func (rep *Report) Failed() bool { return len(rep.Violations) > 0 }

// FailedCheckers returns the names of the checkers that found violations.
func (rep *Report) FailedCheckers() []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range rep.Violations {
		name, _, _ := strings.Cut(v, ":")
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out
}

// Summary is a few lines for the test log.
func (rep *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, %d nodes", rep.Seed, rep.Nodes)
	if rep.Unsafe != "" {
		fmt.Fprintf(&b, ", --test-unsafe %s", rep.Unsafe)
	}
	fmt.Fprintf(&b, "\n  ops: %v by kind %v", rep.Ops, rep.OpsByKind)
	fmt.Fprintf(&b, "\n  faults: %v", rep.Faults)
	var lin []string
	probes := 0
	for _, k := range sortedKeys(rep.Linearizability) {
		v := rep.Linearizability[k]
		if strings.HasPrefix(k, "durable-") && strings.HasPrefix(v, "Ok") {
			probes++
			continue
		}
		lin = append(lin, k+": "+v)
	}
	fmt.Fprintf(&b, "\n  linearizability: %s; %d durability probe keys Ok", strings.Join(lin, ", "), probes)
	fmt.Fprintf(&b, "\n  paused-holder accesses after lease: %d (rejected by fencing: %d); snapshot installs: %d; converged at index %d; worst timer lag %s",
		rep.StaleAccesses, rep.StaleRejected, rep.SnapshotInstalls, rep.ConvergedAt, rep.MaxLag.Round(time.Millisecond))
	for _, s := range rep.Inconclusive {
		fmt.Fprintf(&b, "\n  inconclusive: %s", s)
	}
	for i, v := range rep.Violations {
		if i == 12 {
			fmt.Fprintf(&b, "\n  ... and %d more violations (all in report.txt)", len(rep.Violations)-i)
			break
		}
		fmt.Fprintf(&b, "\n  VIOLATION %s", v)
	}
	fmt.Fprintf(&b, "\n  artifacts: %s", rep.Dir)
	return b.String()
}

// save writes the summary and every violation to report.txt in the
// artifacts directory.
func (rep *Report) save() error {
	var b strings.Builder
	b.WriteString(rep.Summary())
	b.WriteString("\n\nall violations:\n")
	for _, v := range rep.Violations {
		b.WriteString(v + "\n")
	}
	return os.WriteFile(filepath.Join(rep.Dir, "report.txt"), []byte(b.String()), 0o644)
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
