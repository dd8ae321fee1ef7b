// Package runner drives C concurrent clients of one lock system for a
// duration in one of three modes and measures what they got done:
//
//   - uncontended: each client locks and unlocks its own key
//   - hot:         all clients try-acquire one key (no waiting; a refusal
//     is retried at once)
//   - wait:        all clients acquire one key waiting for it (the
//     server queues them where it can; handovers/s)
package runner

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/distlock/distlock/tests/bench/internal/drivers"
	"github.com/distlock/distlock/tests/bench/internal/fence"
	"github.com/distlock/distlock/tests/bench/internal/hist"
	"github.com/distlock/distlock/tests/bench/internal/promtext"
)

// Modes lists the modes Run accepts.
var Modes = []string{"uncontended", "hot", "wait"}

// Config is one run.
type Config struct {
	// Label names the run in reports (default: System).
	Label      string
	System     string
	Addrs      []string
	LeaderOnly bool
	Mode       string
	Clients    int
	Duration   time.Duration
	Warmup     time.Duration
	TTL        time.Duration
	// Wait bounds one waiting acquire (wait mode).
	Wait time.Duration
	// Poll is the retry delay of client-side waiting (setnx, redis,
	// redsync in wait mode).
	Poll time.Duration
	// Hold is how long a client keeps a lock before releasing it.
	Hold time.Duration
	// MetricsURLs are /metrics bases read before and after the run.
	MetricsURLs []string
	// RunID makes keys and owners unique to this run.
	RunID    string
	Password string
}

// Latency is a histogram summary in microseconds.
type Latency struct {
	Count  uint64  `json:"count"`
	MinUs  float64 `json:"min_us"`
	MeanUs float64 `json:"mean_us"`
	P50Us  float64 `json:"p50_us"`
	P90Us  float64 `json:"p90_us"`
	P99Us  float64 `json:"p99_us"`
	P999Us float64 `json:"p999_us"`
	MaxUs  float64 `json:"max_us"`
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// Summarize reads a histogram.
func Summarize(h *hist.Histogram) Latency {
	return Latency{
		Count: h.Count(), MinUs: us(h.Min()), MeanUs: us(h.Mean()),
		P50Us: us(h.Quantile(0.5)), P90Us: us(h.Quantile(0.9)), P99Us: us(h.Quantile(0.99)),
		P999Us: us(h.Quantile(0.999)), MaxUs: us(h.Max()),
	}
}

// MetricDelta is one watched series on one node, before and after.
type MetricDelta struct {
	URL    string  `json:"url"`
	Name   string  `json:"name"`
	Before float64 `json:"before"`
	After  float64 `json:"after"`
	Delta  float64 `json:"delta"`
}

// Result is a run's outcome (the -json output).
type Result struct {
	Label      string   `json:"label"`
	System     string   `json:"system"`
	Mode       string   `json:"mode"`
	Clients    int      `json:"clients"`
	Targets    []string `json:"targets"`
	LeaderOnly bool     `json:"leader_only"`
	// Leader is the raft leader's RESP address when the run started (this
	// server only; empty when it could not be asked, as for Redis). With
	// one client, whether Targets[0] is the leader moves the figures.
	Leader  string  `json:"leader,omitempty"`
	TTLMs   int64   `json:"ttl_ms"`
	PollMs  float64 `json:"poll_ms,omitempty"`
	WarmupS float64 `json:"warmup_s"`
	// ElapsedS is the measured window (after warm-up).
	ElapsedS float64 `json:"elapsed_s"`

	// Cycles are acquire+release pairs completed.
	Cycles uint64 `json:"cycles"`
	// Attempts are acquire round trips, failed try-acquires included
	// (client-side polls each count).
	Attempts uint64 `json:"attempts"`
	// Grants are successful acquires; Refused are acquires that returned
	// not granted (held, or the wait ran out).
	Grants  uint64 `json:"grants"`
	Refused uint64 `json:"refused"`
	// Handovers are grants of a key to another client than its previous
	// holder (hot and wait modes).
	Handovers uint64 `json:"handovers"`

	CyclesPerS    float64 `json:"cycles_per_s"`
	AttemptsPerS  float64 `json:"attempts_per_s"`
	HandoversPerS float64 `json:"handovers_per_s"`

	// Acquire is the latency of every acquire call (refused ones too; in
	// wait mode it includes the wait). AcquireGranted only of grants.
	Acquire        Latency `json:"acquire"`
	AcquireGranted Latency `json:"acquire_granted"`
	Release        Latency `json:"release"`

	Errors      map[string]uint64 `json:"errors"`
	ErrorsTotal uint64            `json:"errors_total"`

	// Fencing checks that tokens only grow (systems with tokens).
	Fencing       fence.Report `json:"fencing"`
	FencingActive bool         `json:"fencing_checked"`

	Metrics []MetricDelta `json:"metrics,omitempty"`
	// Elections sums raft_election_count deltas (and etcd's leader
	// changes) over the metrics URLs; TermDelta is the largest raft_term
	// change. -1 when not measured.
	Elections float64 `json:"elections"`
	TermDelta float64 `json:"term_delta"`

	// Error is set when the run could not be made (unsupported command,
	// unreachable system...).
	Error string `json:"error,omitempty"`
}

type worker struct {
	acq, acqOK, rel *hist.Histogram
	cycles          uint64
	attempts        uint64
	grants          uint64
	refused         uint64
	handovers       uint64
	errs            map[string]uint64
}

// openSystem is drivers.Open; tests replace it with an in-memory system.
var openSystem = drivers.Open

var digits = regexp.MustCompile(`[0-9]+`)

// ErrorKind names an error for counting: the operation and the message with
// numbers (ports, tokens, ids) blanked, cut to a readable length.
func ErrorKind(op string, err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		msg = "context deadline exceeded"
	case errors.Is(err, drivers.ErrNotHeld):
		msg = "lock not held at release (expired or taken)"
	}
	msg = digits.ReplaceAllString(msg, "N")
	if len(msg) > 120 {
		msg = msg[:120] + "..."
	}
	return op + ": " + msg
}

