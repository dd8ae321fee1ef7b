// Package ceiling measures what the consensus layer alone can do on this
// machine: a 3-node hashicorp/raft cluster with the server's own log store
// (walstore, fsync on), raft settings and overlap of the leader's log write
// with replication (raftoverlap), a state machine that does nothing, and C
// goroutines inside the leader's process each committing one command after
// another. No client connections, no RESP, no forwarding, no
// lock table.
//
// Two ways to commit are measured. With Pack 0 each command is its own raft
// entry, as the server proposes them while its cluster is at protocol
// version 1 (raft still writes and replicates many entries per fsync). With
// Pack K > 0 the commands waiting at a moment are packed into one entry,
// with at most K entries in flight: raft's cost per entry is then shared,
// as the server does from protocol version 2 on (K = 1). Each is an upper
// bound for a server that commits that way.
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

	"github.com/distlock/distlock/raftconn"
	"github.com/distlock/distlock/raftoverlap"
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
	Clients int    // concurrent command loops on the leader
	Payload int    // bytes per command
	Pack    int    // 0: one entry per command; K > 0: pack, K entries in flight
	Warmup  time.Duration
	Measure time.Duration
}

// Result is what the leader measured. A commit is one command committed
// (its Apply returned); Entries counts raft log entries, which differ from
// Commits only when commands are packed. Latencies are per command.
type Result struct {
	Leader      string  `json:"leader"`
	Clients     int     `json:"clients"`
	Pack        int     `json:"pack"`
	Payload     int     `json:"payload_bytes"`
	Seconds     float64 `json:"seconds"`
	Commits     uint64  `json:"commits"`
	CommitsPerS float64 `json:"commits_per_s"`
	Entries     uint64  `json:"entries"`
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
	drainTimeout    = 5 * time.Second
)

// trackedStream is a plain TCP raft.StreamLayer whose accepted connections
// pass through a raftconn.Tracker, as the server's do.
type trackedStream struct {
	net.Listener
	tracker raftconn.Tracker
}

// Accept returns the next raft connection, tracked.
func (s *trackedStream) Accept() (net.Conn, error) {
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc, err := s.tracker.Track(c, ""); err == nil {
			return tc, nil
		}
	}
}

// Dial connects to a peer's raft address.
func (s *trackedStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(address), timeout)
}

type nopFSM struct{ applied atomic.Uint64 }

func (f *nopFSM) Apply(*raft.Log) any                 { f.applied.Add(1); return nil }
func (f *nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnapshot{}, nil }
func (f *nopFSM) Restore(r io.ReadCloser) error       { return r.Close() }

type nopSnapshot struct{}

func (nopSnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnapshot) Release()                          {}

// outcome waits for f and returns its error, or the state machine's
// answer if that is one (notDurable).
func outcome(f raft.ApplyFuture) error {
	if err := f.Error(); err != nil {
		return err
	}
	if err, ok := f.Response().(error); ok {
		return err
	}
	return nil
}

// notDurable answers an entry the log store could not make durable (it
// failed): the measurement is void, and the store refuses every later write.
func notDurable(l *raft.Log, err error) interface{} {
	return fmt.Errorf("ceiling: entry %d not durable: %w", l.Index, err)
}

// RunNode runs one node until ctx ends. If this node is elected leader, it
// runs the load and writes its Result as one JSON line to out (the other
// nodes write nothing); it returns after ctx ends either way.
func RunNode(ctx context.Context, cfg Config, out io.Writer) error {
	if cfg.Clients < 1 || cfg.Measure <= 0 || cfg.Pack < 0 || cfg.Payload < 0 {
		return errors.New("ceiling: need at least 1 client, a measured duration, and a pack and payload of 0 or more")
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	store, err := walstore.Open(cfg.Dir, nil)
	if err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	defer store.Close()
	hl := hclog.New(&hclog.LoggerOptions{Name: cfg.ID, Level: hclog.Warn, Output: os.Stderr})
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 1, hl)
	if err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	stream := &trackedStream{Listener: ln}
	// As the server: after raft and its transport are down, wait for
	// raft's connection handlers before the deferred store close
	// (raftconn says why).
	defer func() {
		if err := stream.tracker.Drain(drainTimeout); err != nil {
			hl.Warn("closing", "error", err)
		}
	}()
	// As the server's transport: no pipelined replication (server/node.go).
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 3, Timeout: 10 * time.Second, Logger: hl, MaxRPCsInFlight: 1,
	})
	defer trans.Close()
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hl
	rc.BatchApplyCh = true
	rc.HeartbeatTimeout = electionTimeout
	rc.ElectionTimeout = electionTimeout
	rc.LeaderLeaseTimeout = electionTimeout
	rc.CommitTimeout = commitTimeout
	// As the server: the leader writes while it replicates (raftoverlap).
	var leader raftoverlap.Leader
	logs, err := raftoverlap.LogStore(store, leader.Leading, logCacheSize)
	if err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	fsm := &nopFSM{}
	r, err := raft.NewRaft(rc, raftoverlap.FSM(fsm, store, notDurable), logs, store, snaps,
		raftoverlap.Transport(trans, store))
	if err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	leader.Set(r)
	// Raft must be down before the deferred transport and store closes.
	defer func() { r.Shutdown().Error() }()
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
	res, err := load(ctx, r, cfg, fsm.applied.Load)
	if err != nil {
		return err
	}
	if err := json.NewEncoder(out).Encode(res); err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	<-ctx.Done()
	return nil
}

