package resp

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidwall/redcon"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/resp/guard"
)

// ErrServerClosed is returned by [Server.Serve] and [Server.ListenAndServe]
// after [Server.Close].
var ErrServerClosed = errors.New("resp: server closed")

const (
	// defaultAddr is where ListenAndServe listens unless configured.
	defaultAddr = ":6379"
	// defaultMaxClients is Redis's default maxclients.
	defaultMaxClients = 10000
	// commandTimeout bounds one command (on top of its WAIT, if any).
	commandTimeout = 10 * time.Second
	// maxAcceptBackoff bounds the pause after a failed Accept.
	maxAcceptBackoff = time.Second
)

// Config configures a [Server]. The zero value of every field but Service
// means its default.
type Config struct {
	// Addr is the address ListenAndServe listens on. Default ":6379".
	Addr string
	// Service answers the lock commands. Required.
	Service lockapi.Service
	// Limits bounds what a client may send in one command; zero fields mean
	// the guard package's defaults.
	Limits guard.Limits
	// MaxClients caps the open client connections; a client over the cap is
	// sent "ERR max number of clients reached" and disconnected. Default
	// 10000 (Redis's default); negative means no cap.
	MaxClients int
	// MaxTTL is the longest lease a client may ask for. Default
	// lockapi.DefaultMaxTTL.
	MaxTTL time.Duration
	// MaxWait is the longest LOCK.ACQUIRE ... WAIT a client may ask for.
	// Default lockapi.DefaultMaxWait.
	MaxWait time.Duration
	// Logger receives connection and error logs. Default slog.Default().
	Logger *slog.Logger
	// Registerer receives the server's metrics: the histogram
	// resp_command_duration_seconds{command} and the gauge resp_connections.
	// Default: a fresh registry (metrics are then not exported).
	Registerer prometheus.Registerer
	// Password, when set, is required (AUTH or HELLO ... AUTH, user
	// "default") before any command but AUTH, HELLO, QUIT and RESET.
	Password string
	// Keys runs the Redis key commands (SET, GET, EVAL...). Default: the
	// Service, if it implements lockapi.KeyService; without one those
	// commands are unknown.
	Keys lockapi.KeyService
}

// withDefaults returns the configuration with defaults filled in, or an
// error if it is unusable.
func (c Config) withDefaults() (Config, error) {
	if c.Service == nil {
		return c, errors.New("resp: config has no Service")
	}
	if c.MaxTTL < 0 || c.MaxWait < 0 {
		return c, errors.New("resp: negative MaxTTL or MaxWait")
	}
	if c.Addr == "" {
		c.Addr = defaultAddr
	}
	c.Limits = c.Limits.WithDefaults()
	switch {
	case c.MaxClients == 0:
		c.MaxClients = defaultMaxClients
	case c.MaxClients < 0:
		c.MaxClients = 0 // guard: no cap
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = lockapi.DefaultMaxTTL
	}
	if c.MaxWait == 0 {
		c.MaxWait = lockapi.DefaultMaxWait
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Keys == nil {
		c.Keys, _ = c.Service.(lockapi.KeyService)
	}
	return c, nil
}

// Server is a RESP server over a [lockapi.Service]. Create it with [New],
// run it with [Server.Serve] or [Server.ListenAndServe], stop it with
// [Server.Close].
type Server struct {
	cfg      Config
	svc      lockapi.Service
	keys     lockapi.KeyService // nil: no key commands
	log      *slog.Logger
	started  time.Time
	clients  clientSet
	cmds     map[string]*command
	passHash *[sha256.Size]byte // nil: no password
	ctx      context.Context    // cancelled by Close
	cancel   context.CancelFunc

	duration *prometheus.HistogramVec
	conns    prometheus.Gauge

	nextID  int64         // last client id; accessed by the accept loop only
	backoff time.Duration // after a failed Accept; accept loop only

	mu     sync.Mutex
	ln     net.Listener  // guarded listener, once serving
	done   chan struct{} // closed when Serve returns
	closed bool
}

// New returns a server for cfg. It registers the server's metrics on
// cfg.Registerer and fails if they are already registered there.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		svc:     cfg.Service,
		keys:    cfg.Keys,
		log:     cfg.Logger,
		started: time.Now(),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "resp_command_duration_seconds",
			Help: "Time to execute a RESP command, by command name.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
				0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"command"}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "resp_connections",
			Help: "Open RESP client connections.",
		}),
	}
	for _, c := range []prometheus.Collector{s.duration, s.conns} {
		if err := cfg.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("resp: register metrics: %w", err)
		}
	}
	if cfg.Password != "" {
		h := sha256.Sum256([]byte(cfg.Password))
		s.passHash = &h
	}
	s.cmds = s.commandTable()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// ListenAndServe listens on the configured Addr and serves clients until
// Close; it then returns [ErrServerClosed].
func (s *Server) ListenAndServe() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("resp: listen: %w", err)
	}
	return s.Serve(ln)
}

