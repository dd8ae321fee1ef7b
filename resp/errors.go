package resp

import (
	"context"
	"errors"
	"strings"

	"github.com/distlock/distlock/lockapi"
)

// errorReply maps an error from the service (or from argument validation)
// to the text of a RESP error reply, code word first. It is the one place
// where errors become RESP errors; the table is in the package comment.
// Mapped errors get fixed texts, so clients can match them and internals do
// not leak; ErrInvalid keeps its detail, which is the point of the reply.
func errorReply(err error) string {
	switch {
	case errors.Is(err, lockapi.ErrInvalid):
		return "ERR " + invalidDetail(err)
	case errors.Is(err, lockapi.ErrWrongType):
		return lockapi.ErrWrongType.Error()
	case errors.Is(err, lockapi.ErrNotHeld), errors.Is(err, lockapi.ErrNotFound):
		return "NOTHELD " + lockapi.ErrNotHeld.Error()
	case errors.Is(err, lockapi.ErrUnknownOutcome):
		return "UNKNOWN " + lockapi.ErrUnknownOutcome.Error()
	case errors.Is(err, lockapi.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "TIMEOUT request timed out and may still take effect, retry with the same owner"
	case errors.Is(err, lockapi.ErrNoQuorum):
		return "CLUSTERDOWN no quorum"
	case errors.Is(err, lockapi.ErrNoLeader):
		return "CLUSTERDOWN no leader"
	case errors.Is(err, lockapi.ErrShuttingDown), errors.Is(err, context.Canceled):
		// Commands are only cancelled when the server closes.
		return "CLUSTERDOWN node is shutting down"
	default:
		return "ERR " + err.Error()
	}
}

// invalidDetail returns an ErrInvalid error's message without the sentinel's
// own words: `invalid ttl: invalid request: duration "x" is ...` becomes
// `invalid ttl: duration "x" is ...`.
func invalidDetail(err error) string {
	return strings.Replace(err.Error(), lockapi.ErrInvalid.Error()+": ", "", 1)
}

// writeError writes the RESP error reply for err.
func (c *client) writeError(err error) { c.writeErrorText(errorReply(err)) }
