//go:build unix

package chaos

import (
	"context"
	"sync"
	"time"
)

// lagMonitor measures how late the harness's own timers fire: on a machine
// so overloaded that a 20ms timer fires hundreds of milliseconds late, the
// node processes starve as well, elections take seconds, and a timing
// verdict (liveness) says more about the machine than about the server.
// Safety checkers do not depend on speed and ignore it.
type lagMonitor struct {
	h        *History
	mu       sync.Mutex
	lags     []lagSample
	maxTotal time.Duration
}

type lagSample struct {
	at  int64 // history time
	lag time.Duration
}

// lagTick is the monitor's period.
const lagTick = 20 * time.Millisecond

func (m *lagMonitor) run(ctx context.Context) {
	t := time.NewTicker(lagTick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			lag := now.Sub(last) - lagTick
			last = now
			if lag < 50*time.Millisecond {
				continue
			}
			m.mu.Lock()
			m.lags = append(m.lags, lagSample{at: m.h.Now(), lag: lag})
			if len(m.lags) > 10000 {
				m.lags = m.lags[len(m.lags)-5000:]
			}
			m.maxTotal = max(m.maxTotal, lag)
			m.mu.Unlock()
		}
	}
}

// maxSince returns the largest timer lag seen since history time t.
func (m *lagMonitor) maxSince(t int64) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	var worst time.Duration
	for _, s := range m.lags {
		if s.at >= t {
			worst = max(worst, s.lag)
		}
	}
	return worst
}

// max returns the largest lag of the run.
func (m *lagMonitor) max() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.maxTotal
}
