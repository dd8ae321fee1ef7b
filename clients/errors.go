package clients

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Sentinel errors. Every error this package returns wraps one of them (or a
// context error); match with [errors.Is].
var (
	// ErrHeld means another owner holds the lock: LOCK.ACQUIRE answered
	// null, after queueing for [AcquireOptions.Wait] if that was set.
	ErrHeld = errors.New("clients: lock is held by another owner")
	// ErrLocked is [ErrHeld] under the name etcd's concurrency package uses.
	ErrLocked = ErrHeld
	// ErrNotHeld means the caller does not hold the lock (any more): a
	// renewal was refused (NOTHELD), or a release found nothing to free.
	ErrNotHeld = errors.New("clients: lock is not held by this owner")
	// ErrNotFound means no lock is held under the key ([Client.Info]).
	ErrNotFound = errors.New("clients: no such lock")
	// ErrNoQuorum means the cluster has no leader or the leader has no
	// quorum (CLUSTERDOWN): the request did not take effect.
	ErrNoQuorum = errors.New("clients: cluster has no leader or no quorum")
	// ErrUnknownOutcome means a request may or may not have taken effect:
	// the node answered UNKNOWN (leadership was lost while the request was
	// in flight), or the connection failed after the request was sent.
	ErrUnknownOutcome = errors.New("clients: outcome unknown")
	// ErrTimeout means a node answered TIMEOUT, or an attempt ran out of
	// time; the request may still take effect.
	ErrTimeout = errors.New("clients: request timed out")
	// ErrUnavailable means a node could not be reached (connection
	// refused, dial timeout...): the request did not take effect there.
	ErrUnavailable = errors.New("clients: node unavailable")
	// ErrAuth means the password is missing or wrong (NOAUTH, WRONGPASS).
	ErrAuth = errors.New("clients: authentication failed")
	// ErrInvalid means the request is malformed (an ERR reply, or options
	// refused before sending: empty key, TTL under 1ms...).
	ErrInvalid = errors.New("clients: invalid request")
	// ErrLeaseLost means a lease ended without being released: a renewal
	// was refused, or no renewal was confirmed before the lease's deadline.
	// [Lease.Err] wraps it with the cause.
	ErrLeaseLost = errors.New("clients: lease lost")
	// ErrReleased is [Lease.Err] after [Lease.Release].
	ErrReleased = errors.New("clients: lease released")
	// ErrClosed means the [Client] was closed; leases it had end with it.
	ErrClosed = errors.New("clients: client closed")
)

// ServerError is an error reply from a node. It unwraps to the sentinel of
// its code word: NOTHELD is [ErrNotHeld], CLUSTERDOWN [ErrNoQuorum],
// UNKNOWN [ErrUnknownOutcome], TIMEOUT [ErrTimeout], NOAUTH and WRONGPASS
// [ErrAuth], ERR and anything else [ErrInvalid].
type ServerError struct {
	// Addr is the node that replied.
	Addr string
	// Code is the reply's first word, such as "CLUSTERDOWN".
	Code string
	// Message is the whole reply, code word included.
	Message string
}

// Error returns the node's address and its reply.
func (e *ServerError) Error() string { return "node " + e.Addr + ": " + e.Message }

// Unwrap returns the sentinel error of e's code word.
func (e *ServerError) Unwrap() error {
	switch e.Code {
	case "NOTHELD":
		return ErrNotHeld
	case "CLUSTERDOWN":
		return ErrNoQuorum
	case "UNKNOWN":
		return ErrUnknownOutcome
	case "TIMEOUT":
		return ErrTimeout
	case "NOAUTH", "WRONGPASS":
		return ErrAuth
	default:
		return ErrInvalid
	}
}

// kind says what a failed attempt allows.
type kind int

const (
	// fatal: give up at once (bad request, authentication, NOTHELD).
	fatal kind = iota
	// untouched: the request did not take effect; try another node.
	untouched
	// unknown: the request may have taken effect; an idempotent retry is
	// safe.
	unknown
)

// redisError is implemented by go-redis's error replies.
type redisError interface {
	error
	RedisError()
}

// classify turns an attempt's error into this package's error and says
// whether and how it may be retried. timedOut reports that the attempt's
// own context had ended.
func classify(addr string, err error, timedOut bool) (kind, error) {
	var re redisError
	if errors.As(err, &re) {
		msg := re.Error()
		code, _, _ := strings.Cut(msg, " ")
		se := &ServerError{Addr: addr, Code: code, Message: msg}
		switch code {
		case "CLUSTERDOWN":
			return untouched, se
		case "UNKNOWN", "TIMEOUT":
			return unknown, se
		default:
			return fatal, se
		}
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" || errors.Is(err, redis.ErrPoolTimeout) {
		return untouched, fmt.Errorf("%w: node %s: %w", ErrUnavailable, addr, err)
	}
	if errors.Is(err, redis.ErrClosed) {
		return fatal, ErrClosed
	}
	if tlsRefusal(err) {
		// The node refused this client's connection (no certificate, or
		// one it does not trust) before reading any request: another node
		// may take it (do fails at once when every node refuses).
		return untouched, fmt.Errorf("node %s refused the TLS connection: %w", addr, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || timedOut {
		return unknown, fmt.Errorf("%w: node %s did not answer in time (%w)", ErrTimeout, addr, ErrUnknownOutcome)
	}
	// The connection failed after it was set up: the request may have been
	// applied.
	return unknown, fmt.Errorf("%w: node %s: %w", ErrUnknownOutcome, addr, err)
}

// tlsRefusal reports whether err is a TLS alert from the node (a
// "remote error" of crypto/tls).
func tlsRefusal(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}
