package lockapi

import (
	"context"
	"time"
)

// Lock describes one held lock as a client sees it.
type Lock struct {
	// Key names the lock.
	Key string
	// Owner is the holder's identity, chosen by the client.
	Owner string
	// Token is the fencing token: the granting command's place in the log
	// (see raftfsm's DESIGN.md). It strictly increases across successive
	// grants of a key.
	Token uint64
	// Version is 1 at grant and grows by one per renewal.
	Version uint64
	// TTL is the lease length most recently granted (by acquire or renew).
	TTL time.Duration
	// Remaining is the time left on the lease, in cluster time, when the
	// reply was produced.
	Remaining time.Duration
	// ExpiresAt is the answering node's wall-clock estimate of the expiry:
	// its wall clock plus Remaining. It is informational only; expiry is
	// decided in cluster time.
	ExpiresAt time.Time
	// Waiters counts the callers queued for this lock (LOCK.ACQUIRE ... WAIT).
	Waiters int
	// Persistent is true for a key set without a TTL (SET k v): it never
	// expires, and TTL, Remaining and ExpiresAt are zero.
	Persistent bool
}

// AcquireRequest asks for a lock.
type AcquireRequest struct {
	Key   string
	Owner string
	TTL   time.Duration
	// Wait is how long to queue for the lock when another owner holds it;
	// zero means try once.
	Wait time.Duration
}

// RenewRequest extends a held lock's lease to TTL from now.
type RenewRequest struct {
	Key   string
	Owner string
	TTL   time.Duration
	// Token, when non-zero, must equal the lock's fencing token.
	Token uint64
}

// ReleaseRequest gives a lock up.
type ReleaseRequest struct {
	Key   string
	Owner string
	// Token, when non-zero, must equal the lock's fencing token.
	Token uint64
}

// NodeInfo describes one member of the cluster.
type NodeInfo struct {
	// ID is the node's --id.
	ID string
	// State is "leader", "follower", "candidate" or "unknown" (a member this
	// node cannot see the state of).
	State string
	// Address is the node's raft address.
	Address string
	// RESPAddr and HTTPAddr are the node's client addresses, when known.
	RESPAddr string
	HTTPAddr string
}

// ClusterInfo is the cluster as the answering node sees it.
type ClusterInfo struct {
	LeaderID   string
	Term       uint64
	Nodes      []NodeInfo
	QuorumSize int
	HasQuorum  bool
	// ClusterID names the cluster (empty until its protocol version 3).
	ClusterID string
	// Removed reports that this node knows no leader and a member that
	// knows one answered that the cluster's configuration, at least as new
	// as this node's, does not list this node: typically it was removed
	// while it was down.
	Removed bool
}

// Service is the lock service as the front ends see it. Implementations must
// be safe for concurrent use. A request whose context ends may still take
// effect; requests are idempotent per owner (re-acquiring a lock one holds
// extends it and returns the same token), so retrying is safe.
type Service interface {
	// Acquire grants the lock to req.Owner, or extends it when req.Owner
	// already holds it. It returns ErrHeld when another owner holds it (after
	// waiting up to req.Wait).
	Acquire(ctx context.Context, req AcquireRequest) (Lock, error)
	// Renew extends a lock held by req.Owner (and req.Token, when set). It
	// returns ErrNotFound when no lock is held under the key and ErrNotHeld
	// when another owner (or another token) holds it.
	Renew(ctx context.Context, req RenewRequest) (Lock, error)
	// Release frees a lock held by req.Owner (and req.Token, when set). It
	// returns ErrNotFound when no lock is held under the key and ErrNotHeld
	// when another owner (or another token) holds it.
	Release(ctx context.Context, req ReleaseRequest) error
	// Info returns a held lock, or ErrNotFound.
	Info(ctx context.Context, key string) (Lock, error)
	// List returns every held lock in key order.
	List(ctx context.Context) ([]Lock, error)
	// ClusterInfo describes the cluster; it answers even without a quorum.
	ClusterInfo(ctx context.Context) (ClusterInfo, error)
}
