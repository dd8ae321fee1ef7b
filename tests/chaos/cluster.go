//go:build unix

package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// node is one node process of the cluster under test.
type node struct {
	idx      int
	id       string
	httpPort int
	raftPort int
	respPort int
	dataDir  string
	logPath  string
	skewPath string
	dialPath string

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the current process has been reaped
	paused   bool
	stopping bool     // the harness is ending the current process
	crashes  []string // processes that exited on their own
}

func (n *node) httpAddr() string { return "127.0.0.1:" + strconv.Itoa(n.httpPort) }
func (n *node) respAddr() string { return "127.0.0.1:" + strconv.Itoa(n.respPort) }

// cluster is a set of node processes whose raft links run through proxies.
type cluster struct {
	bin   string
	args  []string // extra flags for every node
	nodes []*node
	links map[[2]int]*link // [from,to] -> proxy
	hc    *http.Client
}

// freePorts reserves n loopback ports that were free a moment ago. They are
// drawn below the kernel's ephemeral range, so that while a node is down
// no outgoing connection (ours or another test's) can take its port.
func freePorts(n int, rng *rand.Rand) ([]int, error) {
	lo, hi := 20000, 32000
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var first, last int
		if _, err := fmt.Sscan(string(b), &first, &last); err == nil && first > 2048 {
			lo, hi = max(1024, first-12000), first
		}
	}
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < n && tries < 100*n; tries++ {
		p := lo + rng.IntN(hi-lo)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		lns = append(lns, ln)
		ports = append(ports, p)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("found only %d free ports in [%d,%d)", len(ports), lo, hi)
	}
	return ports, nil
}

// newCluster lays out n nodes (ports, data dirs, dial maps, skew files)
// and starts the link proxies; start runs the processes.
func newCluster(bin string, n int, dataDir, logDir string, args []string) (*cluster, error) {
	ports, err := freePorts(3*n+n*(n-1), rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid()))))
	if err != nil {
		return nil, err
	}
	c := &cluster{bin: bin, args: args, links: map[[2]int]*link{},
		hc: &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	for i := 0; i < n; i++ {
		nd := &node{idx: i, id: fmt.Sprintf("n%d", i+1), httpPort: ports[3*i], raftPort: ports[3*i+1], respPort: ports[3*i+2]}
		nd.dataDir = filepath.Join(dataDir, nd.id)
		nd.logPath = filepath.Join(logDir, nd.id+".log")
		nd.skewPath = filepath.Join(dataDir, nd.id+".skew")
		nd.dialPath = filepath.Join(dataDir, nd.id+".dialmap")
		if err := os.MkdirAll(nd.dataDir, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(nd.skewPath, []byte("0s\n"), 0o644); err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, nd)
	}
	next := 3 * n
	for _, from := range c.nodes {
		var dial strings.Builder
		for _, to := range c.nodes {
			if from == to {
				continue
			}
			listen := "127.0.0.1:" + strconv.Itoa(ports[next])
			next++
			l, err := newLink(from.idx, to.idx, listen, "127.0.0.1:"+strconv.Itoa(to.raftPort))
			if err != nil {
				c.close()
				return nil, err
			}
			c.links[[2]int{from.idx, to.idx}] = l
			fmt.Fprintf(&dial, "localhost:%d=%s\n", to.raftPort, listen)
		}
		if err := os.WriteFile(from.dialPath, []byte(dial.String()), 0o644); err != nil {
			c.close()
			return nil, err
		}
	}
	return c, nil
}

// nodeArgs returns the command line of node nd.
func (c *cluster) nodeArgs(nd *node) []string {
	var peers []string
	for _, p := range c.nodes {
		if p != nd {
			peers = append(peers, fmt.Sprintf("%s:localhost:%d", p.id, p.raftPort))
		}
	}
	args := []string{
		"--id", nd.id, "--data-dir", nd.dataDir,
		"--port", strconv.Itoa(nd.httpPort), "--raft-port", strconv.Itoa(nd.raftPort), "--resp-port", strconv.Itoa(nd.respPort),
		"--peers", strings.Join(peers, ","),
		"--test-dial-map", nd.dialPath, "--test-clock-skew-file", nd.skewPath,
	}
	return append(args, c.args...)
}

// start launches node i if it is not running.
func (c *cluster) start(i int) error {
	nd := c.nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(nd.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== chaos harness: starting %s at %s\n", nd.id, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(c.bin, c.nodeArgs(nd)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		logf.Close()
		nd.mu.Lock()
		if !nd.stopping {
			nd.crashes = append(nd.crashes, fmt.Sprintf("%s (pid %d) exited on its own: %v", nd.id, cmd.Process.Pid, err))
			if nd.cmd == cmd {
				nd.cmd = nil
			}
		}
		nd.mu.Unlock()
		close(exited)
	}()
	nd.cmd, nd.exited, nd.paused, nd.stopping = cmd, exited, false, false
	return nil
}

// crashes returns every node process that exited without being stopped.
func (c *cluster) crashes() []string {
	var out []string
	for _, nd := range c.nodes {
		nd.mu.Lock()
		out = append(out, nd.crashes...)
		nd.mu.Unlock()
	}
	return out
}

