package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/distlock/distlock/lockapi"
)

// unmatchedRoute is the route label of requests no pattern matched, so that
// arbitrary paths never create new label values.
const unmatchedRoute = "unmatched"

// Config configures an [API]. The zero value of every field but Service is
// usable.
type Config struct {
	// Service answers the lock requests. Required.
	Service lockapi.Service
	// Metrics is served at GET /metrics, typically promhttp.HandlerFor the
	// node's registry. default: nil, and GET /metrics answers 404.
	Metrics http.Handler
	// Registerer receives the http_request_duration_seconds histogram
	// (labels route and code). default: a fresh prometheus.NewRegistry().
	Registerer prometheus.Registerer
	// MaxTTL is the longest ttl accepted. default: lockapi.DefaultMaxTTL.
	MaxTTL time.Duration
	// MaxWait is the longest wait accepted by acquire.
	// default: lockapi.DefaultMaxWait.
	MaxWait time.Duration
	// Password, when set, is required as "Authorization: Bearer <password>"
	// on every route except liveness (/health, /healthz). default: "" (no
	// authentication).
	Password string
	// NodeID is this node's --id, reported by the health routes.
	NodeID string
	// Logger receives request failures (Error) and per-request lines
	// (Debug). default: slog.Default().
	Logger *slog.Logger
}

// withDefaults returns c with defaults applied, or an error if c is unusable.
func (c Config) withDefaults() (Config, error) {
	if c.Service == nil {
		return c, errors.New("httpapi: Config.Service is nil")
	}
	if c.MaxTTL < 0 || c.MaxWait < 0 {
		return c, fmt.Errorf("httpapi: negative MaxTTL %s or MaxWait %s", c.MaxTTL, c.MaxWait)
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = lockapi.DefaultMaxTTL
	}
	if c.MaxWait == 0 {
		c.MaxWait = lockapi.DefaultMaxWait
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// API is the HTTP handler of the sidecar. It is safe for concurrent use.
type API struct {
	cfg      Config
	log      *slog.Logger
	mux      *http.ServeMux
	patterns map[string]bool // registered patterns: the only route labels besides unmatchedRoute
	duration *prometheus.HistogramVec
	password [sha256.Size]byte // sha256 of cfg.Password, compared in constant time
}

// route is one endpoint.
type route struct {
	pattern string
	public  bool // served without the password (liveness only)
	handle  func(http.ResponseWriter, *http.Request) error
}

// New returns the API for cfg. It registers http_request_duration_seconds
// on cfg.Registerer; if an identical collector is already registered there
// (several APIs sharing a registry) it is reused.
func New(cfg Config) (*API, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	a := &API{
		cfg:      cfg,
		log:      cfg.Logger,
		mux:      http.NewServeMux(),
		patterns: make(map[string]bool),
		password: sha256.Sum256([]byte(cfg.Password)),
	}
	if a.duration, err = registerDuration(cfg.Registerer); err != nil {
		return nil, err
	}
	for _, rt := range []route{
		{pattern: "POST /locks/acquire", handle: a.acquire},
		{pattern: "POST /locks/renew", handle: a.renew},
		{pattern: "POST /locks/release", handle: a.release},
		{pattern: "GET /locks", handle: a.list},
		{pattern: "GET /locks/{key...}", handle: a.info},
		{pattern: "GET /cluster/info", handle: a.clusterInfo},
		{pattern: "POST /cluster/join", handle: a.join},
		{pattern: "POST /cluster/leave", handle: a.leave},
		{pattern: "GET /health", public: true, handle: a.live},
		{pattern: "GET /healthz", public: true, handle: a.live},
		{pattern: "GET /health/ready", handle: a.ready},
		{pattern: "GET /readyz", handle: a.ready},
		{pattern: "GET /metrics", handle: a.metrics},
	} {
		a.mux.Handle(rt.pattern, a.wrap(rt))
		a.patterns[rt.pattern] = true
	}
	return a, nil
}

// registerDuration registers the request histogram on reg, or returns the
// one already there.
func registerDuration(reg prometheus.Registerer) (*prometheus.HistogramVec, error) {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "http_request_duration_seconds",
		Help: "Duration of HTTP API requests by route pattern and status code.",
		// Up to 5m: acquire with wait may take as long as MaxWait.
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
	}, []string{"route", "code"})
	if err := reg.Register(h); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.HistogramVec); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("httpapi: register http_request_duration_seconds: %w", err)
	}
	return h, nil
}

// wrap applies authentication to rt and turns its returned error into the
// failure reply.
func (a *API) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !rt.public && !a.authorized(r) {
			writeError(w, r, a.log, errUnauthorized)
			return
		}
		if err := rt.handle(w, r); err != nil {
			writeError(w, r, a.log, err)
		}
	})
}

// authorized reports whether r carries the configured password (always true
// when none is configured). The comparison is in constant time over hashes,
// so neither content nor length leaks.
func (a *API) authorized(r *http.Request) bool {
	if a.cfg.Password == "" {
		return true
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(got[:], a.password[:]) == 1
}

// ServeHTTP routes r. It answers unknown paths (404) and wrong methods (405,
// with ServeMux's Allow header) in JSON, recovers panics as 500, and records
// the request in http_request_duration_seconds under the matched pattern.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	h, pattern := a.mux.Handler(r)
	label := unmatchedRoute
	if a.patterns[pattern] {
		label = pattern
	}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			if sw.code == 0 {
				writeError(sw, r, a.log, fmt.Errorf("panic serving %s %s: %v", r.Method, r.URL.Path, p))
			} else {
				a.log.ErrorContext(r.Context(), "panic serving http request", "method", r.Method, "path", r.URL.Path, "panic", p)
			}
		}
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		elapsed := time.Since(start)
		a.duration.WithLabelValues(label, strconv.Itoa(code)).Observe(elapsed.Seconds())
		a.log.DebugContext(r.Context(), "http request", "method", r.Method, "route", label, "code", code, "elapsed", elapsed)
	}()
	if pattern != "" {
		a.mux.ServeHTTP(sw, r) // matches again, setting r's path values
		return
	}
	// ServeMux's own not-found or method-not-allowed handler (or a redirect
	// to a cleaned path that would match nothing): learn which, answer JSON.
	rec := &headerRecorder{header: make(http.Header)}
	h.ServeHTTP(rec, r)
	if rec.code == http.StatusMethodNotAllowed {
		if allow := rec.header.Get("Allow"); allow != "" {
			sw.Header().Set("Allow", allow)
		}
		writeError(sw, r, a.log, fmt.Errorf("%w: %s %s", errMethod, r.Method, r.URL.Path))
		return
	}
	writeError(sw, r, a.log, fmt.Errorf("%w: %s", errNoRoute, r.URL.Path))
}

// statusWriter remembers the status code written through it.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (write deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// headerRecorder captures a handler's headers and status and drops its body.
type headerRecorder struct {
	header http.Header
	code   int
}

func (h *headerRecorder) Header() http.Header { return h.header }

func (h *headerRecorder) WriteHeader(code int) {
	if h.code == 0 {
		h.code = code
	}
}

func (h *headerRecorder) Write(p []byte) (int, error) {
	if h.code == 0 {
		h.code = http.StatusOK
	}
	return len(p), nil
}
