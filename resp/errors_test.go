package resp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/distlock/distlock/lockapi"
)

func TestErrorReply(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{lockapi.Invalidf("key must not be empty"), "ERR key must not be empty"},
		{fmt.Errorf("invalid ttl: %w", lockapi.Invalidf("duration %q overflows", "9")), `ERR invalid ttl: duration "9" overflows`},
		{lockapi.ErrNotHeld, "NOTHELD lock is not held by this owner"},
		{fmt.Errorf("renew: %w", lockapi.ErrNotFound), "NOTHELD lock is not held by this owner"},
		{fmt.Errorf("apply: %w", lockapi.ErrNoQuorum), "CLUSTERDOWN no quorum"},
		{lockapi.ErrNoLeader, "CLUSTERDOWN no leader"},
		{lockapi.ErrShuttingDown, "CLUSTERDOWN node is shutting down"},
		{context.Canceled, "CLUSTERDOWN node is shutting down"},
		{lockapi.ErrUnknownOutcome, "UNKNOWN " + lockapi.ErrUnknownOutcome.Error()},
		{lockapi.ErrTimeout, "TIMEOUT request timed out and may still take effect, retry with the same owner"},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), "TIMEOUT request timed out and may still take effect, retry with the same owner"},
		// An outcome that is unknown because of a timeout is reported as
		// unknown.
		{errors.Join(lockapi.ErrTimeout, lockapi.ErrUnknownOutcome), "UNKNOWN " + lockapi.ErrUnknownOutcome.Error()},
		{errors.New("disk on fire"), "ERR disk on fire"},
	} {
		if got := errorReply(tc.err); got != tc.want {
			t.Errorf("errorReply(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestUnknownCommandText(t *testing.T) {
	long := strings.Repeat("a", 200)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"foo"}, "ERR unknown command 'foo', with args beginning with: "},
		{[]string{"foo", "a", "b"}, "ERR unknown command 'foo', with args beginning with: 'a' 'b' "},
		// Like Redis: the name is cut at 128 bytes, and arguments stop
		// once 128 bytes of them have been shown.
		{[]string{long, long, "b"}, "ERR unknown command '" + long[:128] + "', with args beginning with: '" + long[:128] + "' "},
		{[]string{"x", long[:120], "bcdefghijkl", "z"}, "ERR unknown command 'x', with args beginning with: '" + long[:120] + "' 'bcdef' "},
	} {
		args := make([][]byte, len(tc.args))
		for i, a := range tc.args {
			args[i] = []byte(a)
		}
		if got := unknownCommand(args); got != tc.want {
			t.Errorf("unknownCommand(%q) =\n%q, want\n%q", tc.args, got, tc.want)
		}
	}
}
