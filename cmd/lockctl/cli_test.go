package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/distlock/distlock/clients"
	"github.com/distlock/distlock/internal/testcerts"
	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{}) // as main does
	os.Exit(m.Run())
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of lockctl
// and of the goroutines exec starts to copy a command's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testCLI returns a cli with captured output and the given environment.
func testCLI(env map[string]string) (*cli, *syncBuffer, *syncBuffer, chan os.Signal) {
	var out, errb syncBuffer
	sigs := make(chan os.Signal, 4)
	return &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] }, signals: sigs}, &out, &errb, sigs
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string // in stderr (stdout for help)
	}{
		{nil, exitUsage, "Usage:"},
		{[]string{"help"}, exitOK, "Exit status:"},
		{[]string{"--help"}, exitOK, "Exit status:"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"--nope", "list"}, exitUsage, "flag provided but not defined: -nope"},
		{[]string{"info"}, exitUsage, "want exactly one KEY"},
		{[]string{"info", "a", "b"}, exitUsage, "want exactly one KEY"},
		{[]string{"list", "x"}, exitUsage, "takes no arguments"},
		{[]string{"lock"}, exitUsage, "missing KEY"},
		{[]string{"lock", "k"}, exitUsage, "missing COMMAND"},
		{[]string{"lock", "k", "--"}, exitUsage, "missing COMMAND"},
		{[]string{"lock", "--ttl", "soon", "k", "--", "true"}, exitUsage, "neither a duration"},
		{[]string{"lock", "--ttl", "0", "k", "--", "true"}, exitUsage, "--ttl must be at least 1ms"},
		{[]string{"lock", "--timeout", "-5s", "k", "--", "true"}, exitUsage, "negative"},
		{[]string{"--addr", " , ", "list"}, exitUsage, "no address given"},
	} {
		c, out, errb, _ := testCLI(nil)
		code := c.run(tc.args)
		got := errb.String()
		if tc.code == exitOK {
			got = out.String()
		}
		if code != tc.code || !strings.Contains(got, tc.want) {
			t.Errorf("lockctl %q: exit %d, output %q; want exit %d and %q", tc.args, code, got, tc.code, tc.want)
		}
	}
}

func TestFlagsAndEnvironment(t *testing.T) {
	c, _, _, _ := testCLI(map[string]string{"LOCKCTL_ADDR": "a:1, b:2", "LOCKCTL_PASSWORD": "pw"})
	var o options
	fs := c.flagSet(&o)
	if err := fs.Parse([]string{"--ttl", "1500", "--timeout", "2m", "-v"}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.addrs, ",") != "a:1,b:2" || o.password != "pw" || o.ttl != 1500*time.Millisecond ||
		o.timeout != 2*time.Minute || !o.verbose || o.grace != 5*time.Second || o.json {
		t.Fatalf("options %+v", o)
	}
	if err := fs.Parse([]string{"--addr", "c:3", "--password", "x"}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.addrs, ",") != "c:3" || o.password != "x" {
		t.Fatalf("flags did not override the environment: %+v", o)
	}
	c, _, _, _ = testCLI(nil)
	c.flagSet(&o)
	if strings.Join(o.addrs, ",") != clients.DefaultAddr || o.ttl != clients.DefaultTTL {
		t.Fatalf("defaults %+v", o)
	}
	pos, err := parseInterspersed(c.flagSet(&o), []string{"key", "--json"})
	if err != nil || len(pos) != 1 || pos[0] != "key" || !o.json {
		t.Fatalf("interspersed: %q %v %+v", pos, err, o)
	}
}

func TestUnreachable(t *testing.T) {
	c, _, errb, _ := testCLI(nil)
	if code := c.run([]string{"--addr", "127.0.0.1:1", "--request-timeout", "200ms", "cluster"}); code != exitError {
		t.Fatalf("exit %d, want %d; stderr %q", code, exitError, errb)
	}
	if !strings.Contains(errb.String(), "connection refused") {
		t.Fatalf("stderr %q does not say why", errb)
	}
}

