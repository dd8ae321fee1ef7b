//go:build unix

package tests

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// nodeBin is the node binary built once by TestMain.
var nodeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "distlock-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	nodeBin = filepath.Join(dir, "node")
	build := exec.Command("go", "build", "-o", nodeBin, "../cmd/node")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building ./cmd/node:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		// The kernel may hand a just-closed port out again: never give
		// the same port to two listeners of this test binary.
		if _, taken := handedOut.LoadOrStore(port, true); !taken {
			return port
		}
	}
	t.Fatal("no unused free port in 100 tries")
	return 0
}

// handedOut holds every port freePort returned in this process.
var handedOut sync.Map

// proc is one node process.
type proc struct {
	t        *testing.T
	id       string
	dataDir  string
	httpPort int
	raftPort int
	respPort int
	extra    []string
	cmd      *exec.Cmd
	logPath  string
}

// newProc allocates ports and a data dir for a node; start runs it.
func newProc(t *testing.T, id string, extra ...string) *proc {
	t.Helper()
	return &proc{t: t, id: id, dataDir: t.TempDir(), httpPort: freePort(t), raftPort: freePort(t), respPort: freePort(t), extra: extra}
}

func (p *proc) args() []string {
	return append([]string{
		"--id", p.id, "--data-dir", p.dataDir,
		"--port", strconv.Itoa(p.httpPort), "--raft-port", strconv.Itoa(p.raftPort), "--resp-port", strconv.Itoa(p.respPort),
	}, p.extra...)
}

// start launches the process and waits until it is ready (a leader with a
// quorum is known).
func (p *proc) start() {
	p.t.Helper()
	p.launch()
	p.waitReady()
}

// launch starts the process without waiting.
func (p *proc) launch() {
	t := p.t
	t.Helper()
	p.logPath = filepath.Join(p.dataDir, fmt.Sprintf("%s-%d.log", p.id, time.Now().UnixNano()))
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(nodeBin, p.args()...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := p.cmd
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(p.logPath)
			t.Logf("log of %s:\n%s", p.id, b)
		}
	})
}

// waitReady waits until the node reports a leader with a quorum.
func (p *proc) waitReady() {
	t := p.t
	t.Helper()
	poll(t, 20*time.Second, p.id+" ready", func() bool {
		resp, err := http.Get(p.url("/health/ready"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// kill stops the process with SIGKILL, by PID.
func (p *proc) kill() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		p.t.Fatal(err)
	}
	p.cmd.Wait()
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			p.t.Fatalf("%s exited uncleanly after SIGTERM: %v", p.id, err)
		}
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		p.t.Fatalf("%s did not stop within 10s of SIGTERM", p.id)
	}
}

func (p *proc) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", p.httpPort, path)
}

func (p *proc) respAddr() string { return fmt.Sprintf("127.0.0.1:%d", p.respPort) }

// redis returns a go-redis client for the node speaking protocol proto.
func (p *proc) redis(proto int) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: p.respAddr(), Protocol: proto, MaxRetries: -1, DialTimeout: 2 * time.Second, ReadTimeout: 10 * time.Second})
	p.t.Cleanup(func() { c.Close() })
	return c
}

// poll waits for cond with a deadline instead of sleeping.
func poll(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// requireTool returns the path of an outside tool, skipping the test where
// it is missing unless CI=true, where a missing tool is a failure.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required under CI=true (.ci/run installs it): %v", name, err)
	}
	t.Skipf("%s not installed (apt-get install redis-tools); skipping", name)
	return ""
}
