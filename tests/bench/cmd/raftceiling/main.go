// Command raftceiling measures the ceiling of the consensus layer on this
// machine (package ceiling): for each client count and way to commit (-pack)
// it starts three node processes of itself on loopback (hashicorp/raft,
// walstore with fsync on, a state machine that does nothing), lets the
// elected leader run C command loops, prints what the leader measured and
// stops the nodes by PID.
//
//	raftceiling -clients 1,64,256 -pack 0,1 -duration 5s -warmup 1s [-json]
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/distlock/distlock/tests/bench/internal/ceiling"
	"github.com/distlock/distlock/tests/bench/internal/freeport"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("raftceiling", flag.ContinueOnError)
	clients := fs.String("clients", "1,64,256", "comma-separated client counts, one 3-node run each")
	duration := fs.Duration("duration", 5*time.Second, "measured time per run")
	warmup := fs.Duration("warmup", time.Second, "load before the measured time")
	payload := fs.Int("payload", 64, "bytes per command (a lock acquire entry is about this size)")
	packs := fs.String("pack", "0,1", "comma-separated ways to commit, one run each: 0 = an entry per command; K = pack waiting commands into one entry, K entries in flight")
	dir := fs.String("dir", "", "data directory (default: a new temporary directory, removed afterwards)")
	asJSON := fs.Bool("json", false, "print the results as a JSON array")
	// Node mode, used by the runs this command starts.
	node := fs.String("node", "", "internal: run one node with this id")
	addr := fs.String("addr", "", "internal: this node's raft address")
	peers := fs.String("peers", "", "internal: the other nodes, id=addr,...")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg := ceiling.Config{Payload: *payload, Warmup: *warmup, Measure: *duration}
	if *node != "" {
		cfg.ID, cfg.Addr, cfg.Dir = *node, *addr, *dir
		return runNode(cfg, *clients, *packs, *peers)
	}

	counts, err := intList(*clients, 1)
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftceiling: -clients:", err)
		return 2
	}
	packList, err := intList(*packs, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftceiling: -pack:", err)
		return 2
	}
	base := *dir
	if base == "" {
		tmp, err := os.MkdirTemp("", "raftceiling")
		if err != nil {
			fmt.Fprintln(os.Stderr, "raftceiling:", err)
			return 1
		}
		defer os.RemoveAll(tmp)
		base = tmp
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftceiling:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var results []ceiling.Result
	for _, n := range counts {
		for _, k := range packList {
			c := cfg
			c.Clients, c.Pack, c.Dir = n, k, filepath.Join(base, fmt.Sprintf("clients-%d-pack-%d", n, k))
			res, err := measure(ctx, exe, c)
			if err != nil {
				fmt.Fprintf(os.Stderr, "raftceiling: %d clients, pack %d: %v\n", n, k, err)
				return 1
			}
			results = append(results, res)
			if !*asJSON {
				fmt.Printf("clients=%-4d pack=%d commits/s=%-8.0f entries/s=%-8.0f p50=%s p99=%s p999=%s max=%s\n",
					res.Clients, res.Pack, res.CommitsPerS, float64(res.Entries)/res.Seconds,
					usDur(res.P50Us), usDur(res.P99Us), usDur(res.P999Us), usDur(res.MaxUs))
			}
		}
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			fmt.Fprintln(os.Stderr, "raftceiling:", err)
			return 1
		}
	}
	return 0
}

// runNode is node mode: one node of a run that the parent started, with one
// client count, one pack and its peers as id=addr,...
func runNode(cfg ceiling.Config, clients, pack, peers string) int {
	n, err := strconv.Atoi(clients)
	k, kerr := strconv.Atoi(pack)
	if err != nil || kerr != nil {
		fmt.Fprintln(os.Stderr, "raftceiling: node mode takes one client count and one pack")
		return 2
	}
	cfg.Clients, cfg.Pack = n, k
	for _, p := range strings.Split(peers, ",") {
		id, a, ok := strings.Cut(p, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "raftceiling: bad peer %q\n", p)
			return 2
		}
		cfg.Peers = append(cfg.Peers, ceiling.Peer{ID: id, Addr: a})
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// Stdin is a pipe from the parent: its end (the parent exited, even by
	// SIGKILL) stops this node too.
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	if err := ceiling.RunNode(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// intList parses a comma-separated list of integers, each at least min.
func intList(s string, min int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < min {
			return nil, fmt.Errorf("bad value %q (want integers >= %d)", f, min)
		}
		out = append(out, n)
	}
	return out, nil
}

func usDur(us float64) time.Duration {
	return time.Duration(us * float64(time.Microsecond)).Round(time.Microsecond)
}

// node is one running node process.
type node struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser // held open while the node should run
	stderr bytes.Buffer   // complete once done is closed
	done   chan struct{}
	err    error // cmd.Wait's, set before done is closed
}

