//go:build unix

package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildLockctl builds ./cmd/lockctl into a temporary directory.
func buildLockctl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "lockctl")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/lockctl").CombinedOutput()
	if err != nil {
		t.Fatalf("building ./cmd/lockctl: %v\n%s", err, out)
	}
	return bin
}

// lockctlRun is one lockctl process.
type lockctlRun struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{}
	code           int
}

// startLockctl starts bin with args and env (added to the test's own); it
// is killed, by PID, at cleanup if still running.
func startLockctl(t *testing.T, bin string, env []string, args ...string) *lockctlRun {
	t.Helper()
	r := &lockctlRun{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	r.cmd.Env = append(os.Environ(), env...)
	r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.cmd.Wait()
		r.code = r.cmd.ProcessState.ExitCode()
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			r.cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

// wait waits up to d for the process to exit and returns its status.
func (r *lockctlRun) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-r.done:
		return r.code
	case <-time.After(d):
		r.cmd.Process.Kill()
		<-r.done
		t.Fatalf("lockctl %q still running after %s\nstdout: %s\nstderr: %s", r.cmd.Args[1:], d, &r.stdout, &r.stderr)
		return -1
	}
}

// TestLockctl drives the lockctl binary against a 3-node cluster.
func TestLockctl(t *testing.T) {
	bin := buildLockctl(t)
	c := newCluster(t, 3)
	lead := c.leader()
	var addrs []string
	for _, p := range c.procs {
		addrs = append(addrs, p.respAddr())
	}
	env := []string{"LOCKCTL_ADDR=" + strings.Join(addrs, ",")}
	dir := t.TempDir()
	rdb := lead.redis(2)
	ctx := ctxFor(t)

	t.Run("serializes commands", func(t *testing.T) {
		log := filepath.Join(dir, "serial.log")
		var runs []*lockctlRun
		for i := 0; i < 3; i++ {
			// Each through a different first node.
			order := append(append([]string{}, addrs[i:]...), addrs[:i]...)
			script := fmt.Sprintf(`echo "start %d $LOCK_TOKEN" >> %s; sleep 0.4; echo "end %d" >> %s`, i, log, i, log)
			runs = append(runs, startLockctl(t, bin, nil, "--addr", strings.Join(order, ","),
				"lock", "--ttl", "1s", "--timeout", "30s", "serial", "--", "sh", "-c", script))
		}
		for i, r := range runs {
			if code := r.wait(t, 30*time.Second); code != 0 {
				t.Fatalf("run %d: exit %d\nstderr: %s", i, code, &r.stderr)
			}
		}
		b, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != 6 {
			t.Fatalf("log:\n%s", b)
		}
		prevToken := uint64(0)
		for i := 0; i < 6; i += 2 {
			var id, id2 int
			var tok uint64
			if _, err := fmt.Sscanf(lines[i], "start %d %d", &id, &tok); err != nil {
				t.Fatalf("line %q: %v\nlog:\n%s", lines[i], err, b)
			}
			if _, err := fmt.Sscanf(lines[i+1], "end %d", &id2); err != nil || id2 != id {
				t.Fatalf("runs overlap: %q follows %q\nlog:\n%s", lines[i+1], lines[i], b)
			}
			if tok <= prevToken {
				t.Fatalf("fencing tokens not increasing: %d after %d\nlog:\n%s", tok, prevToken, b)
			}
			prevToken = tok
		}
		if err := rdb.Do(ctx, "LOCK.INFO", "serial").Err(); err == nil {
			t.Fatal("lock still held after the last run")
		}
	})

	t.Run("exit codes", func(t *testing.T) {
		r := startLockctl(t, bin, env, "lock", "codes", "--", "sh", "-c", "exit 7")
		if code := r.wait(t, 15*time.Second); code != 7 {
			t.Fatalf("exit %d, want 7\nstderr: %s", code, &r.stderr)
		}
		r = startLockctl(t, bin, env, "lock", "codes", "--", "no-such-command-anywhere")
		if code := r.wait(t, 15*time.Second); code != 127 {
			t.Fatalf("missing command: exit %d, want 127\nstderr: %s", code, &r.stderr)
		}
		if err := rdb.Do(ctx, "LOCK.ACQUIRE", "codes", "someone", "30s").Err(); err != nil {
			t.Fatal(err)
		}
		r = startLockctl(t, bin, env, "lock", "codes", "--", "true")
		if code := r.wait(t, 15*time.Second); code != 3 || !strings.Contains(r.stderr.String(), "held by another owner") {
			t.Fatalf("held lock: exit %d, want 3\nstderr: %s", code, &r.stderr)
		}
		r = startLockctl(t, bin, env, "lock")
		if code := r.wait(t, 15*time.Second); code != 2 {
			t.Fatalf("usage error: exit %d, want 2", code)
		}
	})

	for _, tc := range []struct {
		name, script string
		grace        string
		// termLogged: the command logs the SIGTERM it gets.
		termLogged bool
	}{
		{"lease lost kills sleep", "exec sleep 30", "20s", false},
		{"lease lost kills the process group", `trap 'echo TERM >> $LOG; exit 143' TERM; sleep 30 & echo $! > $LOG.bg; wait`, "20s", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := strings.ReplaceAll(tc.name, " ", "-")
			logf := filepath.Join(dir, key+".log")
			r := startLockctl(t, bin, append(env, "LOG="+logf), "lock", "--ttl", "1s", "--grace", tc.grace, key, "--", "sh", "-c", tc.script)
			var owner string
			poll(t, 10*time.Second, "lockctl to hold "+key, func() bool {
				v, err := rdb.Do(ctx, "LOCK.INFO", key).Result()
				if err != nil {
					return false
				}
				owner = fmt.Sprint(infoMapOf(v)["owner"])
				return true
			})
			if tc.termLogged {
				poll(t, 10*time.Second, "the command to start its background job", func() bool {
					_, err := os.Stat(logf + ".bg")
					return err == nil
				})
			}
			// Steal it: release under lockctl's owner, then take it.
			if n, err := rdb.Do(ctx, "LOCK.RELEASE", key, owner).Int64(); err != nil || n != 1 {
				t.Fatalf("release as %s: %d, %v", owner, n, err)
			}
			if err := rdb.Do(ctx, "LOCK.ACQUIRE", key, "thief", "30s").Err(); err != nil {
				t.Fatal(err)
			}
			stolen := time.Now()
			code := r.wait(t, 10*time.Second)
			took := time.Since(stolen)
			if code != 4 || !strings.Contains(r.stderr.String(), "lease on \""+key+"\" lost") {
				t.Fatalf("exit %d, want 4 with a clear message\nstderr: %s", code, &r.stderr)
			}
			// The grace is 20s: a prompt exit means SIGTERM did it.
			if took > 5*time.Second {
				t.Fatalf("lockctl took %s after the steal", took)
			}
			if tc.termLogged {
				b, _ := os.ReadFile(logf)
				if strings.TrimSpace(string(b)) != "TERM" {
					t.Fatalf("the command logged %q, want TERM", b)
				}
				bg, _ := os.ReadFile(logf + ".bg")
				pid, err := strconv.Atoi(strings.TrimSpace(string(bg)))
				if err != nil {
					t.Fatalf("background pid %q: %v", bg, err)
				}
				poll(t, 5*time.Second, "the background sleep to be killed", func() bool { return processGone(pid) })
			}
			info := infoMap(t, rdb.Do(ctx, "LOCK.INFO", key))
			if info["owner"] != "thief" {
				t.Fatalf("after lockctl exited LOCK.INFO = %v; the thief's lock must stay", info)
			}
		})
	}

	t.Run("lockctl killed", func(t *testing.T) {
		pidf := filepath.Join(dir, "orphan.pid")
		r := startLockctl(t, bin, env, "lock", "--ttl", "30s", "orphan", "--", "sh", "-c", "echo $$ > "+pidf+"; exec sleep 30")
		var pid int
		poll(t, 10*time.Second, "the command to start", func() bool {
			b, err := os.ReadFile(pidf)
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			return err == nil && pid > 0
		})
		r.cmd.Process.Kill()
		r.wait(t, 5*time.Second)
		poll(t, 5*time.Second, "the command to die with lockctl", func() bool { return processGone(pid) })
	})

	t.Run("info list cluster", func(t *testing.T) {
		tok, err := rdb.Do(ctx, "LOCK.ACQUIRE", "shown", "alice", "60s").Int64()
		if err != nil {
			t.Fatal(err)
		}
		run := func(args ...string) string {
			t.Helper()
			r := startLockctl(t, bin, env, args...)
			if code := r.wait(t, 15*time.Second); code != 0 {
				t.Fatalf("lockctl %q: exit %d\nstderr: %s", args, code, &r.stderr)
			}
			return r.stdout.String()
		}
		out := run("info", "shown")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "KEY") || !strings.Contains(lines[1], "alice") ||
			!strings.Contains(lines[1], strconv.FormatInt(tok, 10)) {
			t.Fatalf("info table:\n%s", out)
		}
		var one map[string]any
		if err := json.Unmarshal([]byte(run("info", "shown", "--json")), &one); err != nil ||
			one["owner"] != "alice" || one["fencing_token"] != float64(tok) {
			t.Fatalf("info --json: %v %v", one, err)
		}
		if out := run("info", "nobody-holds-this"); strings.TrimSpace(out) != "nobody-holds-this is not held" {
			t.Fatalf("info of a free key: %q", out)
		}
		var list []map[string]any
		if err := json.Unmarshal([]byte(run("--json", "list")), &list); err != nil || len(list) < 1 {
			t.Fatalf("list --json: %v %v", list, err)
		}
		if out := run("list"); !strings.Contains(out, "shown") || !strings.HasPrefix(out, "KEY") {
			t.Fatalf("list table:\n%s", out)
		}
		var ci map[string]any
		if err := json.Unmarshal([]byte(run("cluster", "--json")), &ci); err != nil ||
			ci["leader_id"] != lead.id || ci["has_quorum"] != true || len(ci["nodes"].([]any)) != 3 {
			t.Fatalf("cluster --json: %v %v", ci, err)
		}
		if out := run("--addr", c.others(lead)[0].respAddr(), "cluster"); !strings.Contains(out, "leader:   "+lead.id) ||
			strings.Count(out, "follower") != 2 {
			t.Fatalf("cluster table:\n%s", out)
		}
	})
}

// processGone reports whether pid has exited: it does not exist, or it is
// a zombie waiting for whoever inherited it to reap it.
func processGone(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may hold spaces and parentheses.
	rest := string(b[bytes.LastIndexByte(b, ')')+1:])
	return strings.HasPrefix(strings.TrimSpace(rest), "Z")
}

// infoMapOf is infoMap for a reply already read.
func infoMapOf(v any) map[string]any {
	out := map[string]any{}
	switch v := v.(type) {
	case map[any]any:
		for k, x := range v {
			out[fmt.Sprint(k)] = x
		}
	case []any:
		for i := 0; i+1 < len(v); i += 2 {
			out[fmt.Sprint(v[i])] = v[i+1]
		}
	}
	return out
}
