package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/distlock/distlock/lockapi"
)

// TestErrorStatus checks the status and message of every service failure,
// through every endpoint that can return it.
func TestErrorStatus(t *testing.T) {
	tests := []struct {
		err    error
		code   int
		substr string
	}{
		{lockapi.Invalidf("bad thing"), 400, "invalid request: bad thing"},
		{lockapi.ErrHeld, 409, "held by another owner"},
		{fmt.Errorf("apply: %w", lockapi.ErrNotHeld), 409, "not held by this owner"},
		{lockapi.ErrNotFound, 404, "no such lock"},
		{lockapi.ErrNoLeader, 503, "no leader"},
		{fmt.Errorf("raft: %w", lockapi.ErrNoQuorum), 503, "no quorum"},
		{lockapi.ErrShuttingDown, 503, "shutting down"},
		{lockapi.ErrTimeout, 504, "outcome is unknown"},
		{lockapi.ErrUnknownOutcome, 504, "outcome unknown"},
		{context.DeadlineExceeded, 504, "outcome is unknown"},
		{context.Canceled, 504, "outcome is unknown"},
		{errors.New("disk on fire"), 500, "internal error"},
	}
	for _, tt := range tests {
		svc := &fakeService{
			AcquireFn: func(context.Context, lockapi.AcquireRequest) (lockapi.Lock, error) { return lockapi.Lock{}, tt.err },
			RenewFn:   func(context.Context, lockapi.RenewRequest) (lockapi.Lock, error) { return lockapi.Lock{}, tt.err },
			ReleaseFn: func(context.Context, lockapi.ReleaseRequest) error { return tt.err },
			InfoFn:    func(context.Context, string) (lockapi.Lock, error) { return lockapi.Lock{}, tt.err },
			ListFn:    func(context.Context) ([]lockapi.Lock, error) { return nil, tt.err },
			ClusterInfoFn: func(context.Context) (lockapi.ClusterInfo, error) {
				return lockapi.ClusterInfo{}, tt.err
			},
		}
		a, _ := newAPI(t, svc, nil)
		for _, rq := range []struct{ method, path, body string }{
			{"POST", "/locks/acquire", `{"key":"k","owner":"o","ttl":"1s"}`},
			{"POST", "/locks/renew", `{"key":"k","owner":"o","ttl":"1s"}`},
			{"POST", "/locks/release", `{"key":"k","owner":"o"}`},
			{"GET", "/locks/k", ""},
			{"GET", "/locks", ""},
			{"GET", "/cluster/info", ""},
		} {
			t.Run(fmt.Sprintf("%v/%s %s", tt.err, rq.method, rq.path), func(t *testing.T) {
				rec := do(a, rq.method, rq.path, rq.body)
				checkFailure(t, rec, tt.code, tt.substr)
				if tt.code == 500 && strings.Contains(rec.Body.String(), "disk") {
					t.Errorf("500 body leaks the internal error: %s", rec.Body)
				}
			})
		}
	}
}

// TestRoutes checks unknown paths (404) and wrong methods (405) answer JSON.
func TestRoutes(t *testing.T) {
	a, _ := newAPI(t, &fakeService{}, nil)
	tests := []struct {
		method, path string
		code         int
		allow        string
	}{
		{"GET", "/", 404, ""},
		{"GET", "/nope", 404, ""},
		{"POST", "/locks/acquire/extra", 405, "GET, HEAD"},
		{"GET", "/cluster", 404, ""},
		{"GET", "/nope//x", 404, ""},
		{"DELETE", "/locks/acquire", 405, "GET, HEAD, POST"},
		{"PUT", "/locks", 405, "GET, HEAD"},
		{"POST", "/locks/k", 405, "GET, HEAD"},
		{"POST", "/health", 405, "GET, HEAD"},
		{"DELETE", "/metrics", 405, "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rec := do(a, tt.method, tt.path, "")
			want := "no such endpoint"
			if tt.code == 405 {
				want = "method not allowed"
			}
			checkFailure(t, rec, tt.code, want)
			if got := rec.Header().Get("Allow"); got != tt.allow {
				t.Errorf("Allow = %q, want %q", got, tt.allow)
			}
		})
	}
}

