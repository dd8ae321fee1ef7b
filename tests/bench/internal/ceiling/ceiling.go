// Package ceiling measures what the consensus layer alone can do on this
// machine: a 3-node hashicorp/raft cluster with the server's own log store
// (walstore, fsync on) and transport settings, a state machine that does
// nothing, and C goroutines inside the leader's process calling Apply in a
// loop. No client connections, no RESP, no forwarding, no lock table: the
// figures are an upper bound for any server built on these libraries here,
// and the lock targets of issue #7 can be read against it.
package ceiling

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distlock/distlock/tests/bench/internal/hist"
	"github.com/distlock/distlock/walstore"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Peer is another voter of the cluster.
type Peer struct {
	ID   string
	Addr string
}

// Config is one node's part of a measurement.
type Config struct {
	ID      string
	Addr    string // raft address, host:port
	Peers   []Peer
	Dir     string // the node's own data directory
	Clients int    // concurrent Apply loops on the leader
	Payload int    // bytes per command
	Warmup  time.Duration
	Measure time.Duration
}

// Result is what the leader measured.
type Result struct {
	Leader      string  `json:"leader"`
	Clients     int     `json:"clients"`
	Payload     int     `json:"payload_bytes"`
	Seconds     float64 `json:"seconds"`
	Commits     uint64  `json:"commits"`
	CommitsPerS float64 `json:"commits_per_s"`
	P50Us       float64 `json:"p50_us"`
	P99Us       float64 `json:"p99_us"`
	P999Us      float64 `json:"p999_us"`
	MaxUs       float64 `json:"max_us"`
}

// Server settings copied from server/node.go, so that the ceiling is the
// server's own raft setup: timeouts at the server's defaults
// (--election-timeout 150ms, --heartbeat-interval 50ms), a buffered apply
// queue, MaxAppendEntries left at raft's default, and raft's log cache in
// front of the store.
const (
	electionTimeout = 150 * time.Millisecond
	commitTimeout   = 50 * time.Millisecond
	logCacheSize    = 1024
)

type nopFSM struct{ applied atomic.Uint64 }

func (f *nopFSM) Apply(*raft.Log) any                 { f.applied.Add(1); return nil }
func (f *nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnapshot{}, nil }
func (f *nopFSM) Restore(r io.ReadCloser) error       { return r.Close() }

type nopSnapshot struct{}

func (nopSnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnapshot) Release()                          {}

// RunNode runs one node until ctx ends. If this node is elected leader, it
// runs the load and writes its Result as one JSON line to out (the other
// nodes write nothing); it returns after ctx ends either way.
func RunNode(ctx context.Context, cfg Config, out io.Writer) error {
	if cfg.Clients < 1 || cfg.Measure <= 0 {
		return errors.New("ceiling: need at least 1 client and a measured duration")
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	store, err := walstore.Open(cfg.Dir, nil)
	if err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	defer store.Close()
	hl := hclog.New(&hclog.LoggerOptions{Name: cfg.ID, Level: hclog.Error, Output: os.Stderr})
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 1, hl)
	if err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	adv, err := net.ResolveTCPAddr("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	trans, err := raft.NewTCPTransportWithLogger(cfg.Addr, adv, 3, 10*time.Second, hl)
	if err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	defer trans.Close()
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hl
	rc.BatchApplyCh = true
	rc.HeartbeatTimeout = electionTimeout
	rc.ElectionTimeout = electionTimeout
	rc.LeaderLeaseTimeout = electionTimeout
	rc.CommitTimeout = commitTimeout
	logs, err := raft.NewLogCache(logCacheSize, store)
	if err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	r, err := raft.NewRaft(rc, &nopFSM{}, logs, store, snaps, trans)
	if err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	defer r.Shutdown()
	servers := []raft.Server{{ID: rc.LocalID, Address: raft.ServerAddress(cfg.Addr)}}
	for _, p := range cfg.Peers {
		servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
	}
	if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("ceiling: bootstrap: %w", err)
	}
	select {
	case leader := <-r.LeaderCh():
		for !leader {
			select {
			case leader = <-r.LeaderCh():
			case <-ctx.Done():
				return nil
			}
		}
	case <-ctx.Done():
		return nil
	}
	res, err := load(ctx, r, cfg)
	if err != nil {
		return err
	}
	if err := json.NewEncoder(out).Encode(res); err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	<-ctx.Done()
	return nil
}

// load runs cfg.Clients Apply loops for the warm-up and then the measured
// time, recording only what completes inside the measured window.
func load(ctx context.Context, r *raft.Raft, cfg Config) (Result, error) {
	payload := make([]byte, cfg.Payload)
	start := time.Now().Add(cfg.Warmup)
	end := start.Add(cfg.Measure)
	hists := make([]*hist.Histogram, cfg.Clients)
	errs := make(chan error, cfg.Clients)
	var wg sync.WaitGroup
	for c := range cfg.Clients {
		h := hist.New()
		hists[c] = h
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				t0 := time.Now()
				if t0.After(end) {
					return
				}
				if err := r.Apply(payload, 5*time.Second).Error(); err != nil {
					errs <- fmt.Errorf("ceiling: apply: %w", err)
					return
				}
				if !t0.Before(start) && time.Now().Before(end) {
					h.Record(time.Since(t0))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("ceiling: stopped before the end of the run: %w", err)
	}
	all := hist.New()
	for _, h := range hists {
		all.Merge(h)
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	secs := cfg.Measure.Seconds()
	return Result{
		Leader:      cfg.ID,
		Clients:     cfg.Clients,
		Payload:     cfg.Payload,
		Seconds:     secs,
		Commits:     all.Count(),
		CommitsPerS: float64(all.Count()) / secs,
		P50Us:       us(all.Quantile(0.5)),
		P99Us:       us(all.Quantile(0.99)),
		P999Us:      us(all.Quantile(0.999)),
		MaxUs:       us(all.Max()),
	}, nil
}
