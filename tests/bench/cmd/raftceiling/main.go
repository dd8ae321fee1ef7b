// Command raftceiling measures the ceiling of the consensus layer on this
// machine (package ceiling): for each client count it starts three node
// processes of itself on loopback (hashicorp/raft, walstore with fsync on, a
// state machine that does nothing), lets the elected leader run C Apply loops,
// prints what the leader measured and stops the nodes by PID.
//
//	raftceiling -clients 1,64,256 -duration 5s -warmup 1s [-json]
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/distlock/distlock/tests/bench/internal/ceiling"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("raftceiling", flag.ContinueOnError)
	clients := fs.String("clients", "1,64,256", "comma-separated client counts, one 3-node run each")
	duration := fs.Duration("duration", 5*time.Second, "measured time per run")
	warmup := fs.Duration("warmup", time.Second, "load before the measured time")
	payload := fs.Int("payload", 64, "bytes per command (a lock acquire entry is about this size)")
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
		n, err := strconv.Atoi(*clients)
		if err != nil {
			fmt.Fprintln(os.Stderr, "raftceiling: node mode takes one client count")
			return 2
		}
		cfg.ID, cfg.Addr, cfg.Dir, cfg.Clients = *node, *addr, *dir, n
		for _, p := range strings.Split(*peers, ",") {
			id, a, ok := strings.Cut(p, "=")
			if !ok {
				fmt.Fprintf(os.Stderr, "raftceiling: bad peer %q\n", p)
				return 2
			}
			cfg.Peers = append(cfg.Peers, ceiling.Peer{ID: id, Addr: a})
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		if err := ceiling.RunNode(ctx, cfg, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}

	var counts []int
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "raftceiling: bad client count %q\n", s)
			return 2
		}
		counts = append(counts, n)
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
	var results []ceiling.Result
	for _, n := range counts {
		c := cfg
		c.Clients, c.Dir = n, filepath.Join(base, fmt.Sprintf("clients-%d", n))
		res, err := measure(exe, c)
		if err != nil {
			fmt.Fprintf(os.Stderr, "raftceiling: %d clients: %v\n", n, err)
			return 1
		}
		results = append(results, res)
		if !*asJSON {
			fmt.Printf("clients=%-4d commits/s=%-8.0f p50=%s p99=%s p999=%s max=%s\n", res.Clients, res.CommitsPerS,
				usDur(res.P50Us), usDur(res.P99Us), usDur(res.P999Us), usDur(res.MaxUs))
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

func usDur(us float64) time.Duration {
	return time.Duration(us * float64(time.Microsecond)).Round(time.Microsecond)
}

// measure starts three node processes, waits for the leader's result line
// and stops the nodes by PID.
func measure(exe string, cfg ceiling.Config) (ceiling.Result, error) {
	ports, err := freePorts(3)
	if err != nil {
		return ceiling.Result{}, err
	}
	addrs := make([]string, 3)
	for i, p := range ports {
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", p)
	}
	lines := make(chan []byte, 3)
	var procs []*exec.Cmd
	var stderr [3]bytes.Buffer
	stop := func() {
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			waitOrKill(p, 10*time.Second)
		}
		procs = nil
	}
	defer stop()
	for i := range 3 {
		var peers []string
		for j := range 3 {
			if j != i {
				peers = append(peers, fmt.Sprintf("n%d=%s", j+1, addrs[j]))
			}
		}
		cmd := exec.Command(exe, "-node", fmt.Sprintf("n%d", i+1), "-addr", addrs[i], "-peers", strings.Join(peers, ","),
			"-dir", filepath.Join(cfg.Dir, fmt.Sprintf("n%d", i+1)), "-clients", strconv.Itoa(cfg.Clients),
			"-payload", strconv.Itoa(cfg.Payload), "-warmup", cfg.Warmup.String(), "-duration", cfg.Measure.String())
		cmd.Env = os.Environ()
		cmd.Stderr = &stderr[i]
		out, err := cmd.StdoutPipe()
		if err != nil {
			return ceiling.Result{}, err
		}
		if err := cmd.Start(); err != nil {
			return ceiling.Result{}, err
		}
		procs = append(procs, cmd)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- append([]byte(nil), sc.Bytes()...)
			}
		}()
	}
	limit := cfg.Warmup + cfg.Measure + 60*time.Second
	select {
	case line := <-lines:
		var res ceiling.Result
		if err := json.Unmarshal(line, &res); err != nil {
			return ceiling.Result{}, fmt.Errorf("leader's result %q: %w", line, err)
		}
		return res, nil
	case <-time.After(limit):
		stop() // the nodes' stderr is complete once they have exited
		var msgs []string
		for i := range stderr {
			if s := strings.TrimSpace(stderr[i].String()); s != "" {
				msgs = append(msgs, fmt.Sprintf("n%d: %s", i+1, lastLines(s, 3)))
			}
		}
		return ceiling.Result{}, fmt.Errorf("no result within %s (%s)", limit, strings.Join(msgs, "; "))
	}
}

// waitOrKill waits for p to exit, and kills it by PID after d.
func waitOrKill(p *exec.Cmd, d time.Duration) {
	done := make(chan error, 1)
	go func() { done <- p.Wait() }()
	select {
	case <-done:
	case <-time.After(d):
		p.Process.Kill()
		<-done
	}
}

func lastLines(s string, n int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, " | ")
}

// freePorts returns n distinct free loopback ports (held open together, so
// none is handed out twice).
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