func (w *worker) fail(op string, err error) {
	w.errs[ErrorKind(op, err)]++
}

// Validate checks a config.
func (c *Config) Validate() error {
	if c.Clients < 1 {
		return errors.New("-clients must be at least 1")
	}
	if c.Duration <= 0 {
		return errors.New("-duration must be positive")
	}
	ok := false
	for _, m := range Modes {
		ok = ok || m == c.Mode
	}
	if !ok {
		return fmt.Errorf("unknown mode %q (want uncontended, hot or wait)", c.Mode)
	}
	if c.TTL < time.Millisecond {
		return errors.New("-ttl must be at least 1ms")
	}
	if c.Mode == "wait" && c.Wait <= 0 {
		return errors.New("-wait must be positive in wait mode")
	}
	if len(c.Addrs) == 0 {
		return errors.New("-addrs is empty")
	}
	return nil
}

func scrapeAll(ctx context.Context, urls []string) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	for _, u := range urls {
		m, err := promtext.Scrape(ctx, u, promtext.Watched)
		if err != nil {
			continue
		}
		out[u] = m
	}
	return out
}

// ClientPlacement says, for a run of this server, whether its first target
// (the one a single client uses) was the raft leader: " (its client on the
// leader)", " (its client on a follower)", or "" when the leader is unknown.
func (r Result) ClientPlacement() string {
	if r.Leader == "" || len(r.Targets) == 0 {
		return ""
	}
	if r.Targets[0] == r.Leader {
		return " (its client on the leader)"
	}
	return " (its client on a follower)"
}