// load runs cfg.Clients command loops for the warm-up and then the measured
// time. A command counts if it completes inside the measured window; its
// latency is recorded if it also started inside it. applied returns how many
// entries the state machine has applied, to count the window's entries.
func load(ctx context.Context, r *raft.Raft, cfg Config, applied func() uint64) (Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	commit := func() error { return outcome(r.Apply(make([]byte, cfg.Payload), 5*time.Second)) }
	if cfg.Pack > 0 {
		p := newPacker(r, cfg.Payload, cfg.Pack)
		go p.run(ctx)
		commit = func() error { return p.commit(ctx) }
	}
	start := time.Now().Add(cfg.Warmup)
	end := start.Add(cfg.Measure)
	entries := make(chan uint64, 1)
	go func() { // entries applied inside the window
		time.Sleep(time.Until(start))
		first := applied()
		time.Sleep(time.Until(end))
		entries <- applied() - first
	}()
	hists := make([]*hist.Histogram, cfg.Clients)
	counts := make([]uint64, cfg.Clients)
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
				if err := commit(); err != nil {
					errs <- fmt.Errorf("ceiling: apply: %w", err)
					return
				}
				if t1 := time.Now(); t1.After(start) && t1.Before(end) {
					counts[c]++
					if t0.After(start) {
						h.Record(t1.Sub(t0))
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	ents := <-entries
	if err := <-errs; err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("ceiling: stopped before the end of the run: %w", err)
	}
	all := hist.New()
	var n uint64
	for c, h := range hists {
		all.Merge(h)
		n += counts[c]
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	secs := cfg.Measure.Seconds()
	return Result{
		Leader:      cfg.ID,
		Clients:     cfg.Clients,
		Pack:        cfg.Pack,
		Payload:     cfg.Payload,
		Seconds:     secs,
		Commits:     n,
		CommitsPerS: float64(n) / secs,
		Entries:     ents,
		P50Us:       us(all.Quantile(0.5)),
		P99Us:       us(all.Quantile(0.99)),
		P999Us:      us(all.Quantile(0.999)),
		MaxUs:       us(all.Max()),
	}, nil
}

// packer commits the commands waiting at a moment as one raft entry, with
// at most a fixed number of entries in flight: while they are, new commands
// queue, and the next entry takes them all (group commit above raft).
type packer struct {
	r       *raft.Raft
	payload int
	queue   chan chan error
	slots   chan struct{}
}

// maxPack bounds the commands in one entry.
const maxPack = 1024

func newPacker(r *raft.Raft, payload, inFlight int) *packer {
	return &packer{r: r, payload: payload, queue: make(chan chan error, maxPack), slots: make(chan struct{}, inFlight)}
}

// commit queues one command and waits until the entry holding it commits.
func (p *packer) commit(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case p.queue <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *packer) run(ctx context.Context) {
	for {
		var batch []chan error
		select {
		case d := <-p.queue:
			batch = append(batch, d)
		case <-ctx.Done():
			return
		}
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
	drain: // everything that queued meanwhile goes into this entry
		for len(batch) < maxPack {
			select {
			case d := <-p.queue:
				batch = append(batch, d)
			default:
				break drain
			}
		}
		f := p.r.Apply(make([]byte, p.payload*len(batch)), 5*time.Second)
		go func() {
			err := outcome(f)
			<-p.slots
			for _, d := range batch {
				d <- err
			}
		}()
	}
}
