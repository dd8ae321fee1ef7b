package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/raftfsm"
	"github.com/distlock/distlock/raftoverlap"
	"github.com/distlock/distlock/walstore"
)

// snapshotsRetained is how many snapshots the file snapshot store keeps.
const snapshotsRetained = 2

// logCacheSize is how many recent log entries the leader keeps decoded for
// replication. Packed entries hold up to maxPack commands each, so this is
// up to 512 x 64 KiB of entries (packer.go).
const logCacheSize = 512

// drainTimeout bounds Close's wait for raft's connection handlers (a
// heartbeat being handled) before it closes the log store.
const drainTimeout = 5 * time.Second

// Node is one member of the lock cluster. It implements lockapi.Service.
type Node struct {
	cfg   Config
	log   *slog.Logger
	clock Clock

	fsm     *raftfsm.FSM
	store   *walstore.Store
	trans   *raft.NetworkTransport
	stream  *streamLayer // under trans
	raft    *raft.Raft
	metrics *metrics
	obs     *raft.Observer
	obsCh   chan raft.Observation

	lead     leadership
	waits    waitQueues
	fwd      forwarder
	fwdConns sync.WaitGroup

	// queue guards raft's buffered queues (queue.go): commands, barriers
	// and leader checks enter them under the read lock until Close takes
	// the write lock.
	queue applyQueue
	// pack turns commands into raft entries (packer.go).
	pack *packer
	// versionMu keeps a join and a raise of the cluster's protocol version
	// from interleaving (membership.go).
	versionMu sync.Mutex

	front    frontEnds
	respAddr string
	httpAddr string

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	// started is closed when Start returns; failed when the node stopped
	// itself (failErr says why).
	started  chan struct{}
	failed   chan struct{}
	failOnce sync.Once
	failErr  error
	refusals refusalLog // raft connections refused by admitPeer
	// storedID is the cluster id in the stable store, loggedID that of the
	// earliest raise in the log (clusterid.go).
	storedID atomic.Pointer[string]
	loggedID atomic.Pointer[loggedRaise]
	// removal notes whether a member answered that this node was removed
	// while it was down (removed.go).
	removal removalWatch
}

// Start opens the node's stores under cfg.DataDir/cfg.ID, starts raft
// (bootstrapping a new cluster from cfg.Peers when the node has no state)
// and the RESP and HTTP listeners. Close stops it.
func Start(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.ID), clock: cfg.Clock, fsm: raftfsm.New(), pack: newPacker(),
		started: make(chan struct{}), failed: make(chan struct{})}
	defer close(n.started)
	n.lead.changed = make(chan struct{})
	n.fwd.peers = peerDialer{dialMap: cfg.Unsafe.DialMap, tls: cfg.TLS}
	n.fsm.OnFree(n.waits.freed)
	n.fsm.OnHalt(n.halt)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := n.startRaft(); err != nil {
		n.Close()
		return nil, err
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.packLoop()
	}()
	if err := n.front.start(n); err != nil {
		n.Close()
		return nil, err
	}
	n.wg.Add(1)
	go n.registerLoop()
	n.log.Info("node started", "raft", n.trans.LocalAddr(), "resp", n.respAddr, "http", n.httpAddr,
		"data_dir", n.dir(), "peers", len(cfg.Peers), "tls", cfg.TLS != nil)
	return n, nil
}

// dir is the node's own directory under the data dir.
func (n *Node) dir() string { return filepath.Join(n.cfg.DataDir, n.cfg.ID) }

