package server

import (
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the node's Prometheus series: the seed's eight names exactly,
// plus failures by reason, raft apply latency, commands per entry and the
// cluster's protocol version. They live on the node's
// own registry so several nodes in one process never collide.
type metrics struct {
	acquires  prometheus.Counter
	releases  prometheus.Counter
	renews    prometheus.Counter
	elections prometheus.Counter
	failures  *prometheus.CounterVec
	applyDur  prometheus.Histogram
	// packed counts the commands in each entry this node proposed.
	packed prometheus.Histogram
}

func newMetrics(reg *prometheus.Registry, n *Node) *metrics {
	m := &metrics{
		acquires: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lock_acquire_total", Help: "Total lock acquisitions (grants and same-owner extensions) served by this node."}),
		releases: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lock_release_total", Help: "Total lock releases served by this node."}),
		renews: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lock_renew_total", Help: "Total lock renewals served by this node."}),
		elections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raft_election_count", Help: "Number of elections this node started (transitions to candidate)."}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lock_failures_total", Help: "Lock requests that did not succeed, by operation and reason."},
			[]string{"op", "reason"}),
		applyDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "raft_apply_duration_seconds",
			Help:    "Time from submitting a command to raft until it was applied.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		packed: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "raft_entry_commands",
			Help:    "Commands carried by each raft entry this node proposed as leader (more than one once the cluster's protocol version allows packing).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10)}),
	}
	reg.MustRegister(m.acquires, m.releases, m.renews, m.elections, m.failures, m.applyDur, m.packed,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lock_active_count", Help: "Currently held locks."},
			func() float64 { return float64(n.fsm.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cluster_protocol_version", Help: "The cluster's protocol version as this node last applied it (see the README's Upgrades)."},
			func() float64 { return float64(n.fsm.ClusterVersion()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raft_term", Help: "Current raft term."},
			func() float64 { return float64(n.raft.CurrentTerm()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raft_state", Help: "Node state (0=follower, 1=candidate, 2=leader, 3=shutdown)."},
			func() float64 { return float64(n.raft.State()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raft_commit_index", Help: "Current raft commit index."},
			func() float64 { return float64(n.raft.CommitIndex()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raft_applied_index", Help: "Index of the last entry applied to the state machine."},
			func() float64 { return float64(n.fsm.AppliedIndex()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raft_last_snapshot_index", Help: "Index of the last snapshot taken or installed."},
			func() float64 {
				v, _ := strconv.ParseUint(n.raft.Stats()["last_snapshot_index"], 10, 64)
				return float64(v)
			}),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// countElections increments raft_election_count whenever this node becomes
// a candidate, until the observer channel is closed.
func (m *metrics) countElections(obs <-chan raft.Observation) {
	for o := range obs {
		if st, ok := o.Data.(raft.RaftState); ok && st == raft.Candidate {
			m.elections.Inc()
		}
	}
}

// observeApply records one raft apply's latency.
func (m *metrics) observeApply(start time.Time) {
	m.applyDur.Observe(time.Since(start).Seconds())
}