func TestTables(t *testing.T) {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	locks := []clients.LockInfo{
		{Key: "a", Owner: "alice", Token: 7, Version: 2, TTL: 27140 * time.Millisecond, ExpiresAt: exp, Waiters: 1},
		{Key: "long-key-name", Owner: "bob", Token: 12, Version: 1, TTL: 400 * time.Millisecond, ExpiresAt: exp},
	}
	var b bytes.Buffer
	if err := writeTable(&b, locks); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "KEY            OWNER  TOKEN  VERSION  TTL") ||
		!strings.Contains(lines[1], "27.1s") || !strings.Contains(lines[2], "400ms") {
		t.Fatalf("table:\n%s", b.String())
	}
	// Columns line up: OWNER starts at the same offset on every line.
	at := strings.Index(lines[0], "OWNER")
	if lines[1][at:at+5] != "alice" || lines[2][at:at+3] != "bob" {
		t.Fatalf("columns do not line up:\n%s", b.String())
	}
	b.Reset()
	writeTable(&b, []clients.LockInfo{})
	writeTable(&b, freeLock("k"))
	if b.String() != "no locks are held\nk is not held\n" {
		t.Fatalf("empty outputs %q", b.String())
	}
	b.Reset()
	writeTable(&b, &clients.ClusterInfo{LeaderID: "n1", Term: 4, QuorumSize: 2, HasQuorum: true, Nodes: []clients.NodeInfo{
		{ID: "n1", State: "leader", Address: "h:9001", RESPAddress: "h:6379"}, {ID: "n2", State: "follower"}}})
	for _, want := range []string{"leader:   n1\n", "quorum:   2 of 2 nodes (has quorum: yes)", "cluster:  -\n", "n2  follower  -"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("cluster table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestJSON(t *testing.T) {
	exp := time.UnixMilli(1764111030000)
	var b bytes.Buffer
	writeJSON(&b, &clients.LockInfo{Key: "k", Owner: "o", Token: 3, Version: 1, TTL: 1500 * time.Millisecond, ExpiresAt: exp})
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["key"] != "k" || m["fencing_token"] != 3.0 || m["ttl_ms"] != 1500.0 || m["expires_at"] != 1764111030000.0 || m["waiters"] != 0.0 {
		t.Fatalf("lock JSON %s", b.String())
	}
	for _, tc := range []struct {
		v    any
		want string
	}{
		{freeLock("k"), "null"},
		{[]clients.LockInfo{}, "[]"},
		{&clients.ClusterInfo{}, `"nodes": []`},
	} {
		b.Reset()
		writeJSON(&b, tc.v)
		if !strings.Contains(b.String(), tc.want) {
			t.Errorf("JSON of %#v = %s, want %s", tc.v, b.String(), tc.want)
		}
	}
}

// fakeLease is a lease the test ends by hand.
type fakeLease struct {
	done     chan struct{}
	once     sync.Once
	err      atomic.Value
	released atomic.Int32
}

func newFakeLease() *fakeLease { return &fakeLease{done: make(chan struct{})} }

func (f *fakeLease) Key() string           { return "the-key" }
func (f *fakeLease) Owner() string         { return "the-owner" }
func (f *fakeLease) Token() uint64         { return 42 }
func (f *fakeLease) Done() <-chan struct{} { return f.done }
func (f *fakeLease) Err() error {
	if e, ok := f.err.Load().(error); ok {
		return e
	}
	return nil
}
func (f *fakeLease) Release(context.Context) error {
	f.released.Add(1)
	f.lose(clients.ErrReleased)
	return nil
}
func (f *fakeLease) lose(err error) {
	f.once.Do(func() {
		f.err.Store(err)
		close(f.done)
	})
}

func TestRunLockedStatusAndEnvironment(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "env")
	for _, tc := range []struct {
		argv []string
		want int
	}{
		{[]string{"sh", "-c", `echo "$LOCK_KEY $LOCK_TOKEN $LOCK_OWNER" > ` + out}, 0},
		{[]string{"sh", "-c", "exit 7"}, 7},
		{[]string{"sh", "-c", "kill -9 $$"}, 128 + 9},
		{[]string{"no-such-command-anywhere"}, exitNotFound},
		{[]string{dir}, exitCannotRun},
	} {
		c, _, errb, _ := testCLI(nil)
		l := newFakeLease()
		if got := c.runLocked(l, tc.argv, time.Second, false); got != tc.want {
			t.Errorf("%q: exit %d, want %d (stderr %q)", tc.argv, got, tc.want, errb)
		}
		if n := l.released.Load(); n != 1 {
			t.Errorf("%q: released %d times, want once", tc.argv, n)
		}
	}
	if b, _ := os.ReadFile(out); string(b) != "the-key 42 the-owner\n" {
		t.Fatalf("the command saw %q", b)
	}
}