// stop asks the node to exit and kills it by PID if it has not after d.
func (n *node) stop(d time.Duration) {
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(d):
		n.cmd.Process.Kill()
		<-n.done
	}
}

// measure starts three node processes, waits for the leader's result line
// and stops the nodes by PID. A node that exits before the result, a
// signal or the time limit ends the run with an error.
func measure(ctx context.Context, exe string, cfg ceiling.Config) (ceiling.Result, error) {
	ports, err := freeport.Loopback(3)
	if err != nil {
		return ceiling.Result{}, err
	}
	addrs := make([]string, 3)
	for i, p := range ports {
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", p)
	}
	lines := make(chan []byte, 3)
	exited := make(chan int, 3)
	var nodes []*node
	defer func() {
		for _, n := range nodes {
			n.stop(10 * time.Second)
		}
	}()
	for i := range 3 {
		var peers []string
		for j := range 3 {
			if j != i {
				peers = append(peers, fmt.Sprintf("n%d=%s", j+1, addrs[j]))
			}
		}
		n := &node{done: make(chan struct{})}
		n.cmd = exec.Command(exe, "-node", fmt.Sprintf("n%d", i+1), "-addr", addrs[i], "-peers", strings.Join(peers, ","),
			"-dir", filepath.Join(cfg.Dir, fmt.Sprintf("n%d", i+1)), "-clients", strconv.Itoa(cfg.Clients),
			"-pack", strconv.Itoa(cfg.Pack), "-payload", strconv.Itoa(cfg.Payload),
			"-warmup", cfg.Warmup.String(), "-duration", cfg.Measure.String())
		n.cmd.Env = os.Environ()
		n.cmd.Stderr = &n.stderr
		out, err := n.cmd.StdoutPipe()
		if err != nil {
			return ceiling.Result{}, err
		}
		if n.stdin, err = n.cmd.StdinPipe(); err != nil {
			return ceiling.Result{}, err
		}
		if err := n.cmd.Start(); err != nil {
			return ceiling.Result{}, err
		}
		nodes = append(nodes, n)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- append([]byte(nil), sc.Bytes()...)
			}
			n.err = n.cmd.Wait() // after the last read from its stdout
			close(n.done)
			exited <- i
		}()
	}
	limit := cfg.Warmup + cfg.Measure + 60*time.Second
	timer := time.NewTimer(limit)
	defer timer.Stop()
	var why string
	select {
	case line := <-lines:
		var res ceiling.Result
		if err := json.Unmarshal(line, &res); err != nil {
			return ceiling.Result{}, fmt.Errorf("leader's result %q: %w", line, err)
		}
		return res, nil
	case i := <-exited:
		why = fmt.Sprintf("node n%d exited before a result (%v)", i+1, nodes[i].err)
	case <-ctx.Done():
		why = "stopped by a signal"
	case <-timer.C:
		why = fmt.Sprintf("no result within %s", limit)
	}
	var msgs []string
	for i, n := range nodes {
		n.stop(10 * time.Second) // its stderr is complete once it has exited
		if s := strings.TrimSpace(n.stderr.String()); s != "" {
			msgs = append(msgs, fmt.Sprintf("n%d: %s", i+1, headTail(s, 3)))
		}
	}
	nodes = nil
	return ceiling.Result{}, fmt.Errorf("%s; %s", why, strings.Join(msgs, "; "))
}

// headTail keeps the first and last n lines of s: the first say what went
// wrong (an election, say), the last what the node did when it was stopped.
func headTail(s string, n int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > 2*n {
		ls = append(append(ls[:n:n], fmt.Sprintf("(%d lines)", len(ls)-2*n)), ls[len(ls)-n:]...)
	}
	return strings.Join(ls, " | ")
}