// signal sends sig to node i's process (by PID), if it runs.
func (c *cluster) signal(i int, sig syscall.Signal) bool {
	nd := c.nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd == nil {
		return false
	}
	if err := syscall.Kill(nd.cmd.Process.Pid, sig); err != nil {
		return false
	}
	switch sig {
	case syscall.SIGSTOP:
		nd.paused = true
	case syscall.SIGCONT:
		nd.paused = false
	}
	return true
}

// stop ends node i with sig (SIGKILL, or SIGTERM for a clean stop) and
// waits for the process to exit, escalating to SIGKILL after grace.
func (c *cluster) stop(i int, sig syscall.Signal, grace time.Duration) {
	nd := c.nodes[i]
	nd.mu.Lock()
	cmd, exited := nd.cmd, nd.exited
	nd.stopping = true
	nd.mu.Unlock()
	if cmd == nil {
		return
	}
	pid := cmd.Process.Pid
	syscall.Kill(pid, sig)
	if sig != syscall.SIGKILL {
		syscall.Kill(pid, syscall.SIGCONT)
	}
	select {
	case <-exited:
	case <-time.After(grace):
		syscall.Kill(pid, syscall.SIGKILL)
		<-exited
	}
	nd.mu.Lock()
	if nd.cmd == cmd {
		nd.cmd, nd.paused = nil, false
	}
	nd.mu.Unlock()
}

// kill kill -9s node i and waits for it to exit.
func (c *cluster) kill(i int) { c.stop(i, syscall.SIGKILL, 5*time.Second) }

// running reports whether node i has a live, unpaused process.
func (c *cluster) running(i int) bool {
	nd := c.nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.cmd != nil && !nd.paused
}

// pids returns the PIDs of the running processes (for the report).
func (c *cluster) pids() []int {
	var out []int
	for _, nd := range c.nodes {
		nd.mu.Lock()
		if nd.cmd != nil {
			out = append(out, nd.cmd.Process.Pid)
		}
		nd.mu.Unlock()
	}
	return out
}

// setSkew shifts node i's wall clock by d (through its skew file).
func (c *cluster) setSkew(i int, d time.Duration) error {
	nd := c.nodes[i]
	tmp := nd.skewPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(d.String()+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, nd.skewPath)
}

// setLinks sets every link from a node in `from` to a node in `to`.
func (c *cluster) setLinks(from, to []int, s linkState) {
	for _, f := range from {
		for _, t := range to {
			if l := c.links[[2]int{f, t}]; l != nil {
				l.set(s)
			}
		}
	}
}

// heal restores every link, resumes paused nodes and resets clocks. It
// returns the links that could not be restored.
func (c *cluster) heal() error {
	var errs []error
	for _, l := range c.links {
		l.set(linkUp)
		if l.get() != linkUp {
			errs = append(errs, fmt.Errorf("link %d->%d could not rebind %s", l.from, l.to, l.listen))
		}
	}
	for i := range c.nodes {
		c.signal(i, syscall.SIGCONT)
		c.setSkew(i, 0)
	}
	return errors.Join(errs...)
}

// close kills every process and stops the proxies.
func (c *cluster) close() {
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); c.kill(i) }()
	}
	wg.Wait()
	for _, l := range c.links {
		l.close()
	}
}

// clusterInfo is the part of GET /cluster/info the harness reads.
type clusterInfo struct {
	LeaderID string `json:"leader_id"`
	Term     uint64 `json:"term"`
	Nodes    []struct {
		ID    string `json:"id"`
		State string `json:"state"`
	} `json:"nodes"`
}

func (c *cluster) getJSON(i int, path string, v any) error {
	resp, err := c.hc.Get("http://" + c.nodes[i].httpAddr() + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d", path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// leader returns the index of the node that says it leads with the highest
// term, among running nodes, or -1.
func (c *cluster) leader() int {
	best, bestTerm := -1, uint64(0)
	for i, nd := range c.nodes {
		if !c.running(i) {
			continue
		}
		var ci clusterInfo
		if err := c.getJSON(i, "/cluster/info", &ci); err != nil {
			continue
		}
		for _, n := range ci.Nodes {
			if n.ID == nd.id && n.State == "leader" && (best < 0 || ci.Term > bestTerm) {
				best, bestTerm = i, ci.Term
			}
		}
	}
	return best
}

// waitReady waits until a majority of the running nodes report a leader
// with a quorum (GET /health/ready), polling until ctx ends.
func (c *cluster) waitReady(ctx context.Context) error {
	for {
		ready, up := 0, 0
		for i := range c.nodes {
			if !c.running(i) {
				continue
			}
			up++
			resp, err := c.hc.Get("http://" + c.nodes[i].httpAddr() + "/health/ready")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ready++
				}
			}
		}
		if up > 0 && ready > up/2 && ready > len(c.nodes)/2 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ready (%d of %d running nodes ready): %w", ready, up, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// debugState is GET /debug/state: a node's own applied index and the hash
// of its state machine.
type debugState struct {
	NodeID  string `json:"node_id"`
	Applied uint64 `json:"applied_index"`
	Locks   int    `json:"locks"`
	SHA256  string `json:"state_sha256"`
}