func (n *Node) startRaft() error {
	if err := os.MkdirAll(n.dir(), 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	store, err := walstore.Open(filepath.Join(n.dir(), "raft"), &walstore.Options{Logger: n.log,
		DeferredSyncDelay: n.cfg.Unsafe.SlowLogSync})
	if err != nil {
		return fmt.Errorf("open raft log: %w", err)
	}
	n.store = store
	hlog := newRaftLogger(n.log)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(n.dir(), snapshotsRetained, hlog)
	if err != nil {
		return fmt.Errorf("open snapshot store: %w", err)
	}
	stored, logged, err := startClusterID(store)
	if err != nil {
		return err
	}
	n.storedID.Store(&stored)
	n.loggedID.Store(&logged)
	stream, err := newStreamLayer(n.cfg.RaftAddr, n.cfg.RaftAdvertise, n.fwd.peers, n.serveForward)
	if err != nil {
		return err
	}
	n.stream = stream
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 3, Timeout: 10 * time.Second, Logger: hlog,
		// No pipelined replication: hashicorp/raft v1.8.0's pipeline can
		// deadlock. When a follower answers Success=false (or a newer
		// term), pipelineDecode returns and nothing reads the pipeline's
		// responses any more, yet the send loop may still pick a trigger
		// (or a stop with an index) and send once more, blocking forever:
		// that follower then gets heartbeats but never another entry, and
		// raft.Shutdown waits for it for ever (seen here as a test cluster
		// that hung in Close; hashicorp/raft#612, grafana/pyroscope#5518).
		// One RPC in flight is what the packer keeps anyway.
		MaxRPCsInFlight: 1,
	})

	rc := raft.DefaultConfig() // MaxAppendEntries 64: larger batches measured no faster here
	// A buffered apply queue: a pipeline's commands are queued one after
	// another by one goroutine (apply, in order), and must gather there
	// while the leader writes the previous batch, to share the next one.
	rc.BatchApplyCh = true
	rc.LocalID = raft.ServerID(n.cfg.ID)
	rc.Logger = hlog
	rc.HeartbeatTimeout = n.cfg.ElectionTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.ElectionTimeout
	rc.CommitTimeout = n.cfg.HeartbeatInterval
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.SnapshotInterval = min(n.cfg.SnapshotInterval, 10*time.Second)
	rc.TrailingLogs = n.cfg.TrailingLogs
	notify := make(chan bool, 16)
	rc.NotifyCh = notify

	bootstrap := false
	if has, err := raft.HasExistingState(store, store, snaps); err != nil {
		return fmt.Errorf("inspect raft state: %w", err)
	} else if !has && n.cfg.Join == "" {
		bootstrap = true
	} else if has && len(n.cfg.Peers) > 0 {
		stored, err := storedConfiguration(store, snaps)
		if err != nil {
			return fmt.Errorf("read the membership in the data directory %s: %w", n.dir(), err)
		}
		note, warn, err := checkPeers(n.cfg.ID, n.cfg.Peers, stored)
		switch {
		case err != nil:
			return fmt.Errorf("%s: %w", n.dir(), err)
		case warn:
			n.log.Warn(note)
		case note != "":
			n.log.Info(note)
		}
	}
	// The leader reads back every entry it replicates; the cache serves
	// the recent ones without decoding them from the log again.
	// The leader writes its own entries while raft replicates them, and
	// its copy counts only once durable (package raftoverlap).
	var leader raftoverlap.Leader
	logs, err := raftoverlap.LogStore(store, leader.Leading, logCacheSize)
	if err != nil {
		return err
	}
	logs = raiseWatch{LogStore: logs, written: n.noteLogged, deleted: n.forgetLogged}
	var fsm raft.FSM = raftoverlap.FSM(n.fsm, store, haltOnLogFailure(n.fsm))
	trans := raftoverlap.Transport(n.trans, store)
	if n.cfg.Unsafe.ApplyBeforeDurable {
		fsm = n.fsm
	}
	fsm = freeAfterRestore{fsm}
	if n.cfg.Unsafe.UnclampedCommit {
		trans = n.trans
	}
	r, err := raft.NewRaft(rc, fsm, logs, store, snaps, trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	leader.Set(r)
	n.stream.setAdmit(n.admitPeer, n.announcedClusterID)
	n.metrics = newMetrics(n.cfg.Registry, n)
	n.obsCh = make(chan raft.Observation, 64)
	n.obs = raft.NewObserver(n.obsCh, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.RaftState)
		return ok
	})
	r.RegisterObserver(n.obs)
	go n.metrics.countElections(n.obsCh)

	if bootstrap {
		servers := []raft.Server{{ID: rc.LocalID, Address: n.trans.LocalAddr(), Suffrage: raft.Voter}}
		for _, p := range n.cfg.Peers {
			servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr), Suffrage: raft.Voter})
		}
		// Every node bootstraps with the same configuration entry, as
		// hashicorp/raft asks, whatever order its --peers lists.
		slices.SortFunc(servers, func(a, b raft.Server) int { return strings.Compare(string(a.ID), string(b.ID)) })
		if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("bootstrap cluster: %w", err)
		}
		n.log.Info("bootstrapped a new cluster", "voters", len(servers))
	}
	n.wg.Add(3)
	go n.watchLeadership(notify)
	go n.snapshotLoop()
	go func() {
		defer n.wg.Done()
		governMemory(n.ctx, n.cfg.MemoryHeadroom)
	}()
	if !bootstrap && n.cfg.Join != "" {
		n.wg.Add(1)
		go n.joinLoop()
	}
	return nil
}

