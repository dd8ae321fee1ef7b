//go:build unix

package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestNativeCommands drives every native command through go-redis Do, in
// RESP2 and RESP3.
func TestNativeCommands(t *testing.T) {
	p := newProc(t, "node1")
	p.start()
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			ctx := ctxFor(t)
			rdb := p.redis(proto)
			key := fmt.Sprintf("res-%d", proto)
			tok, err := rdb.Do(ctx, "LOCK.ACQUIRE", key, "alice", "30s").Int64()
			if err != nil || tok <= 0 {
				t.Fatalf("LOCK.ACQUIRE = %d, %v", tok, err)
			}
			if _, err := rdb.Do(ctx, "LOCK.ACQUIRE", key, "bob", 30000).Result(); err != redis.Nil {
				t.Fatalf("LOCK.ACQUIRE by another owner: err = %v, want nil reply", err)
			}
			again, err := rdb.Do(ctx, "LOCK.ACQUIRE", key, "alice", "30000").Int64()
			if err != nil || again != tok {
				t.Fatalf("same-owner re-acquire = %d, %v; want %d", again, err, tok)
			}
			renewed, err := rdb.Do(ctx, "LOCK.RENEW", key, "alice", "1m", "TOKEN", tok).Int64()
			if err != nil || renewed != tok {
				t.Fatalf("LOCK.RENEW = %d, %v", renewed, err)
			}
			if err := rdb.Do(ctx, "LOCK.RENEW", key, "bob", "1m").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOTHELD") {
				t.Fatalf("LOCK.RENEW by stranger: %v, want NOTHELD", err)
			}
			info := infoMap(t, rdb.Do(ctx, "LOCK.INFO", key))
			if info["owner"] != "alice" || fmt.Sprint(info["fencing_token"]) != fmt.Sprint(tok) || fmt.Sprint(info["version"]) != "3" {
				t.Fatalf("LOCK.INFO = %v", info)
			}
			if ttl, _ := info["ttl_ms"].(int64); ttl <= 55000 || ttl > 60000 {
				t.Fatalf("LOCK.INFO ttl_ms = %v, want just under 60000", info["ttl_ms"])
			}
			list, err := rdb.Do(ctx, "LOCK.LIST").Slice()
			if err != nil || len(list) < 1 {
				t.Fatalf("LOCK.LIST = %v, %v", list, err)
			}
			if n, err := rdb.Do(ctx, "LOCK.RELEASE", key, "bob").Int64(); err != nil || n != 0 {
				t.Fatalf("LOCK.RELEASE by stranger = %d, %v; want 0", n, err)
			}
			if n, err := rdb.Do(ctx, "LOCK.RELEASE", key, "alice", "TOKEN", tok).Int64(); err != nil || n != 1 {
				t.Fatalf("LOCK.RELEASE = %d, %v; want 1", n, err)
			}
			if _, err := rdb.Do(ctx, "LOCK.INFO", key).Result(); err != redis.Nil {
				t.Fatalf("LOCK.INFO after release: %v, want nil", err)
			}
			ci := infoMap(t, rdb.Do(ctx, "CLUSTER.INFO"))
			if ci["leader_id"] != "node1" || fmt.Sprint(ci["quorum_size"]) != "1" {
				t.Fatalf("CLUSTER.INFO = %v", ci)
			}
			if pong, err := rdb.Ping(ctx).Result(); err != nil || pong != "PONG" {
				t.Fatalf("PING = %q, %v", pong, err)
			}
		})
	}
}

// infoMap turns a RESP3 map or a RESP2 flat field-value array into a map.
func infoMap(t *testing.T, cmd *redis.Cmd) map[string]any {
	t.Helper()
	v, err := cmd.Result()
	if err != nil {
		t.Fatalf("%v: %v", cmd.Args(), err)
	}
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
	default:
		t.Fatalf("%v: reply %T %v is neither a map nor a flat array", cmd.Args(), v, v)
	}
	return out
}

func httpJSON(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: body %q is not a JSON object: %v", method, url, raw, err)
	}
	return resp.StatusCode, m
}

