package runner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distlock/distlock/tests/bench/internal/drivers"
)

// memSystem is an in-memory lock service: one mutex, FIFO-less waiting by
// polling, tokens from a counter. reuseTokens plants a bug: every grant
// gets token 1.
type memSystem struct {
	mu          sync.Mutex
	holders     map[string]string
	next        uint64
	reuseTokens bool
	failRelease bool
}

func (s *memSystem) NewClient(ctx context.Context, w int) (drivers.Client, error) {
	return &memClient{s: s, owner: fmt.Sprintf("w%d", w)}, nil
}
func (s *memSystem) Targets() []string { return []string{"mem"} }
func (s *memSystem) HasTokens() bool   { return true }
func (s *memSystem) Close() error      { return nil }

type memClient struct {
	s     *memSystem
	owner string
}

func (c *memClient) try(key string) (uint64, bool) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if _, held := c.s.holders[key]; held {
		return 0, false
	}
	c.s.holders[key] = c.owner
	c.s.next++
	if c.s.reuseTokens {
		return 1, true
	}
	return c.s.next, true
}

func (c *memClient) Acquire(ctx context.Context, key string, wait bool, waitFor time.Duration) (drivers.Result, error) {
	deadline := time.Now().Add(waitFor)
	for tries := 1; ; tries++ {
		if tok, ok := c.try(key); ok {
			return drivers.Result{Granted: true, Token: tok, HasToken: true, Tries: tries}, nil
		}
		if !wait || time.Now().After(deadline) {
			return drivers.Result{Tries: tries}, nil
		}
		time.Sleep(50 * time.Microsecond)
	}
}

func (c *memClient) Release(ctx context.Context, key string) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.s.failRelease && c.owner != "w0" { // w0 also runs the probe
		delete(c.s.holders, key)
		return errors.New("ERR boom 42")
	}
	if c.s.holders[key] != c.owner {
		return drivers.ErrNotHeld
	}
	delete(c.s.holders, key)
	return nil
}

func (c *memClient) Close() error { return nil }

func withMem(t *testing.T, s *memSystem) {
	t.Helper()
	s.holders = map[string]string{}
	old := openSystem
	openSystem = func(ctx context.Context, name string, o drivers.Options) (drivers.System, error) { return s, nil }
	t.Cleanup(func() { openSystem = old })
}

func cfg(mode string, clients int) Config {
	return Config{System: "mem", Addrs: []string{"mem"}, Mode: mode, Clients: clients,
		Duration: 200 * time.Millisecond, Warmup: 50 * time.Millisecond, TTL: time.Second, Wait: time.Second}
}

func TestModes(t *testing.T) {
	for _, mode := range Modes {
		t.Run(mode, func(t *testing.T) {
			withMem(t, &memSystem{})
			res, err := Run(context.Background(), cfg(mode, 4))
			if err != nil {
				t.Fatal(err)
			}
			if res.Cycles == 0 || res.CyclesPerS <= 0 || res.Attempts < res.Cycles || res.Grants != res.Cycles {
				t.Fatalf("%+v", res)
			}
			if res.Fencing.Violations != 0 || res.ErrorsTotal != 0 || !res.FencingActive {
				t.Fatalf("%+v", res)
			}
			if mode != "wait" && res.Acquire.Count != res.Attempts {
				t.Fatalf("acquire samples %d attempts %d", res.Acquire.Count, res.Attempts)
			}
			if res.Release.Count != res.Cycles || res.Release.P50Us <= 0 {
				t.Fatalf("release %+v cycles %d", res.Release, res.Cycles)
			}
			switch mode {
			case "uncontended":
				if res.Handovers != 0 || res.Refused != 0 || res.Fencing.Keys != 4+0 {
					t.Fatalf("%+v", res)
				}
			default:
				if res.Handovers == 0 || res.Fencing.Keys != 1 {
					t.Fatalf("%+v", res)
				}
			}
			if res.ElapsedS < 0.2 || res.ElapsedS > 2 {
				t.Fatalf("elapsed %v", res.ElapsedS)
			}
		})
	}
}

func TestViolationsDetected(t *testing.T) {
	withMem(t, &memSystem{reuseTokens: true})
	res, err := Run(context.Background(), cfg("hot", 2))
	if err != nil {
		t.Fatal(err)
	}
	if res.Fencing.Violations == 0 || len(res.Fencing.Examples) == 0 {
		t.Fatalf("reused tokens not reported: %+v", res.Fencing)
	}
}

func TestErrorsCountedByKind(t *testing.T) {
	withMem(t, &memSystem{failRelease: true})
	res, err := Run(context.Background(), cfg("uncontended", 2))
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors["release: ERR boom N"] == 0 || res.ErrorsTotal == 0 {
		t.Fatalf("errors %v", res.Errors)
	}
	if res.Cycles == 0 { // worker 0 still works
		t.Fatalf("%+v", res)
	}
}

func TestProbeFailureStopsRun(t *testing.T) {
	withMem(t, &memSystem{failRelease: true})
	s := &memSystem{}
	withMem(t, s)
	s.holders["lb:x:probe"] = "someone" // the probe's key is taken
	c := cfg("uncontended", 1)
	c.RunID = "x"
	res, err := Run(context.Background(), c)
	if err == nil || !strings.Contains(err.Error(), "probe") || res.Error == "" {
		t.Fatalf("want probe failure, got %v / %q", err, res.Error)
	}
}

func TestErrorKind(t *testing.T) {
	k := ErrorKind("acquire", errors.New("dial tcp 127.0.0.1:6379: connection refused"))
	if k != "acquire: dial tcp N.N.N.N:N: connection refused" {
		t.Fatal(k)
	}
	if k := ErrorKind("release", fmt.Errorf("x: %w", drivers.ErrNotHeld)); !strings.Contains(k, "not held") {
		t.Fatal(k)
	}
	if k := ErrorKind("acquire", context.DeadlineExceeded); k != "acquire: context deadline exceeded" {
		t.Fatal(k)
	}
	long := ErrorKind("acquire", errors.New(strings.Repeat("x", 500)))
	if len(long) > 140 {
		t.Fatal(len(long))
	}
}

func TestValidate(t *testing.T) {
	bad := []Config{
		{Mode: "uncontended", Clients: 0, Duration: time.Second, TTL: time.Second, Addrs: []string{"a"}},
		{Mode: "nope", Clients: 1, Duration: time.Second, TTL: time.Second, Addrs: []string{"a"}},
		{Mode: "wait", Clients: 1, Duration: time.Second, TTL: time.Second, Addrs: []string{"a"}},
		{Mode: "hot", Clients: 1, Duration: time.Second, TTL: time.Second},
	}
	for i, c := range bad {
		if c.Validate() == nil {
			t.Errorf("config %d accepted", i)
		}
	}
}

func TestClientPlacement(t *testing.T) {
	for _, tc := range []struct {
		leader  string
		targets []string
		want    string
	}{
		{"a:1", []string{"a:1", "b:2"}, " (its client on the leader)"},
		{"b:2", []string{"a:1", "b:2"}, " (its client on a follower)"},
		{"", []string{"a:1"}, ""},
		{"a:1", nil, ""},
	} {
		r := Result{Leader: tc.leader, Targets: tc.targets}
		if got := r.ClientPlacement(); got != tc.want {
			t.Errorf("leader %q targets %v: %q, want %q", tc.leader, tc.targets, got, tc.want)
		}
	}
}