// snapshotLoop takes a snapshot every SnapshotInterval when anything was
// applied since the last one (raft itself snapshots on SnapshotThreshold).
func (n *Node) snapshotLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.SnapshotInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			if err := n.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
				n.log.Warn("periodic snapshot failed", "err", err)
			}
		}
	}
}

// Close stops the listeners, raft and the stores, in that order. It is safe
// to call more than once.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		n.cancel()
		errs = append(errs, n.front.close())
		if n.raft != nil {
			n.waits.wakeAll()
			n.queue.close()
			errs = append(errs, n.raft.Shutdown().Error())
			n.raft.DeregisterObserver(n.obs)
			close(n.obsCh)
		}
		if n.trans != nil {
			errs = append(errs, n.trans.Close())
		}
		if n.stream != nil {
			// raft may still be handling a heartbeat on a connection's
			// goroutine (see streamLayer): wait for it before the store
			// closes under it.
			errs = append(errs, n.stream.drain(drainTimeout))
		}
		n.fwd.close()
		n.wg.Wait()
		n.fwdConns.Wait()
		if n.store != nil {
			errs = append(errs, n.store.Close())
		}
		n.closeErr = errors.Join(errs...)
		n.log.Info("node stopped")
	})
	return n.closeErr
}

// halt is the state machine's OnHalt: a committed entry is of a format this
// build cannot apply, so the node must not serve or vote on state it can no
// longer keep. leaderNow refuses from the moment Failed is closed; the node
// is stopped from another goroutine (Close waits for raft, which is inside
// Apply).
func (n *Node) halt(err error) {
	n.log.Error("stopping the node: the log holds an entry this build cannot apply", "err", err)
	n.failOnce.Do(func() {
		n.failErr = err
		close(n.failed)
	})
	go func() {
		<-n.started
		n.Close()
	}()
}

// haltOnLogFailure answers, for raftoverlap.FSM, an entry that the log
// could not make durable (the store failed): it halts the state machine
// there, which stops the node (halt), and answers the entry as halted.
func haltOnLogFailure(fsm *raftfsm.FSM) func(*raft.Log, error) interface{} {
	return func(l *raft.Log, err error) interface{} {
		fsm.Halt(l.Index, fmt.Errorf("the log could not make the entry durable: %w", err))
		return fsm.Apply(l)
	}
}

// Failed is closed when the node has stopped itself; Err says why. The
// process should then exit with an error.
func (n *Node) Failed() <-chan struct{} { return n.failed }

// Err returns why the node stopped itself, or nil.
func (n *Node) Err() error {
	select {
	case <-n.failed:
		return n.failErr
	default:
		return nil
	}
}

// RaftAddr returns the raft address this node advertises.
func (n *Node) RaftAddr() string { return string(n.trans.LocalAddr()) }

// RESPAddr returns the RESP listener's address ("" when disabled).
func (n *Node) RESPAddr() string { return n.respAddr }

// HTTPAddr returns the HTTP listener's address ("" when disabled).
func (n *Node) HTTPAddr() string { return n.httpAddr }

// IsLeader reports whether this node is the leader and ready to serve.
func (n *Node) IsLeader() bool {
	n.lead.mu.Lock()
	defer n.lead.mu.Unlock()
	return n.lead.ready
}

// newRaftLogger routes raft's hclog output into slog.
func newRaftLogger(l *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   "raft",
		Level:  hclog.Info,
		Output: &slogWriter{l: l.With("component", "raft")},
	})
}

// slogWriter turns hclog's formatted lines into slog records, keeping the
// level hclog wrote.
type slogWriter struct{ l *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	switch {
	case strings.Contains(line, "[ERROR]"):
		level = slog.LevelError
	case strings.Contains(line, "[WARN]"):
		level = slog.LevelWarn
	case strings.Contains(line, "[DEBUG]"), strings.Contains(line, "[TRACE]"):
		level = slog.LevelDebug
	}
	if i := strings.Index(line, "] "); i >= 0 {
		line = strings.TrimSpace(line[i+2:])
	}
	line = strings.TrimPrefix(line, "raft: ")
	w.l.Log(context.Background(), level, line)
	return len(p), nil
}

var _ io.Writer = (*slogWriter)(nil)
