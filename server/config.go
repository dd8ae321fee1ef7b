package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/distlock/distlock/lockapi"
	"github.com/distlock/distlock/tlsconf"
)

// Peer is another voter of the cluster as named on the command line.
type Peer struct {
	ID   string
	Addr string // raft address, host:port
}

// ParsePeers parses the --peers list "id:host:port,id:host:port".
func ParsePeers(s string) ([]Peer, error) {
	var peers []Peer
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, addr, ok := strings.Cut(item, ":")
		if !ok || id == "" {
			return nil, fmt.Errorf("peer %q: want id:host:port", item)
		}
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			return nil, fmt.Errorf("peer %q: want id:host:port", item)
		}
		peers = append(peers, Peer{ID: id, Addr: addr})
	}
	return peers, nil
}

// Config configures a [Node]. The zero value of every field but the
// addresses means its default.
type Config struct {
	// ID is the node's unique name in the cluster. Default "node1".
	ID string
	// DataDir holds the node's state under DataDir/<ID>/. Default "./data".
	DataDir string
	// RaftAddr is the address the raft transport listens on. Required.
	RaftAddr string
	// RaftAdvertise is the raft address other nodes reach this one at.
	// Default: RaftAddr, with a loopback host written "localhost" (as the
	// seed's --peers lists name nodes) and an unspecified host replaced by
	// the hostname.
	RaftAdvertise string
	// RESPAddr is the RESP listener's address; empty disables it.
	RESPAddr string
	// HTTPAddr is the HTTP sidecar's address; empty disables it.
	HTTPAddr string
	// Peers are the other voters. Without peers, a node with no state
	// bootstraps a one-node cluster.
	Peers []Peer
	// Join, when set, is the raft address of a member of an existing
	// cluster: a node with no state does not bootstrap but asks to be added
	// as a voter there (through the leader), and catches up by snapshot.
	Join string

	// ElectionTimeout is the base election timeout: a follower that hears
	// nothing from a leader for a random time in [1x, 2x) of it starts an
	// election. Default 150ms.
	ElectionTimeout time.Duration
	// HeartbeatInterval bounds how long an idle leader waits before sending
	// AppendEntries (raft's CommitTimeout); raft also heartbeats every
	// ElectionTimeout/10. Default 50ms.
	HeartbeatInterval time.Duration
	// SnapshotInterval is how often a snapshot is taken when anything was
	// applied since the last one. Default 5m.
	SnapshotInterval time.Duration
	// ClockCheckpoint is how far the state machine's cluster time may lag
	// the leader's clock while locks are held before the leader writes an
	// entry that only carries time, which bounds how much longer than its
	// TTL a lock lives across a failover. Default 1s.
	ClockCheckpoint time.Duration
	// SnapshotThreshold is the number of log entries since the last snapshot
	// that triggers a new one. Default 8192.
	SnapshotThreshold uint64
	// TrailingLogs is how many entries are kept behind a snapshot for slow
	// followers. Default 10240.
	TrailingLogs uint64

	// MaxTTL and MaxWait bound lease and queueing times. Defaults are
	// lockapi.DefaultMaxTTL and lockapi.DefaultMaxWait.
	MaxTTL  time.Duration
	MaxWait time.Duration
	// Password, when set, is required by AUTH over RESP and as a bearer
	// token over HTTP.
	Password string
	// MaxClients bounds concurrent RESP connections. Default 10000.
	MaxClients int
	// TLS, when set, makes every port TLS only: the RESP and HTTP ports
	// serve clients with its Clients configuration, and the raft port
	// (raft and forwarding) is mutual TLS between peers. Nil: plain TCP.
	TLS *tlsconf.Config

	// MemoryHeadroom, when positive, keeps a soft memory limit of the live
	// heap plus this percentage (plus 64 MiB, at least 256 MiB), so a node
	// with a large lock table does not hold twice its live heap. 0 leaves
	// Go's defaults (GOGC=100). Ignored when GOMEMLIMIT is set.
	MemoryHeadroom int

	// EnablePprof serves Go's profiler under /debug/pprof/ on the HTTP
	// listener (behind the password, when one is set). Default off.
	EnablePprof bool

	// Logger receives the node's logs. Default slog.Default().
	Logger *slog.Logger
	// Registry receives the node's metrics. Default a fresh registry.
	Registry *prometheus.Registry
	// Clock is the node's time source. Default the system clock; tests
	// inject one to jump the wall clock.
	Clock Clock

	// Unsafe plants known bugs, for proving that the safety tests detect
	// them. Never set it in production.
	Unsafe UnsafeHooks
}