// Serve accepts clients on ln until Close, and then returns
// [ErrServerClosed]. It takes ownership of ln. Serve may be called once.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	if s.ln != nil {
		s.mu.Unlock()
		return errors.New("resp: Serve called twice")
	}
	lim := s.cfg.Limits
	lim.AuthRequired = s.passHash != nil // a client's own bounds until it authenticates
	gl := guard.Listener(ln, lim, s.cfg.MaxClients)
	s.ln = gl
	s.done = make(chan struct{})
	defer close(s.done)
	rs := redcon.NewServerNetwork(ln.Addr().Network(), ln.Addr().String(),
		s.handle, s.accept, s.disconnected)
	rs.AcceptError = s.acceptError
	s.mu.Unlock()

	s.log.Info("resp server listening", "addr", ln.Addr().String())
	err := rs.Serve(gl)
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrServerClosed
	}
	return err
}

// Addr returns the address the server listens on, or nil before Serve.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Close stops the server: it closes the listener and every client
// connection, and cancels the commands in flight. It waits for Serve's
// accept loop to finish, but not for commands to return. Close is
// idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	first := !s.closed
	s.closed = true
	ln, done := s.ln, s.done
	s.mu.Unlock()
	s.cancel()
	if ln == nil {
		return nil
	}
	var err error
	if first {
		if cerr := ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = fmt.Errorf("resp: close listener: %w", cerr)
		}
	}
	<-done // redcon closes every connection before Serve returns
	return err
}

// commandContext returns the context of one command: cancelled when the
// server closes and after commandTimeout plus extra.
func (s *Server) commandContext(extra time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, commandTimeout+extra)
}

// accept registers a new connection.
func (s *Server) accept(conn redcon.Conn) bool {
	s.backoff = 0
	s.nextID++
	c := s.newClient(conn, s.nextID)
	c.addr = conn.RemoteAddr()
	conn.SetContext(c)
	s.clients.add(c.id, c.addr)
	s.conns.Inc()
	s.log.Debug("client connected", "id", c.id, "addr", conn.RemoteAddr())
	return true
}

// disconnected is called by redcon once a connection's goroutine ends.
func (s *Server) disconnected(conn redcon.Conn, err error) {
	s.conns.Dec()
	id := int64(0)
	if c, ok := conn.Context().(*client); ok {
		id = c.id
		s.clients.remove(id)
	}
	var pe *guard.ProtocolError
	if errors.As(err, &pe) {
		s.log.Debug("client disconnected after a protocol error", "id", id, "addr", conn.RemoteAddr(), "err", err)
		return
	}
	s.log.Debug("client disconnected", "id", id, "addr", conn.RemoteAddr(), "err", err)
}

// acceptError pauses the accept loop after a failed Accept (out of file
// descriptors, say), doubling the pause up to maxAcceptBackoff.
func (s *Server) acceptError(err error) {
	s.backoff = min(max(2*s.backoff, 5*time.Millisecond), maxAcceptBackoff)
	s.log.Warn("resp accept failed", "err", err, "retry_in", s.backoff)
	time.Sleep(s.backoff)
}

// handle runs one command for redcon and queues its reply.
func (s *Server) handle(conn redcon.Conn, cmd redcon.Command) {
	c, ok := conn.Context().(*client)
	if !ok || c.quitting {
		return
	}
	if len(conn.PeekPipeline()) > 0 && s.concurrent(cmd.Args) {
		s.runPipeline(c, conn, append([]redcon.Command{cmd}, conn.ReadPipeline()...))
		return
	}
	s.dispatch(c, cmd.Args)
	conn.WriteRaw(c.out)
	c.resetOut()
	if c.quitting {
		conn.ReadPipeline() // commands pipelined after QUIT are not run
		_ = conn.Close()    // flushes the reply first
	}
}

// clientSet tracks the open connections for INFO and CLIENT LIST.
type clientSet struct {
	mu    sync.Mutex
	addrs map[int64]string
}

func (cs *clientSet) add(id int64, addr string) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.addrs == nil {
		cs.addrs = make(map[int64]string)
	}
	cs.addrs[id] = addr
}

func (cs *clientSet) remove(id int64) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	delete(cs.addrs, id)
}

func (cs *clientSet) count() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.addrs)
}

// lines returns one CLIENT LIST line per open connection: all of them in
// id order, or those among ids in the order of ids (as Redis does, an id
// given twice is listed twice and one not open is left out).
func (cs *clientSet) lines(ids []int64, all bool) []string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if all {
		ids = make([]int64, 0, len(cs.addrs))
		for id := range cs.addrs {
			ids = append(ids, id)
		}
		slices.Sort(ids)
	}
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if addr, ok := cs.addrs[id]; ok {
			out = append(out, fmt.Sprintf("id=%d addr=%s db=0\n", id, addr))
		}
	}
	return out
}