// TestAuth checks the password on every route but liveness.
func TestAuth(t *testing.T) {
	svc := &fakeService{
		ListFn: func(context.Context) ([]lockapi.Lock, error) { return nil, nil },
		ClusterInfoFn: func(context.Context) (lockapi.ClusterInfo, error) {
			return lockapi.ClusterInfo{LeaderID: "node1", HasQuorum: true}, nil
		},
	}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "up 1") })
	open, _ := newAPI(t, svc, func(c *Config) { c.Metrics = metrics })
	locked, _ := newAPI(t, svc, func(c *Config) { c.Metrics = metrics; c.Password = "s3cret" })

	for _, path := range []string{"/locks", "/cluster/info", "/health/ready", "/readyz", "/metrics", "/health", "/healthz"} {
		if rec := do(open, "GET", path, ""); rec.Code != 200 {
			t.Errorf("no password: GET %s = %d, want 200", path, rec.Code)
		}
	}
	auth := []struct {
		name, header string
		ok           bool
	}{
		{"none", "", false},
		{"wrong password", "Bearer nope", false},
		{"prefix of password", "Bearer s3cre", false},
		{"basic scheme", "Basic czNjcmV0", false},
		{"no scheme", "s3cret", false},
		{"right", "Bearer s3cret", true},
		{"lowercase scheme", "bearer s3cret", true},
	}
	for _, path := range []string{"/locks", "/cluster/info", "/health/ready", "/readyz", "/metrics"} {
		for _, tt := range auth {
			t.Run(path+"/"+tt.name, func(t *testing.T) {
				var hdr []string
				if tt.header != "" {
					hdr = []string{"Authorization", tt.header}
				}
				rec := do(locked, "GET", path, "", hdr...)
				if tt.ok {
					if rec.Code != 200 {
						t.Errorf("status %d, want 200: %s", rec.Code, rec.Body)
					}
					return
				}
				checkFailure(t, rec, 401, "authentication required")
				if rec.Header().Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			})
		}
	}
	for _, path := range []string{"/health", "/healthz"} {
		checkJSON(t, do(locked, "GET", path, ""), 200, `{"status":"ok","node_id":"node1"}`)
	}
	// A POST without the password never reaches the body or the service.
	calls := svc.Calls()
	checkFailure(t, do(locked, "POST", "/locks/acquire", `{"key":"k","owner":"o","ttl":"1s"}`), 401, "authentication")
	if svc.Calls() != calls {
		t.Error("unauthenticated acquire reached the service")
	}
}

