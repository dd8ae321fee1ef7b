package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/distlock/distlock/lockapi"
)

// Failures that exist only over HTTP. Service failures are lockapi's
// sentinels; malformed requests wrap lockapi.ErrInvalid.
var (
	// errBodyTooLarge means the request body exceeded maxBodyBytes.
	errBodyTooLarge = errors.New("request body too large")
	// errUnauthorized means the Authorization header is missing or wrong.
	errUnauthorized = errors.New("authentication required")
	// errNoRoute means no endpoint has the request's path.
	errNoRoute = errors.New("no such endpoint")
	// errMethod means an endpoint has the path but not the method.
	errMethod = errors.New("method not allowed")
	// errNoMetrics means the API was built without a metrics handler.
	errNoMetrics = errors.New("metrics are not served by this node")
	// errInternal is what a client sees of an unexpected error.
	errInternal = errors.New("internal error")
)

// outcomeUnknown is appended to timeouts so clients know a retry is needed.
const outcomeUnknown = "the outcome is unknown; retrying with the same owner is safe"

// errorStatus is the one place an error becomes an HTTP status and the
// message of a failure body:
//
//	lockapi.ErrInvalid                              400
//	errUnauthorized                                 401
//	lockapi.ErrNotFound, errNoRoute, errNoMetrics   404
//	errMethod                                       405
//	lockapi.ErrHeld, lockapi.ErrNotHeld, ErrWrongType 409
//	errBodyTooLarge                                 413
//	lockapi.ErrNoLeader, ErrNoQuorum, ErrShuttingDown 503
//	lockapi.ErrTimeout, ErrUnknownOutcome,
//	context.DeadlineExceeded, context.Canceled      504 (message says the outcome is unknown)
//	anything else                                   500 ("internal error"; the error is logged)
func errorStatus(err error) (int, string) {
	switch {
	case errors.Is(err, lockapi.ErrInvalid):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized, err.Error()
	case errors.Is(err, lockapi.ErrNotFound), errors.Is(err, errNoRoute), errors.Is(err, errNoMetrics):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed, err.Error()
	case errors.Is(err, lockapi.ErrHeld), errors.Is(err, lockapi.ErrNotHeld), errors.Is(err, lockapi.ErrWrongType):
		return http.StatusConflict, err.Error()
	case errors.Is(err, errBodyTooLarge):
		return http.StatusRequestEntityTooLarge, err.Error()
	case errors.Is(err, lockapi.ErrNoLeader), errors.Is(err, lockapi.ErrNoQuorum),
		errors.Is(err, lockapi.ErrShuttingDown):
		return http.StatusServiceUnavailable, err.Error()
	case errors.Is(err, lockapi.ErrUnknownOutcome):
		// Its text already says the outcome is unknown.
		return http.StatusGatewayTimeout, err.Error()
	case errors.Is(err, lockapi.ErrTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled):
		return http.StatusGatewayTimeout, fmt.Sprintf("%v: %s", err, outcomeUnknown)
	default:
		return http.StatusInternalServerError, errInternal.Error()
	}
}

// writeError answers r with the failure body for err. Unexpected errors (500)
// are logged, since their text is not shown to the client.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	code, msg := errorStatus(err)
	if code == http.StatusInternalServerError {
		log.ErrorContext(r.Context(), "http request failed",
			"method", r.Method, "path", r.URL.Path, "err", err)
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="distlock"`)
	}
	writeJSON(w, code, failureBody{Success: false, Error: msg})
}
