package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/distlock/distlock/lockapi"
)

// errNotStubbed is what a fakeService method returns without a stub.
var errNotStubbed = errors.New("fake: method not stubbed")

// fakeService is a lockapi.Service whose methods are function fields; it
// records how many calls reached it.
type fakeService struct {
	AcquireFn     func(context.Context, lockapi.AcquireRequest) (lockapi.Lock, error)
	RenewFn       func(context.Context, lockapi.RenewRequest) (lockapi.Lock, error)
	ReleaseFn     func(context.Context, lockapi.ReleaseRequest) error
	InfoFn        func(context.Context, string) (lockapi.Lock, error)
	ListFn        func(context.Context) ([]lockapi.Lock, error)
	ClusterInfoFn func(context.Context) (lockapi.ClusterInfo, error)

	mu    sync.Mutex
	calls int
}

func (f *fakeService) called() {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
}

func (f *fakeService) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeService) Acquire(ctx context.Context, req lockapi.AcquireRequest) (lockapi.Lock, error) {
	f.called()
	if f.AcquireFn == nil {
		return lockapi.Lock{}, errNotStubbed
	}
	return f.AcquireFn(ctx, req)
}

func (f *fakeService) Renew(ctx context.Context, req lockapi.RenewRequest) (lockapi.Lock, error) {
	f.called()
	if f.RenewFn == nil {
		return lockapi.Lock{}, errNotStubbed
	}
	return f.RenewFn(ctx, req)
}

func (f *fakeService) Release(ctx context.Context, req lockapi.ReleaseRequest) error {
	f.called()
	if f.ReleaseFn == nil {
		return errNotStubbed
	}
	return f.ReleaseFn(ctx, req)
}

func (f *fakeService) Info(ctx context.Context, key string) (lockapi.Lock, error) {
	f.called()
	if f.InfoFn == nil {
		return lockapi.Lock{}, errNotStubbed
	}
	return f.InfoFn(ctx, key)
}

func (f *fakeService) List(ctx context.Context) ([]lockapi.Lock, error) {
	f.called()
	if f.ListFn == nil {
		return nil, errNotStubbed
	}
	return f.ListFn(ctx)
}

func (f *fakeService) ClusterInfo(ctx context.Context) (lockapi.ClusterInfo, error) {
	f.called()
	if f.ClusterInfoFn == nil {
		return lockapi.ClusterInfo{}, errNotStubbed
	}
	return f.ClusterInfoFn(ctx)
}

// sampleLock is the seed's example lock, with a fencing token.
var sampleLock = lockapi.Lock{
	Key:       "resource-1",
	Owner:     "client-abc",
	Token:     42,
	Version:   1,
	TTL:       30 * time.Second,
	Remaining: 30 * time.Second,
	ExpiresAt: time.Date(2024, 1, 15, 10, 30, 30, 0, time.UTC),
}

// sampleLockJSON is sampleLock on the wire.
const sampleLockJSON = `{"key":"resource-1","owner":"client-abc","ttl":"30s",
	"expires_at":"2024-01-15T10:30:30.000Z","version":1,"fencing_token":42}`

// quietLogger discards logs.
var quietLogger = slogDiscard()

// newAPI builds an API over svc with a fresh registry; edit adjusts the
// config first.
func newAPI(t testing.TB, svc lockapi.Service, edit func(*Config)) (*API, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := Config{Service: svc, Registerer: reg, NodeID: "node1", Logger: quietLogger}
	if edit != nil {
		edit(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a, reg
}

// do sends one request to h; headers are name, value pairs.
func do(h http.Handler, method, target, body string, headers ...string) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// checkJSON fails t unless rec has status code and a JSON body equal to
// want (compared as decoded values, so key order and spacing don't matter).
func checkJSON(t *testing.T, rec *httptest.ResponseRecorder, code int, want string) {
	t.Helper()
	if rec.Code != code {
		t.Errorf("status = %d, want %d; body %s", rec.Code, code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	got := decodeMap(t, rec.Body.Bytes())
	wantMap := decodeMap(t, []byte(want))
	if !reflect.DeepEqual(got, wantMap) {
		t.Errorf("body:\n got %v\nwant %v", got, wantMap)
	}
}

// checkFailure fails t unless rec is a failure body with status code whose
// error contains substr.
func checkFailure(t *testing.T, rec *httptest.ResponseRecorder, code int, substr string) {
	t.Helper()
	if rec.Code != code {
		t.Errorf("status = %d, want %d; body %s", rec.Code, code, rec.Body)
	}
	m := decodeMap(t, rec.Body.Bytes())
	if len(m) != 2 || m["success"] != false {
		t.Errorf("body %v is not {success:false, error}", m)
	}
	msg, _ := m["error"].(string)
	if !strings.Contains(msg, substr) {
		t.Errorf("error = %q, want it to contain %q", msg, substr)
	}
}

func decodeMap(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", b, err)
	}
	return m
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newRequest(method, target, body string) *http.Request {
	return httptest.NewRequest(method, target, strings.NewReader(body))
}

func serve(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}
