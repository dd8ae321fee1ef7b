package lockapi

import (
	"errors"
	"fmt"
)

// Sentinel errors of the lock service. Every layer wraps them with %w so that
// errors.Is works from the state machine up to the front ends, which map them
// to RESP error replies and HTTP statuses.
var (
	// ErrHeld means another owner holds the lock.
	ErrHeld = errors.New("lock is held by another owner")
	// ErrNotHeld means the caller does not hold the lock (or gave another
	// fencing token).
	ErrNotHeld = errors.New("lock is not held by this owner")
	// ErrNotFound means no lock is held under the key.
	ErrNotFound = errors.New("no such lock")
	// ErrInvalid means the request itself is malformed (bad TTL, empty key,
	// oversized argument...). It is always wrapped with a precise message.
	ErrInvalid = errors.New("invalid request")
	// ErrNoLeader means the cluster has no leader this node can reach.
	ErrNoLeader = errors.New("no leader")
	// ErrNoQuorum means the leader cannot reach a majority.
	ErrNoQuorum = errors.New("no quorum")
	// ErrUnknownOutcome means the request may or may not have taken effect
	// (leadership was lost while it was in flight). Retrying with the same
	// owner is safe.
	ErrUnknownOutcome = errors.New("outcome unknown: leadership lost while the request was in flight, retry with the same owner")
	// ErrTimeout means the request did not complete before its deadline; it
	// may still take effect.
	ErrTimeout = errors.New("timed out")
	// ErrShuttingDown means the node is stopping.
	ErrShuttingDown = errors.New("node is shutting down")
)

// Invalidf returns an error wrapping ErrInvalid with a formatted message.
func Invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