// TestHTTPAPI checks the seed's endpoints and JSON shapes against the binary.
func TestHTTPAPI(t *testing.T) {
	p := newProc(t, "node1")
	p.start()
	code, m := httpJSON(t, "POST", p.url("/locks/acquire"), `{"key":"resource-1","owner":"client-abc","ttl":"30s"}`)
	lock, _ := m["lock"].(map[string]any)
	if code != 200 || m["success"] != true || lock["key"] != "resource-1" || lock["owner"] != "client-abc" || lock["ttl"] != "30s" || lock["version"] != 1.0 {
		t.Fatalf("acquire: %d %v", code, m)
	}
	exp, err := time.Parse(time.RFC3339, fmt.Sprint(lock["expires_at"]))
	if err != nil || exp.Before(time.Now().Add(25*time.Second)) || exp.After(time.Now().Add(31*time.Second)) {
		t.Fatalf("expires_at %v (%v) is not about 30s ahead", lock["expires_at"], err)
	}
	token := lock["fencing_token"].(float64)
	if token <= 0 {
		t.Fatalf("fencing_token = %v", lock["fencing_token"])
	}
	if code, m := httpJSON(t, "POST", p.url("/locks/acquire"), `{"key":"resource-1","owner":"other","ttl":"30s"}`); code != 409 || m["success"] != false || m["error"] == "" {
		t.Fatalf("acquire held lock: %d %v", code, m)
	}
	code, m = httpJSON(t, "POST", p.url("/locks/renew"), `{"key":"resource-1","owner":"client-abc","ttl":"45s"}`)
	if lock, _ := m["lock"].(map[string]any); code != 200 || lock["version"] != 2.0 || lock["ttl"] != "45s" || lock["fencing_token"] != token {
		t.Fatalf("renew: %d %v", code, m)
	}
	if code, m := httpJSON(t, "GET", p.url("/locks/resource-1"), ""); code != 200 || m["lock"].(map[string]any)["owner"] != "client-abc" {
		t.Fatalf("get: %d %v", code, m)
	}
	if code, m := httpJSON(t, "GET", p.url("/locks"), ""); code != 200 || len(m["locks"].([]any)) != 1 {
		t.Fatalf("list: %d %v", code, m)
	}
	code, m = httpJSON(t, "GET", p.url("/cluster/info"), "")
	nodes, _ := m["nodes"].([]any)
	if code != 200 || m["leader_id"] != "node1" || m["quorum_size"] != 1.0 || m["has_quorum"] != true || len(nodes) != 1 {
		t.Fatalf("cluster info: %d %v", code, m)
	}
	if n := nodes[0].(map[string]any); n["id"] != "node1" || n["state"] != "leader" {
		t.Fatalf("cluster info node: %v", n)
	}
	if code, m := httpJSON(t, "POST", p.url("/locks/release"), `{"key":"resource-1","owner":"intruder"}`); code != 409 || m["success"] != false {
		t.Fatalf("release by stranger: %d %v", code, m)
	}
	if code, m := httpJSON(t, "POST", p.url("/locks/release"), `{"key":"resource-1","owner":"client-abc"}`); code != 200 || m["success"] != true {
		t.Fatalf("release: %d %v", code, m)
	}
	if code, m := httpJSON(t, "GET", p.url("/locks/resource-1"), ""); code != 404 || m["success"] != false {
		t.Fatalf("get released: %d %v", code, m)
	}
	for _, bad := range []string{`{"key":"k","owner":"o","ttl":"0s"}`, `{"key":"k","owner":"o","ttl":"-5s"}`, `{"key":"k","owner":"o","ttl":"soon"}`,
		`{"key":"k","owner":"o","ttl":"30s","colour":"blue"}`, `{"key":"k","owner":"o"`, `[]`, `{"key":"","owner":"o","ttl":"1s"}`} {
		if code, m := httpJSON(t, "POST", p.url("/locks/acquire"), bad); code != 400 || m["success"] != false {
			t.Errorf("acquire %s: %d %v, want 400", bad, code, m)
		}
	}
	resp, err := http.Get(p.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"lock_acquire_total", "lock_release_total", "lock_renew_total", "lock_active_count",
		"raft_term", "raft_state", "raft_commit_index", "raft_election_count"} {
		if !bytes.Contains(raw, []byte("\n"+name+" ")) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if !bytes.Contains(raw, []byte("lock_acquire_total 1\n")) || !bytes.Contains(raw, []byte("raft_state 2\n")) {
		t.Errorf("/metrics counts are off:\n%s", grepLines(raw, "lock_", "raft_state"))
	}
	if code, m := httpJSON(t, "GET", p.url("/health"), ""); code != 200 || m["status"] != "ok" {
		t.Errorf("/health: %d %v", code, m)
	}
}

func grepLines(b []byte, prefixes ...string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestKillAndRestart kills the node with SIGKILL and restarts it on the same
// data dir: the lock is still held with its token and remaining TTL, and the
// next grant's token is larger. The second case restarts from a snapshot
// plus a log tail.
func TestKillAndRestart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"log only", nil},
		{"snapshot and log tail", []string{"--snapshot-interval", "100ms"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProc(t, "node1", tc.extra...)
			p.start()
			ctx := ctxFor(t)
			rdb := p.redis(2)
			tok, err := rdb.Do(ctx, "LOCK.ACQUIRE", "kept", "alice", "60s").Int64()
			if err != nil {
				t.Fatal(err)
			}
			if tc.extra != nil {
				poll(t, 10*time.Second, "a snapshot on disk", func() bool {
					m, _ := filepath.Glob(filepath.Join(p.dataDir, "node1", "snapshots", "*", "state.bin"))
					return len(m) > 0
				})
				// The tail after the snapshot.
				if err := rdb.Do(ctx, "LOCK.ACQUIRE", "tail", "bob", "60s").Err(); err != nil {
					t.Fatal(err)
				}
			}
			p.kill()
			rdb.Close()
			p.start()
			rdb = p.redis(2)
			info := infoMap(t, rdb.Do(ctx, "LOCK.INFO", "kept"))
			if info["owner"] != "alice" || info["fencing_token"] != tok {
				t.Fatalf("after restart LOCK.INFO = %v, want owner alice token %d", info, tok)
			}
			if ttl := info["ttl_ms"].(int64); ttl < 50000 {
				t.Fatalf("remaining ttl after restart = %dms, want close to 60000", ttl)
			}
			if tc.extra != nil {
				if info := infoMap(t, rdb.Do(ctx, "LOCK.INFO", "tail")); info["owner"] != "bob" {
					t.Fatalf("log tail lost: %v", info)
				}
			}
			next, err := rdb.Do(ctx, "LOCK.ACQUIRE", "new", "carol", "1s").Int64()
			if err != nil || next <= tok {
				t.Fatalf("next grant = %d, %v; want above %d", next, err, tok)
			}
			p.stop()
		})
	}
}