// Run makes one run. An error that stops the run before it starts (the
// system is unreachable or lacks a command) is returned in Result.Error
// and as the error.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Label == "" {
		cfg.Label = cfg.System
	}
	res := Result{
		Label: cfg.Label, System: cfg.System, Mode: cfg.Mode, Clients: cfg.Clients, LeaderOnly: cfg.LeaderOnly,
		TTLMs: cfg.TTL.Milliseconds(), WarmupS: cfg.Warmup.Seconds(), Errors: map[string]uint64{},
		Elections: -1, TermDelta: -1,
	}
	if cfg.Mode == "wait" && cfg.System != "native" && cfg.System != "etcd" {
		res.PollMs = float64(cfg.Poll) / float64(time.Millisecond)
	}
	fail := func(err error) (Result, error) {
		res.Error = err.Error()
		return res, err
	}
	if err := cfg.Validate(); err != nil {
		return fail(err)
	}
	if cfg.RunID == "" {
		cfg.RunID = fmt.Sprintf("%x", time.Now().UnixNano())
	}
	maxWait := time.Duration(0)
	if cfg.Mode == "wait" {
		maxWait = cfg.Wait
	}
	sys, err := openSystem(ctx, cfg.System, drivers.Options{
		Addrs: cfg.Addrs, LeaderOnly: cfg.LeaderOnly, Clients: cfg.Clients, TTL: cfg.TTL,
		MaxWait: maxWait, Poll: cfg.Poll, Owner: "lb-" + cfg.RunID, Password: cfg.Password,
	})
	if err != nil {
		return fail(fmt.Errorf("%s: %w", cfg.System, err))
	}
	defer sys.Close()
	res.Targets = sys.Targets()
	switch cfg.System {
	case "native", "setnx", "redsync":
		// Only this server answers CLUSTER.INFO; against Redis it fails
		// and Leader stays empty.
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res.Leader, _ = drivers.FindLeader(lctx, cfg.Addrs, cfg.Password)
		cancel()
	}
	res.FencingActive = sys.HasTokens()

	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = drivers.Probe(pctx, sys, "lb:"+cfg.RunID+":probe")
	cancel()
	if err != nil {
		return fail(fmt.Errorf("probe cycle failed: %w", err))
	}

	// Connect every client before the clock starts (etcd sessions take a
	// lease each).
	clients := make([]drivers.Client, cfg.Clients)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range clients {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		clients[i], err = sys.NewClient(cctx, i)
		cancel()
		if err != nil {
			return fail(fmt.Errorf("client %d: %w", i, err))
		}
	}

	before := scrapeAll(ctx, cfg.MetricsURLs)

	shared := fence.New()
	checkers := make([]*fence.Checker, cfg.Clients)
	workers := make([]*worker, cfg.Clients)
	ends := make([]time.Time, cfg.Clients)
	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	end := measureFrom.Add(cfg.Duration)
	// Hard stop: a worker stuck past this is abandoned by its context.
	hctx, hcancel := context.WithDeadline(ctx, end.Add(maxWait+30*time.Second))
	defer hcancel()

	var wg sync.WaitGroup
	for i := range clients {
		w := &worker{acq: hist.New(), acqOK: hist.New(), rel: hist.New(), errs: map[string]uint64{}}
		workers[i] = w
		chk := shared
		key := "lb:" + cfg.RunID + ":hot"
		if cfg.Mode == "uncontended" {
			chk = fence.New()
			key = fmt.Sprintf("lb:%s:u:%d", cfg.RunID, i)
		}
		checkers[i] = chk
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			runWorker(hctx, cfg, clients[i], w, chk, i, key, measureFrom, end)
			ends[i] = time.Now()
		}(i)
	}
	wg.Wait()

	last := end
	for _, t := range ends {
		if t.After(last) {
			last = t
		}
	}
	elapsed := last.Sub(measureFrom)
	res.ElapsedS = elapsed.Seconds()

	acq, acqOK, rel := hist.New(), hist.New(), hist.New()
	for _, w := range workers {
		acq.Merge(w.acq)
		acqOK.Merge(w.acqOK)
		rel.Merge(w.rel)
		res.Cycles += w.cycles
		res.Attempts += w.attempts
		res.Grants += w.grants
		res.Refused += w.refused
		res.Handovers += w.handovers
		for k, v := range w.errs {
			res.Errors[k] += v
			res.ErrorsTotal += v
		}
	}
	if cfg.Mode == "uncontended" {
		for _, c := range checkers {
			res.Fencing = res.Fencing.Add(c.Report())
		}
	} else {
		res.Fencing = shared.Report()
	}
	res.Acquire, res.AcquireGranted, res.Release = Summarize(acq), Summarize(acqOK), Summarize(rel)
	if s := elapsed.Seconds(); s > 0 {
		res.CyclesPerS = float64(res.Cycles) / s
		res.AttemptsPerS = float64(res.Attempts) / s
		res.HandoversPerS = float64(res.Handovers) / s
	}

	if len(cfg.MetricsURLs) > 0 {
		after := scrapeAll(ctx, cfg.MetricsURLs)
		res.Elections, res.TermDelta = 0, 0
		urls := make([]string, 0, len(before))
		for u := range before {
			urls = append(urls, u)
		}
		sort.Strings(urls)
		for _, u := range urls {
			a, ok := after[u]
			if !ok {
				res.Errors["metrics: "+u+" unreadable after the run"]++
				continue
			}
			names := make([]string, 0, len(before[u]))
			for n := range before[u] {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				d := MetricDelta{URL: u, Name: n, Before: before[u][n], After: a[n], Delta: a[n] - before[u][n]}
				res.Metrics = append(res.Metrics, d)
				switch n {
				case "raft_election_count", "etcd_server_leader_changes_seen_total":
					res.Elections += d.Delta
				case "raft_term":
					if d.Delta > res.TermDelta {
						res.TermDelta = d.Delta
					}
				}
			}
		}
		if len(before) < len(cfg.MetricsURLs) {
			res.Errors["metrics: some URLs unreadable before the run"]++
		}
	}
	return res, nil
}

