package clients

import (
	"fmt"
	"strconv"
	"time"
)

// LockInfo describes a held lock, as LOCK.INFO and LOCK.LIST report it.
type LockInfo struct {
	// Key is the lock's name.
	Key string
	// Owner is the identity that holds it.
	Owner string
	// Token is the fencing token of the grant.
	Token uint64
	// Version is 1 at the grant and grows by one with every renewal.
	Version uint64
	// TTL is the lease time left when the leader answered.
	TTL time.Duration
	// ExpiresAt is when the lease runs out, by the cluster's clock.
	ExpiresAt time.Time
	// Waiters counts the callers queued for the lock (LOCK.ACQUIRE WAIT).
	Waiters int
}

// ClusterInfo describes the cluster as the node that answered sees it.
type ClusterInfo struct {
	// LeaderID is the leader's node id; empty when there is none.
	LeaderID string
	// Term is the raft term.
	Term uint64
	// Nodes lists the members.
	Nodes []NodeInfo
	// QuorumSize is how many members make a majority.
	QuorumSize int
	// HasQuorum reports whether the leader reaches a majority.
	HasQuorum bool
	// ClusterID names the cluster; empty from a cluster (or server) that
	// has none yet.
	ClusterID string
}

// NodeInfo describes one member of the cluster.
type NodeInfo struct {
	// ID is the node's id (its --id).
	ID string
	// State is its raft state: leader, follower, candidate, or as reported.
	State string
	// Address is its raft address.
	Address string
	// RESPAddress is where it serves RESP, if known.
	RESPAddress string
	// HTTPAddress is where it serves HTTP, if known.
	HTTPAddress string
}

// fieldMap turns a RESP3 map or a RESP2 flat field-value array into a map.
func fieldMap(v any) (map[string]any, error) {
	out := map[string]any{}
	switch v := v.(type) {
	case map[any]any:
		for k, x := range v {
			out[fmt.Sprint(k)] = x
		}
	case map[string]any:
		for k, x := range v {
			out[k] = x
		}
	case []any:
		if len(v)%2 != 0 {
			return nil, fmt.Errorf("%w: odd field-value array of %d elements", errReply, len(v))
		}
		for i := 0; i < len(v); i += 2 {
			out[fmt.Sprint(v[i])] = v[i+1]
		}
	default:
		return nil, fmt.Errorf("%w: %T is neither a map nor a field-value array", errReply, v)
	}
	return out, nil
}

// errReply marks a reply this client cannot read; it wraps ErrInvalid.
var errReply = fmt.Errorf("%w: unexpected reply", ErrInvalid)

// asUint reads an integer reply (or its decimal text).
func asUint(v any) (uint64, error) {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return 0, fmt.Errorf("%w: negative integer %d", errReply, v)
		}
		return uint64(v), nil
	case string:
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: %q is not an integer", errReply, v)
		}
		return n, nil
	default:
		return 0, fmt.Errorf("%w: %T is not an integer", errReply, v)
	}
}

// asInt reads a possibly negative integer reply.
func asInt(v any) (int64, error) {
	switch v := v.(type) {
	case int64:
		return v, nil
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: %q is not an integer", errReply, v)
		}
		return n, nil
	default:
		return 0, fmt.Errorf("%w: %T is not an integer", errReply, v)
	}
}

// asString reads a string field; a missing one is empty.
func asString(v any) string {
	if v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// asBool reads a RESP3 boolean or a RESP2 1/0.
func asBool(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case int64:
		return v != 0
	case string:
		return v == "1" || v == "true"
	}
	return false
}

// parseLock reads one LOCK.INFO reply.
func parseLock(v any) (LockInfo, error) {
	m, err := fieldMap(v)
	if err != nil {
		return LockInfo{}, err
	}
	var l LockInfo
	l.Key, l.Owner = asString(m["key"]), asString(m["owner"])
	if l.Token, err = asUint(m["fencing_token"]); err != nil {
		return LockInfo{}, fmt.Errorf("fencing_token: %w", err)
	}
	if l.Version, err = asUint(m["version"]); err != nil {
		return LockInfo{}, fmt.Errorf("version: %w", err)
	}
	ttl, err := asInt(m["ttl_ms"])
	if err != nil {
		return LockInfo{}, fmt.Errorf("ttl_ms: %w", err)
	}
	l.TTL = time.Duration(ttl) * time.Millisecond
	exp, err := asInt(m["expires_at"])
	if err != nil {
		return LockInfo{}, fmt.Errorf("expires_at: %w", err)
	}
	l.ExpiresAt = time.UnixMilli(exp)
	waiters, err := asInt(m["waiters"])
	if err != nil {
		return LockInfo{}, fmt.Errorf("waiters: %w", err)
	}
	l.Waiters = int(waiters)
	return l, nil
}

// parseCluster reads a CLUSTER.INFO reply.
func parseCluster(v any) (ClusterInfo, error) {
	m, err := fieldMap(v)
	if err != nil {
		return ClusterInfo{}, err
	}
	ci := ClusterInfo{LeaderID: asString(m["leader_id"]), HasQuorum: asBool(m["has_quorum"]), ClusterID: asString(m["cluster_id"])}
	if ci.Term, err = asUint(m["term"]); err != nil {
		return ClusterInfo{}, fmt.Errorf("term: %w", err)
	}
	q, err := asInt(m["quorum_size"])
	if err != nil {
		return ClusterInfo{}, fmt.Errorf("quorum_size: %w", err)
	}
	ci.QuorumSize = int(q)
	nodes, _ := m["nodes"].([]any)
	for _, n := range nodes {
		nm, err := fieldMap(n)
		if err != nil {
			return ClusterInfo{}, fmt.Errorf("nodes: %w", err)
		}
		ci.Nodes = append(ci.Nodes, NodeInfo{
			ID: asString(nm["id"]), State: asString(nm["state"]), Address: asString(nm["address"]),
			RESPAddress: asString(nm["resp_address"]), HTTPAddress: asString(nm["http_address"]),
		})
	}
	return ci, nil
}
