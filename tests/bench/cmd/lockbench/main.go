// Command lockbench drives C concurrent clients of a lock system for a
// duration and reports cycles/s, attempts/s, handovers/s, acquire and
// release latency percentiles, errors by kind and a fencing-token check.
//
//	lockbench -system native -addrs 127.0.0.1:6379,127.0.0.1:6380,127.0.0.1:6381 -mode uncontended -clients 64 -duration 10s
//	lockbench -system etcd -addrs 127.0.0.1:2379 -mode wait -clients 64 -json
//
// Systems: native (LOCK.ACQUIRE/LOCK.RELEASE ... TOKEN), setnx (SET NX PX +
// the Redlock release script, against this server), redsync, redis (as
// setnx, against redis-server), etcd (clientv3 concurrency.Mutex).
// Modes: uncontended (a key per client), hot (one key, try-acquire), wait
// (one key, blocking acquire).
//
// Exit status: 0 after a run, 1 when fencing tokens went backwards, 3 when
// the system could not be driven at all (unreachable, a command missing),
// 2 on bad flags.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/distlock/distlock/tests/bench/internal/drivers"
	"github.com/distlock/distlock/tests/bench/internal/runner"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lockbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg runner.Config
	var addrs, metrics string
	var asJSON bool
	fs.StringVar(&cfg.System, "system", "native", "system: "+strings.Join(drivers.Systems, "|"))
	fs.StringVar(&addrs, "addrs", "127.0.0.1:6379", "comma-separated addresses (RESP host:port; etcd client host:port or URL); clients are spread round-robin")
	fs.BoolVar(&cfg.LeaderOnly, "leader-only", false, "send everything to the raft leader (found with CLUSTER.INFO) instead of spreading over -addrs")
	fs.StringVar(&cfg.Mode, "mode", "uncontended", "mode: uncontended|hot|wait")
	fs.IntVar(&cfg.Clients, "clients", 1, "concurrent clients")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured duration")
	fs.DurationVar(&cfg.Warmup, "warmup", time.Second, "run this long before measuring")
	fs.DurationVar(&cfg.TTL, "ttl", 10*time.Second, "lock lease (etcd: session TTL, rounded up to seconds)")
	fs.DurationVar(&cfg.Wait, "wait", 5*time.Second, "longest single wait in wait mode (native WAIT, etcd Lock, client-side polling)")
	fs.DurationVar(&cfg.Poll, "poll", time.Millisecond, "retry delay of client-side waiting in wait mode (setnx, redis, redsync: they have no server-side queue)")
	fs.DurationVar(&cfg.Hold, "hold", 0, "time to hold each lock before releasing")
	fs.StringVar(&metrics, "metrics", "", "comma-separated HTTP bases (host:port or URL) whose /metrics are read before and after: raft_election_count, raft_term (etcd: leader changes)")
	fs.StringVar(&cfg.RunID, "run-id", "", "unique tag for keys and owners (default: from the clock)")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	fs.StringVar(&cfg.Label, "label", "", "name of this run in reports (default: the system)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lockbench: unexpected arguments %v\n", fs.Args())
		return 2
	}
	cfg.Addrs = splitList(addrs)
	cfg.MetricsURLs = splitList(metrics)
	cfg.Password = os.Getenv("LOCKBENCH_PASSWORD")
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "lockbench: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := runner.Run(ctx, cfg)
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if e := enc.Encode(res); e != nil {
			fmt.Fprintf(stderr, "lockbench: %v\n", e)
			return 1
		}
	} else if err == nil {
		printText(stdout, res)
	}
	if err != nil {
		fmt.Fprintf(stderr, "lockbench: %v\n", err)
		return 3
	}
	if res.Fencing.Violations > 0 {
		fmt.Fprintf(stderr, "lockbench: %d fencing-token violations\n", res.Fencing.Violations)
		return 1
	}
	return 0
}

func lat(l runner.Latency) string {
	f := func(v float64) string {
		switch {
		case v >= 1e6:
			return fmt.Sprintf("%.2fs", v/1e6)
		case v >= 1e3:
			return fmt.Sprintf("%.2fms", v/1e3)
		}
		return fmt.Sprintf("%.0fµs", v)
	}
	return fmt.Sprintf("n=%d p50=%s p99=%s p999=%s max=%s", l.Count, f(l.P50Us), f(l.P99Us), f(l.P999Us), f(l.MaxUs))
}

func printText(w io.Writer, r runner.Result) {
	fmt.Fprintf(w, "system=%s mode=%s clients=%d targets=%s measured=%.2fs\n", r.System, r.Mode, r.Clients, strings.Join(r.Targets, ","), r.ElapsedS)
	fmt.Fprintf(w, "  cycles/s     %10.1f  (%d cycles)\n", r.CyclesPerS, r.Cycles)
	fmt.Fprintf(w, "  attempts/s   %10.1f  (%d attempts, %d refused)\n", r.AttemptsPerS, r.Attempts, r.Refused)
	fmt.Fprintf(w, "  handovers/s  %10.1f  (%d handovers)\n", r.HandoversPerS, r.Handovers)
	fmt.Fprintf(w, "  acquire      %s\n", lat(r.Acquire))
	fmt.Fprintf(w, "  acquire(ok)  %s\n", lat(r.AcquireGranted))
	fmt.Fprintf(w, "  release      %s\n", lat(r.Release))
	if r.FencingActive {
		fmt.Fprintf(w, "  fencing      %d grants, %d compared, %d violations\n", r.Fencing.Grants, r.Fencing.Checked, r.Fencing.Violations)
		for _, e := range r.Fencing.Examples {
			fmt.Fprintf(w, "    %s\n", e)
		}
	} else {
		fmt.Fprintf(w, "  fencing      no tokens (%d grants)\n", r.Fencing.Grants)
	}
	if r.Elections >= 0 {
		fmt.Fprintf(w, "  elections    %.0f (max term delta %.0f)\n", r.Elections, r.TermDelta)
	}
	keys := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(w, "  errors       %d\n", r.ErrorsTotal)
	for _, k := range keys {
		fmt.Fprintf(w, "    %6d  %s\n", r.Errors[k], k)
	}
}
