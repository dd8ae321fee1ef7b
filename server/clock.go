package server

import (
	"os"
	"strings"
	"sync"
	"time"
)

// Clock is the node's source of time. Cluster time (which decides lock
// expiry) is taken from Monotonic only; Now (wall time) is used solely to
// show clients an estimated expires_at. A wall-clock jump therefore never
// expires a lock early or late.
type Clock interface {
	// Now returns the wall-clock time.
	Now() time.Time
	// Monotonic returns the time elapsed on a clock that never jumps.
	Monotonic() time.Duration
}

// systemClock is the real clock: time.Now for wall time and the monotonic
// reading Go keeps in time.Time for elapsed time.
type systemClock struct{ start time.Time }

func newSystemClock() Clock { return systemClock{start: time.Now()} }

func (c systemClock) Now() time.Time           { return time.Now() }
func (c systemClock) Monotonic() time.Duration { return time.Since(c.start) }

// SkewFileClock is a test-only Clock: the system clock with its wall time
// shifted by an offset read from a file (a Go duration such as "90s" or
// "-1h"; missing or empty means zero), re-read at most every 50ms. The chaos
// tests jump a node's wall clock with it; since cluster time comes from the
// monotonic clock, a correct node is unaffected.
type SkewFileClock struct {
	path  string
	base  Clock
	mu    sync.Mutex
	read  time.Time
	skew  time.Duration
	every time.Duration
}

// NewSkewFileClock returns a SkewFileClock reading its offset from path.
func NewSkewFileClock(path string) *SkewFileClock {
	return &SkewFileClock{path: path, base: newSystemClock(), every: 50 * time.Millisecond}
}

// Now returns the wall time plus the file's offset.
func (c *SkewFileClock) Now() time.Time { return c.base.Now().Add(c.offset()) }

// Monotonic returns the real monotonic time: the file never moves it.
func (c *SkewFileClock) Monotonic() time.Duration { return c.base.Monotonic() }

func (c *SkewFileClock) offset() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.read) >= c.every {
		c.read = time.Now()
		c.skew = 0
		if b, err := os.ReadFile(c.path); err == nil {
			if d, err := time.ParseDuration(strings.TrimSpace(string(b))); err == nil {
				c.skew = d
			}
		}
	}
	return c.skew
}
