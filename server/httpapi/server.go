package httpapi

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/distlock/distlock/lockapi"
)

// Timeouts of the server [NewServer] builds.
const (
	// readHeaderTimeout bounds reading request headers (slowloris).
	readHeaderTimeout = 5 * time.Second
	// readTimeout bounds reading a whole request; bodies are at most 64 KiB.
	readTimeout = 30 * time.Second
	// idleTimeout bounds an idle keep-alive connection.
	idleTimeout = 120 * time.Second
	// maxHeaderBytes bounds request headers (a 1 KiB key fits escaped).
	maxHeaderBytes = 64 << 10
)

// NewServer returns an http.Server for h on addr with every timeout set.
// WriteTimeout covers the longest acquire wait plus a margin: the API's
// MaxWait when h is an *API, else lockapi.DefaultMaxWait. (An acquire with a
// wait also extends its own write deadline, so a wrapped API with a longer
// MaxWait still works when the wrappers' ResponseWriters implement Unwrap.)
// The server's own errors go to the API's logger when h is an *API.
func NewServer(addr string, h http.Handler) *http.Server {
	maxWait := lockapi.DefaultMaxWait
	log := slog.Default()
	if a, ok := h.(*API); ok {
		maxWait = a.cfg.MaxWait
		log = a.log
	}
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      maxWait + writeMargin,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