func TestRunLockedLeaseLost(t *testing.T) {
	for _, tc := range []struct {
		name  string
		argv  []string
		grace time.Duration
	}{
		{"SIGTERM", []string{"sleep", "30"}, 10 * time.Second},
		{"SIGKILL after grace", []string{"sh", "-c", `trap "" TERM; sleep 30`}, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, errb, _ := testCLI(nil)
			l := newFakeLease()
			time.AfterFunc(200*time.Millisecond, func() { l.lose(clients.ErrLeaseLost) })
			start := time.Now()
			code := c.runLocked(l, tc.argv, tc.grace, false)
			took := time.Since(start)
			if code != exitLost {
				t.Fatalf("exit %d, want %d; stderr %q", code, exitLost, errb)
			}
			if took > 200*time.Millisecond+tc.grace+3*time.Second || tc.grace < time.Second && took < tc.grace {
				t.Fatalf("took %s with grace %s", took, tc.grace)
			}
			if !strings.Contains(errb.String(), `lease on "the-key" lost`) {
				t.Fatalf("stderr %q does not say the lease was lost", errb)
			}
			if tc.grace < time.Second && !strings.Contains(errb.String(), "sending SIGKILL") {
				t.Fatalf("stderr %q does not mention SIGKILL", errb)
			}
		})
	}
}

func TestRunLockedForwardsSignals(t *testing.T) {
	c, _, errb, sigs := testCLI(nil)
	l := newFakeLease()
	time.AfterFunc(200*time.Millisecond, func() { sigs <- syscall.SIGTERM })
	if code := c.runLocked(l, []string{"sleep", "30"}, time.Second, false); code != 128+int(syscall.SIGTERM) {
		t.Fatalf("exit %d, want %d; stderr %q", code, 128+int(syscall.SIGTERM), errb)
	}
	if l.released.Load() != 1 {
		t.Fatal("not released after the command was interrupted")
	}
}

func TestTLSOptions(t *testing.T) {
	dir := t.TempDir()
	ca, err := testcerts.NewCA(dir, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue("client")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		o       options
		tls     bool   // a TLS configuration is returned
		certs   int    // client certificates in it
		roots   bool   // it has its own roots
		wantErr string // part of the error
	}{
		{name: "plain", o: options{}},
		{name: "--tls alone: the system's roots", o: options{tls: true}, tls: true},
		{name: "--cacert implies TLS", o: options{caCert: ca.CertFile}, tls: true, roots: true},
		{name: "client certificate", o: options{caCert: ca.CertFile, cert: pair.CertFile, key: pair.KeyFile}, tls: true, certs: 1, roots: true},
		{name: "missing CA file", o: options{caCert: dir + "/nope.pem"}, wantErr: "--cacert"},
		{name: "CA file not PEM", o: options{caCert: pair.KeyFile}, wantErr: "no PEM certificate"},
		{name: "certificate without its key", o: options{cert: pair.CertFile}, wantErr: "--cert and --key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc, err := tt.o.tlsConfig()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || (tc != nil) != tt.tls {
				t.Fatalf("tlsConfig = %v, %v; want TLS %v", tc, err, tt.tls)
			}
			if tc != nil && (len(tc.Certificates) != tt.certs || (tc.RootCAs != nil) != tt.roots) {
				t.Fatalf("certificates %d, own roots %v; want %d, %v", len(tc.Certificates), tc.RootCAs != nil, tt.certs, tt.roots)
			}
		})
	}
}