// TestReadiness checks 200 with a leader and quorum, 503 otherwise.
func TestReadiness(t *testing.T) {
	tests := []struct {
		name string
		ci   lockapi.ClusterInfo
		err  error
		code int
		want string
	}{
		{"ready", lockapi.ClusterInfo{LeaderID: "node2", HasQuorum: true}, nil, 200,
			`{"status":"ready","node_id":"node1","leader_id":"node2","has_quorum":true}`},
		{"no leader", lockapi.ClusterInfo{HasQuorum: true}, nil, 503,
			`{"success":false,"error":"not ready: no leader","status":"unavailable","node_id":"node1","leader_id":"","has_quorum":true}`},
		{"no quorum", lockapi.ClusterInfo{LeaderID: "node2"}, nil, 503,
			`{"success":false,"error":"not ready: no quorum","status":"unavailable","node_id":"node1","leader_id":"node2","has_quorum":false}`},
		{"shutting down", lockapi.ClusterInfo{}, lockapi.ErrShuttingDown, 503,
			`{"success":false,"error":"not ready: node is shutting down","status":"unavailable","node_id":"node1","leader_id":"","has_quorum":false}`},
		{"a member", lockapi.ClusterInfo{LeaderID: "node2", HasQuorum: true, Nodes: []lockapi.NodeInfo{{ID: "node1"}, {ID: "node2"}}}, nil, 200,
			`{"status":"ready","node_id":"node1","leader_id":"node2","has_quorum":true}`},
		{"joining, still catching up", lockapi.ClusterInfo{LeaderID: "node2", HasQuorum: true, Nodes: []lockapi.NodeInfo{{ID: "node2"}}}, nil, 200,
			`{"status":"ready","node_id":"node1","leader_id":"node2","has_quorum":true}`},
		{"removed", lockapi.ClusterInfo{Nodes: []lockapi.NodeInfo{{ID: "node2"}, {ID: "node3"}}}, nil, 503,
			`{"success":false,"error":"not ready: ` + notMember + `","status":"unavailable","node_id":"node1","leader_id":"","has_quorum":false}`},
		{"removed while it was down", lockapi.ClusterInfo{Removed: true, Nodes: []lockapi.NodeInfo{{ID: "node1"}, {ID: "node2"}}}, nil, 503,
			`{"success":false,"error":"not ready: ` + notMember + `","status":"unavailable","node_id":"node1","leader_id":"","has_quorum":false}`},
		{"removed, then joined again", lockapi.ClusterInfo{LeaderID: "node2", HasQuorum: true, Removed: true, Nodes: []lockapi.NodeInfo{{ID: "node1"}, {ID: "node2"}}}, nil, 200,
			`{"status":"ready","node_id":"node1","leader_id":"node2","has_quorum":true}`},
		{"internal", lockapi.ClusterInfo{}, errors.New("boom"), 503,
			`{"success":false,"error":"not ready: internal error","status":"unavailable","node_id":"node1","leader_id":"","has_quorum":false}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := &fakeService{ClusterInfoFn: func(context.Context) (lockapi.ClusterInfo, error) { return tt.ci, tt.err }}
			a, _ := newAPI(t, svc, nil)
			for _, path := range []string{"/health/ready", "/readyz"} {
				checkJSON(t, do(a, "GET", path, ""), tt.code, tt.want)
			}
			// Liveness never asks the cluster.
			checkJSON(t, do(a, "GET", "/health", ""), 200, `{"status":"ok","node_id":"node1"}`)
		})
	}
}

// TestMetricsRoute checks GET /metrics with and without a handler.
func TestMetricsRoute(t *testing.T) {
	a, _ := newAPI(t, &fakeService{}, nil)
	checkFailure(t, do(a, "GET", "/metrics", ""), 404, "metrics are not served")

	reg := prometheus.NewRegistry()
	b, err := New(Config{Service: &fakeService{}, Registerer: reg, Logger: quietLogger,
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			fmt.Fprintln(w, "lock_active_count 3")
		})})
	if err != nil {
		t.Fatal(err)
	}
	rec := do(b, "GET", "/metrics", "")
	if rec.Code != 200 || rec.Body.String() != "lock_active_count 3\n" {
		t.Errorf("GET /metrics = %d %q", rec.Code, rec.Body)
	}
}

// TestRouteLabels checks the histogram's labels: patterns, never raw paths.
func TestRouteLabels(t *testing.T) {
	svc := &fakeService{InfoFn: func(context.Context, string) (lockapi.Lock, error) { return sampleLock, nil }}
	a, reg := newAPI(t, svc, nil)
	for i := range 20 {
		do(a, "GET", fmt.Sprintf("/locks/key-%d", i), "")
		do(a, "GET", fmt.Sprintf("/random/%d", i), "")
		do(a, "PATCH", fmt.Sprintf("/locks/key-%d", i), "")
		do(a, "GET", fmt.Sprintf("/locks/a//%d", i), "") // redirect to a cleaned path
	}
	do(a, "GET", "/health", "")
	got := histogramLabels(t, reg)
	want := []string{
		"route=GET /health code=200",
		"route=GET /locks/{key...} code=200",
		"route=GET /locks/{key...} code=307",
		"route=unmatched code=404",
		"route=unmatched code=405",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("label sets:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// histogramLabels returns "route=R code=C" for each series of the histogram.
func histogramLabels(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != "http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var parts []string
			for _, l := range m.GetLabel() {
				parts = append(parts, l.GetName()+"="+l.GetValue())
			}
			sort.Sort(sort.Reverse(sort.StringSlice(parts))) // route before code
			out = append(out, strings.Join(parts, " "))
		}
	}
	sort.Strings(out)
	return out
}

// TestPanicRecovered checks a panicking service yields a JSON 500.
func TestPanicRecovered(t *testing.T) {
	svc := &fakeService{ListFn: func(context.Context) ([]lockapi.Lock, error) { panic("bug") }}
	a, reg := newAPI(t, svc, nil)
	checkFailure(t, do(a, "GET", "/locks", ""), 500, "internal error")
	if got := histogramLabels(t, reg); len(got) != 1 || got[0] != "route=GET /locks code=500" {
		t.Errorf("labels %v", got)
	}
}

// TestNew checks configuration errors and registry sharing.
func TestNew(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without a Service succeeded")
	}
	if _, err := New(Config{Service: &fakeService{}, MaxTTL: -1}); err == nil {
		t.Error("New with a negative MaxTTL succeeded")
	}
	a, err := New(Config{Service: &fakeService{}})
	if err != nil {
		t.Fatalf("New with defaults: %v", err)
	}
	if a.cfg.MaxTTL != lockapi.DefaultMaxTTL || a.cfg.MaxWait != lockapi.DefaultMaxWait || a.log == nil {
		t.Errorf("defaults not applied: %+v", a.cfg)
	}
	reg := prometheus.NewRegistry()
	for i := range 2 {
		if _, err := New(Config{Service: &fakeService{}, Registerer: reg}); err != nil {
			t.Fatalf("New #%d on a shared registry: %v", i, err)
		}
	}
	clash := prometheus.NewRegistry()
	clash.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "http_request_duration_seconds", Help: "x"}))
	if _, err := New(Config{Service: &fakeService{}, Registerer: clash}); err == nil {
		t.Error("New on a registry with a clashing metric succeeded")
	}
}

// TestNewServer checks every timeout is set and writes outlast the longest wait.
func TestNewServer(t *testing.T) {
	a, _ := newAPI(t, &fakeService{}, func(c *Config) { c.MaxWait = 10 * time.Minute })
	for _, tt := range []struct {
		h       http.Handler
		maxWait time.Duration
	}{{a, 10 * time.Minute}, {http.NotFoundHandler(), lockapi.DefaultMaxWait}} {
		s := NewServer("127.0.0.1:0", tt.h)
		if s.ReadHeaderTimeout <= 0 || s.ReadTimeout <= 0 || s.IdleTimeout <= 0 || s.MaxHeaderBytes <= 0 || s.ErrorLog == nil {
			t.Errorf("unset limit: %+v", s)
		}
		if s.WriteTimeout <= tt.maxWait {
			t.Errorf("WriteTimeout %s does not exceed the longest wait %s", s.WriteTimeout, tt.maxWait)
		}
	}
}

// TestCancelReachesService checks a client disconnect cancels a waiting
// acquire, through a real server.
func TestCancelReachesService(t *testing.T) {
	entered, cancelled := make(chan struct{}), make(chan struct{})
	svc := &fakeService{AcquireFn: func(ctx context.Context, req lockapi.AcquireRequest) (lockapi.Lock, error) {
		if req.Wait != 30*time.Second {
			t.Errorf("wait = %s", req.Wait)
		}
		close(entered)
		select {
		case <-ctx.Done():
			close(cancelled)
			return lockapi.Lock{}, ctx.Err()
		case <-time.After(10 * time.Second):
			return lockapi.Lock{}, lockapi.ErrHeld
		}
	}}
	a, _ := newAPI(t, svc, nil)
	srv := httptest.NewUnstartedServer(a)
	srv.Config = NewServer("", a)
	srv.Start()
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", srv.URL+"/locks/acquire",
		strings.NewReader(`{"key":"k","owner":"o","ttl":"1s","wait":"30s"}`))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		resp, err := srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("acquire never reached the service")
	}
	cancel()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("client disconnect did not cancel the service's context")
	}
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("client error = %v, want context.Canceled", err)
	}
}

// TestBodyLimitOverNetwork checks an oversized body of unknown length (no
// Content-Length) gets a JSON 413 from a real server.
func TestBodyLimitOverNetwork(t *testing.T) {
	svc := &fakeService{}
	a, _ := newAPI(t, svc, nil)
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	body := io.MultiReader(strings.NewReader(`{"key":"`), strings.NewReader(strings.Repeat("x", 1<<20)),
		strings.NewReader(`","owner":"o","ttl":"1s"}`))
	req, err := http.NewRequest("POST", srv.URL+"/locks/acquire", io.NopCloser(body)) // NopCloser hides the length
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 413 || !strings.Contains(string(reply), `"success":false`) {
		t.Errorf("got %d %s, want a JSON 413", resp.StatusCode, reply)
	}
	if svc.Calls() != 0 {
		t.Error("oversized body reached the service")
	}
}