func runWorker(ctx context.Context, cfg Config, c drivers.Client, w *worker, chk *fence.Checker, id int, key string, measureFrom, end time.Time) {
	wait := cfg.Mode == "wait"
	pause := func(d time.Duration) {
		if rem := time.Until(end); rem < d {
			d = rem
		}
		if d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
	}
	for ctx.Err() == nil {
		t0 := time.Now()
		if !t0.Before(end) {
			return
		}
		measured := !t0.Before(measureFrom)
		waitFor := time.Duration(0)
		if wait {
			waitFor = cfg.Wait
			if rem := end.Sub(t0); rem < waitFor {
				waitFor = rem
			}
			if waitFor < time.Millisecond {
				waitFor = time.Millisecond
			}
		}
		r, err := c.Acquire(ctx, key, wait, waitFor)
		lat := time.Since(t0)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.fail("acquire", err)
			pause(10 * time.Millisecond) // no error storm against a broken system
			continue
		}
		if measured {
			w.attempts += uint64(max(r.Tries, 1))
			w.acq.Record(lat)
		}
		if !r.Granted {
			if measured {
				w.refused++
			}
			continue
		}
		// Report the grant before releasing: the next grant of this key
		// cannot come before the release, so the checker sees grants in
		// order.
		handover := chk.Grant(key, id, r.Token, r.HasToken)
		if measured {
			w.grants++
			if handover {
				w.handovers++
			}
			w.acqOK.Record(lat)
		}
		if cfg.Hold > 0 {
			time.Sleep(cfg.Hold)
		}
		t1 := time.Now()
		err = c.Release(ctx, key)
		for try := 0; err != nil && !errors.Is(err, drivers.ErrNotHeld) && try < 3 && ctx.Err() == nil; try++ {
			w.fail("release", err)
			pause(10 * time.Millisecond)
			t1 = time.Now()
			err = c.Release(ctx, key)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.fail("release", err)
			continue
		}
		if measured {
			w.rel.Record(time.Since(t1))
			w.cycles++
		}
	}
}