// UnsafeHooks are test-only switches that break the lock server's
// guarantees on purpose.
type UnsafeHooks struct {
	// StaleReads serves LOCK.INFO and LOCK.LIST from the answering node's
	// own state machine, without forwarding to the leader or confirming
	// leadership.
	StaleReads bool
	// ApplyBeforeDurable makes the leader apply (and acknowledge) an entry
	// as soon as raft commits it, even while its own copy is not yet
	// fsynced (package raftoverlap): the entry may be on one disk of three.
	ApplyBeforeDurable bool
	// UnclampedCommit tells followers raft's commit index even past what
	// the leader holds durably, so they apply entries that may be on one
	// disk of three.
	UnclampedCommit bool
	// SlowLogSync delays each fsync of the leader's own appends by this
	// much: a slow disk. Not a bug, but test-only.
	SlowLogSync time.Duration
	// DialMap rewrites the addresses this node dials for raft and
	// forwarding (real address -> address to dial instead), so a test can
	// route each link through a proxy it can cut. Not a bug, but test-only.
	DialMap map[string]string
	// ProtocolVersion, when not zero, is the protocol version this node
	// announces (registration, joins, when asked) instead of its build's,
	// as an older build would: tests form mixed-version clusters with it.
	// Not a bug, but test-only.
	ProtocolVersion uint64
	// WallClockExpiry takes cluster time from the leader's wall clock
	// instead of its monotonic clock, so a wall-clock jump expires locks
	// early.
	WallClockExpiry bool
}

// withDefaults returns cfg with defaults filled in, or an error naming the
// first invalid field.
func (cfg Config) withDefaults() (Config, error) {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if cfg.ID == "" {
		cfg.ID = "node1"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "./data"
	}
	def(&cfg.ElectionTimeout, 150*time.Millisecond)
	def(&cfg.HeartbeatInterval, 50*time.Millisecond)
	def(&cfg.SnapshotInterval, 5*time.Minute)
	def(&cfg.MaxTTL, lockapi.DefaultMaxTTL)
	def(&cfg.MaxWait, lockapi.DefaultMaxWait)
	if cfg.SnapshotThreshold == 0 {
		cfg.SnapshotThreshold = 8192
	}
	if cfg.TrailingLogs == 0 {
		cfg.TrailingLogs = 10240
	}
	if cfg.ClockCheckpoint <= 0 {
		cfg.ClockCheckpoint = defaultClockCheckpoint
	}
	if cfg.MaxClients == 0 {
		cfg.MaxClients = 10000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Clock == nil {
		cfg.Clock = newSystemClock()
	}
	var errs []error
	if strings.ContainsAny(cfg.ID, ":,/ ") {
		errs = append(errs, fmt.Errorf("id %q must not contain ':', ',', '/' or spaces", cfg.ID))
	}
	if cfg.RaftAddr == "" {
		errs = append(errs, errors.New("raft address is required"))
	}
	if cfg.ElectionTimeout < 5*time.Millisecond {
		errs = append(errs, fmt.Errorf("election timeout %s is below 5ms", cfg.ElectionTimeout))
	}
	if cfg.HeartbeatInterval < time.Millisecond || cfg.HeartbeatInterval > cfg.ElectionTimeout {
		errs = append(errs, fmt.Errorf("heartbeat interval %s must be between 1ms and the election timeout %s", cfg.HeartbeatInterval, cfg.ElectionTimeout))
	}
	if cfg.SnapshotInterval < 5*time.Millisecond {
		errs = append(errs, fmt.Errorf("snapshot interval %s is below 5ms", cfg.SnapshotInterval))
	}
	if cfg.MaxTTL < time.Millisecond || cfg.MaxWait < 0 {
		errs = append(errs, fmt.Errorf("max ttl %s / max wait %s out of range", cfg.MaxTTL, cfg.MaxWait))
	}
	if cfg.MaxClients < 0 {
		errs = append(errs, fmt.Errorf("max clients %d is negative", cfg.MaxClients))
	}
	if cfg.Join != "" && len(cfg.Peers) > 0 {
		errs = append(errs, errors.New("join and peers are exclusive: peers bootstrap a new cluster, join enters an existing one"))
	}
	seen := map[string]bool{cfg.ID: true}
	for _, p := range cfg.Peers {
		if seen[p.ID] {
			errs = append(errs, fmt.Errorf("peer id %q appears twice (or is this node's own id)", p.ID))
		}
		seen[p.ID] = true
	}
	if cfg.RaftAdvertise == "" && cfg.RaftAddr != "" {
		adv, err := advertiseFor(cfg.RaftAddr)
		if err != nil {
			errs = append(errs, err)
		}
		cfg.RaftAdvertise = adv
	}
	return cfg, errors.Join(errs...)
}

// advertiseFor derives the address peers should dial from a bind address.
func advertiseFor(bind string) (string, error) {
	host, port, err := net.SplitHostPort(bind)
	if err != nil {
		return "", fmt.Errorf("raft address %q: %w", bind, err)
	}
	if port == "0" {
		return "", nil // chosen at listen time; the listener's address is used
	}
	ip := net.ParseIP(host)
	switch {
	case host == "" || (ip != nil && ip.IsUnspecified()):
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("raft address %q binds every interface and the hostname is unknown (%w): set an advertise address", bind, err)
		}
		host = h
	case ip != nil && ip.IsLoopback():
		host = "localhost"
	}
	return net.JoinHostPort(host, port), nil
}
