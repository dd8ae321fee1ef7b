package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/distlock/distlock/clients"
)

// freeLock is what info prints for a key nobody holds.
type freeLock string

// lockJSON is a lock in --json output: LOCK.INFO's fields and units.
type lockJSON struct {
	Key          string `json:"key"`
	Owner        string `json:"owner"`
	FencingToken uint64 `json:"fencing_token"`
	Version      uint64 `json:"version"`
	TTLMillis    int64  `json:"ttl_ms"`
	ExpiresAt    int64  `json:"expires_at"` // unix milliseconds
	Waiters      int    `json:"waiters"`
}

func toLockJSON(l clients.LockInfo) lockJSON {
	return lockJSON{Key: l.Key, Owner: l.Owner, FencingToken: l.Token, Version: l.Version,
		TTLMillis: l.TTL.Milliseconds(), ExpiresAt: l.ExpiresAt.UnixMilli(), Waiters: l.Waiters}
}

// clusterJSON is the cluster in --json output: CLUSTER.INFO's fields, as
// the HTTP API's GET /cluster/info names them.
type clusterJSON struct {
	LeaderID   string     `json:"leader_id"`
	Term       uint64     `json:"term"`
	Nodes      []nodeJSON `json:"nodes"`
	QuorumSize int        `json:"quorum_size"`
	HasQuorum  bool       `json:"has_quorum"`
	ClusterID  string     `json:"cluster_id"`
}

type nodeJSON struct {
	ID          string `json:"id"`
	State       string `json:"state"`
	Address     string `json:"address"`
	RESPAddress string `json:"resp_address"`
	HTTPAddress string `json:"http_address"`
}

// writeJSON prints v (a lock, a free key, a list or the cluster) as
// indented JSON: a free key is null, a list an array (empty, not null).
func writeJSON(w io.Writer, v any) error {
	var out any
	switch v := v.(type) {
	case freeLock:
		out = nil
	case *clients.LockInfo:
		out = toLockJSON(*v)
	case []clients.LockInfo:
		locks := make([]lockJSON, 0, len(v))
		for _, l := range v {
			locks = append(locks, toLockJSON(l))
		}
		out = locks
	case *clients.ClusterInfo:
		ci := clusterJSON{LeaderID: v.LeaderID, Term: v.Term, QuorumSize: v.QuorumSize, HasQuorum: v.HasQuorum, ClusterID: v.ClusterID, Nodes: []nodeJSON{}}
		for _, n := range v.Nodes {
			ci.Nodes = append(ci.Nodes, nodeJSON(n))
		}
		out = ci
	default:
		return fmt.Errorf("cannot print %T", v)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// writeTable prints v as an aligned table for people.
func writeTable(w io.Writer, v any) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	switch v := v.(type) {
	case freeLock:
		fmt.Fprintf(tw, "%s is not held\n", string(v))
	case *clients.LockInfo:
		lockTable(tw, []clients.LockInfo{*v})
	case []clients.LockInfo:
		if len(v) == 0 {
			fmt.Fprintln(tw, "no locks are held")
			break
		}
		lockTable(tw, v)
	case *clients.ClusterInfo:
		clusterTable(tw, v)
	default:
		return fmt.Errorf("cannot print %T", v)
	}
	return tw.Flush()
}

func lockTable(w io.Writer, locks []clients.LockInfo) {
	fmt.Fprintln(w, "KEY\tOWNER\tTOKEN\tVERSION\tTTL\tEXPIRES\tWAITERS")
	for _, l := range locks {
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\t%s\t%d\n", l.Key, l.Owner, l.Token, l.Version,
			roundTTL(l.TTL), l.ExpiresAt.Local().Format(time.RFC3339), l.Waiters)
	}
}

// roundTTL shows a remaining TTL to a useful precision: milliseconds under
// a second, tenths of a second under a minute, seconds beyond.
func roundTTL(d time.Duration) time.Duration {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond)
	case d < time.Minute:
		return d.Round(100 * time.Millisecond)
	default:
		return d.Round(time.Second)
	}
}

func clusterTable(w io.Writer, ci *clients.ClusterInfo) {
	leader := ci.LeaderID
	if leader == "" {
		leader = "(none)"
	}
	quorum := "no"
	if ci.HasQuorum {
		quorum = "yes"
	}
	fmt.Fprintf(w, "leader:\t%s\n", leader)
	fmt.Fprintf(w, "term:\t%d\n", ci.Term)
	fmt.Fprintf(w, "quorum:\t%d of %d nodes (has quorum: %s)\n", ci.QuorumSize, len(ci.Nodes), quorum)
	fmt.Fprintf(w, "cluster:\t%s\n", dash(ci.ClusterID))
	fmt.Fprintln(w)
	fmt.Fprintln(w, "ID\tSTATE\tRAFT ADDRESS\tRESP ADDRESS\tHTTP ADDRESS")
	for _, n := range ci.Nodes {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", n.ID, n.State, dash(n.Address), dash(n.RESPAddress), dash(n.HTTPAddress))
	}
}

// dash shows an unknown value as "-".
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