// TestRedisCLI runs the native commands through redis-cli, one-shot.
func TestRedisCLI(t *testing.T) {
	cli := requireTool(t, "redis-cli")
	p := newProc(t, "node1")
	p.start()
	run := func(args ...string) string {
		t.Helper()
		all := append([]string{"-p", fmt.Sprint(p.respPort)}, args...)
		out, err := exec.Command(cli, all...).CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	tok := run("LOCK.ACQUIRE", "cli-lock", "me", "30s")
	if tok == "" || strings.Contains(tok, "ERR") {
		t.Fatalf("LOCK.ACQUIRE printed %q", tok)
	}
	if out := run("LOCK.INFO", "cli-lock"); !strings.Contains(out, "me") || !strings.Contains(out, tok) {
		t.Fatalf("LOCK.INFO printed %q", out)
	}
	if out := run("LOCK.RELEASE", "cli-lock", "me"); out != "1" {
		t.Fatalf("LOCK.RELEASE printed %q", out)
	}
	if out := run("LOCK.INFO", "cli-lock"); out != "" && out != "(nil)" {
		t.Fatalf("LOCK.INFO after release printed %q", out)
	}
}

// TestBadInput sends malformed requests of every kind; each gets a clear
// error, the node keeps serving and nothing stored is lost.
func TestBadInput(t *testing.T) {
	p := newProc(t, "node1", "--max-ttl", "1h")
	p.start()
	ctx := ctxFor(t)
	rdb := p.redis(2)
	tok, err := rdb.Do(ctx, "LOCK.ACQUIRE", "precious", "keeper", "10m").Int64()
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]any{
		{"LOCK.ACQUIRE", "k", "o", "0"},
		{"LOCK.ACQUIRE", "k", "o", "-5"},
		{"LOCK.ACQUIRE", "k", "o", "abc"},
		{"LOCK.ACQUIRE", "k", "o", "99999999999999999999"},
		{"LOCK.ACQUIRE", "k", "o", "2h"},
		{"LOCK.ACQUIRE", "k", "o"},
		{"LOCK.ACQUIRE", "k", "o", "1s", "EXTRA"},
		{"LOCK.ACQUIRE", strings.Repeat("k", 5000), "o", "1s"},
		{"LOCK.RENEW", "k", "o", "1s", "TOKEN", "minus"},
		{"LOCK.RELEASE"},
		{"LOCK.INFO"},
		{"NO.SUCH.COMMAND"},
	} {
		err := rdb.Do(ctx, args...).Err()
		if err == nil || err == redis.Nil || !strings.HasPrefix(err.Error(), "ERR ") {
			t.Errorf("%.60v: err = %v, want an ERR reply", args, err)
		}
	}
	// The 26-byte request that panics redcon v1.6.4 when unguarded.
	conn, err := net.Dial("tcp", p.respAddr())
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write([]byte("*1\r\n$9223372036854775807\r\n"))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if !strings.HasPrefix(line, "-ERR Protocol error") {
		t.Errorf("26-byte request answered %q, want a protocol error", line)
	}
	for _, body := range []string{`{"key":"k","owner":"o","ttl":"2h"}`, `{"key":"k","owner":"o","ttl":99999999999999999999999}`, `not json`} {
		if code, _ := httpJSON(t, "POST", p.url("/locks/acquire"), body); code != 400 {
			t.Errorf("HTTP acquire %s: status %d, want 400", body, code)
		}
	}
	// Still serving, nothing lost.
	info := infoMap(t, rdb.Do(ctx, "LOCK.INFO", "precious"))
	if info["owner"] != "keeper" || info["fencing_token"] != tok {
		t.Fatalf("stored lock changed: %v", info)
	}
	if os.Getenv("KEEP") == "" && p.cmd.ProcessState != nil {
		t.Fatal("node exited")
	}
}

func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// httpJSONQuiet is httpJSON for polling: failures are a zero status.
func httpJSONQuiet(url string) (int, map[string]any) {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(url)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var m map[string]any
	if json.NewDecoder(resp.Body).Decode(&m) != nil {
		return 0, nil
	}
	return resp.StatusCode, m
}

// TestExitStatuses runs the node binary where it must refuse to run: bad
// flags exit 2 (usage), a node that cannot start (its port taken) exits 1;
// both say why on stderr and neither leaves a process behind.
func TestExitStatuses(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	tests := []struct {
		name string
		args []string
		code int
		says string
	}{
		{"unknown flag", []string{"--no-such-flag"}, 2, "not defined"},
		{"half a TLS configuration", []string{"--tls-cert-file", "x.pem"}, 2, "a certificate, its key and a CA file"},
		{"HTTP port taken", []string{"--port", fmt.Sprint(takenPort), "--raft-port", fmt.Sprint(freePort(t)),
			"--resp-port", fmt.Sprint(freePort(t)), "--data-dir", t.TempDir()}, 1, "cannot start"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(nodeBin, tt.args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Fatalf("still running after 20 s; stderr:\n%s", stderr.String())
			}
			if got := cmd.ProcessState.ExitCode(); got != tt.code || !strings.Contains(stderr.String(), tt.says) {
				t.Fatalf("exit %d, stderr %q; want exit %d mentioning %q", got, stderr.String(), tt.code, tt.says)
			}
		})
	}
}

// The README's order, with the real binary: a first node alone makes a
// one-node cluster in its data directory; started again there with the
// --peers of a new cluster, it refuses to start (exit 1, saying what to
// do) instead of mixing two clusters; started without them, it keeps its
// own cluster and lock, and refuses the raft connections of the new
// cluster, whose two other nodes serve on their own.
func TestStaleDataDirectoryAndANewCluster(t *testing.T) {
	lone := newProc(t, "node1")
	lone.start()
	ctx := ctxFor(t)
	if err := lone.redis(2).Do(ctx, "LOCK.ACQUIRE", "mine", "a", "60s").Err(); err != nil {
		t.Fatal(err)
	}
	lone.stop()

	n2, n3 := newProc(t, "node2"), newProc(t, "node3")
	peersOf := func(self *proc, all ...*proc) string {
		var ps []string
		for _, p := range all {
			if p != self {
				ps = append(ps, fmt.Sprintf("%s:127.0.0.1:%d", p.id, p.raftPort))
			}
		}
		return strings.Join(ps, ",")
	}
	lone.extra = []string{"--peers", peersOf(lone, lone, n2, n3)}
	start, cancel := context.WithTimeout(ctx, 20*time.Second) // a node that starts is killed
	defer cancel()
	cmd := exec.CommandContext(start, nodeBin, lone.args()...)
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); err == nil || code != 1 || !strings.Contains(string(out), "holds another cluster") {
		t.Fatalf("node1 on a one-node cluster's data with --peers: exit %d (%v)\n%s\nwant exit 1 saying it holds another cluster", code, err, out)
	}

	lone.extra = nil
	lone.start()
	n2.extra = []string{"--peers", peersOf(n2, lone, n2, n3)}
	n3.extra = []string{"--peers", peersOf(n3, lone, n2, n3)}
	n2.launch()
	n3.launch()
	n2.waitReady()
	n3.waitReady()
	if err := n2.redis(2).Do(ctx, "LOCK.ACQUIRE", "theirs", "b", "60s").Err(); err != nil {
		t.Fatalf("the new cluster: %v", err)
	}
	time.Sleep(time.Second) // its leader keeps dialing node1 meanwhile
	owner, err := lone.redis(2).Do(ctx, "GET", "mine").Text()
	if err != nil || owner != "a" {
		t.Fatalf("node1's own lock: %q, %v", owner, err)
	}
	if err := lone.redis(2).Do(ctx, "GET", "theirs").Err(); err != redis.Nil {
		t.Fatalf("node1 sees the other cluster's lock: %v", err)
	}
	if code, m := httpJSON(t, "GET", lone.url("/cluster/info"), ""); code != 200 || m["leader_id"] != "node1" {
		t.Fatalf("node1's cluster: %d %v", code, m)
	}
	if err := n3.redis(2).Do(ctx, "LOCK.RELEASE", "theirs", "b").Err(); err != nil {
		t.Fatalf("the new cluster after a second: %v", err)
	}
}
