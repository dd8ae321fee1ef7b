// Package raftconn keeps track of the connections a hashicorp/raft
// transport has accepted, so that a node can wait for raft's handlers of
// them to end before it closes its log store.
//
// hashicorp/raft handles heartbeats on the goroutine of the connection they
// arrive on. Neither raft.Shutdown nor NetworkTransport.Close waits for
// those goroutines, and a heartbeat that passed raft's shutdown check may
// still write a newer term to the stable store or read the log, where a
// closed store's error makes raft panic ("failed to save current term").
// A stream layer passes each connection it accepts through Track and hands
// raft the connection Track returns; after raft.Shutdown and the
// transport's Close, Drain closes the sockets still open, so that the
// handlers' reads fail, and waits until each handler has closed its
// connection (raft's handler closes it when it returns). Each connection
// carries a tag (the server tags it with the cluster id it announced), so
// that CloseUnless can cut those a node no longer admits.
package raftconn

import (
	"errors"
	"net"
	"sync"
	"time"
)

// ErrDrained is returned by Track once Drain has begun: the connection has
// been closed and must not reach raft.
var ErrDrained = errors.New("raftconn: draining: connection refused")

// ErrDrainTimeout is returned by Drain when some handler did not close its
// connection in time.
var ErrDrainTimeout = errors.New("raftconn: raft connection handlers still running")

// Tracker tracks accepted raft connections until their handlers close them.
// The zero value is ready to use; a Tracker must not be copied.
type Tracker struct {
	mu       sync.Mutex
	open     map[*trackedConn]struct{} // connections not yet closed by their handler
	handlers sync.WaitGroup            // one per entry of open
	drained  bool                      // Drain has begun: Track refuses
}

// Track returns c, tagged with tag, wrapped so that the Tracker knows when
// it is closed. Once Drain has begun, it closes c and returns ErrDrained
// instead.
func (t *Tracker) Track(c net.Conn, tag string) (net.Conn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.drained {
		c.Close()
		return nil, ErrDrained
	}
	if t.open == nil {
		t.open = make(map[*trackedConn]struct{})
	}
	tc := &trackedConn{Conn: c, tracker: t, tag: tag}
	t.open[tc] = struct{}{}
	t.handlers.Add(1)
	return tc, nil
}

// Drain refuses connections from now on, closes the sockets of the tracked
// connections still open and waits up to timeout for each of them to be
// closed through the connection Track returned. It returns ErrDrainTimeout
// if some were not; a later Drain waits again.
func (t *Tracker) Drain(timeout time.Duration) error {
	t.mu.Lock()
	t.drained = true
	for tc := range t.open {
		// The socket only: the handler's own Close marks it done. Under
		// TLS, the raw socket: a TLS Close first sends its close alert,
		// for up to 5 s to a peer that does not read, and the handler's
		// read would fail only then.
		rawConn(tc.Conn).Close()
	}
	t.mu.Unlock()
	finished := make(chan struct{})
	go func() {
		t.handlers.Wait()
		close(finished)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-finished:
		return nil
	case <-timer.C:
		return ErrDrainTimeout
	}
}

// CloseUnless closes the sockets of the tracked connections whose tag keep
// rejects, as Drain does (their handlers then close them), and returns how
// many it closed.
func (t *Tracker) CloseUnless(keep func(tag string) bool) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	closed := 0
	for tc := range t.open {
		if !keep(tc.tag) {
			rawConn(tc.Conn).Close()
			closed++
		}
	}
	return closed
}

// rawConn returns the connection under c's wrappers (a *tls.Conn, or any
// wrapper with a NetConn method), so that closing it closes the socket at
// once.
func rawConn(c net.Conn) net.Conn {
	for {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return c
		}
		c = u.NetConn()
	}
}

// done is called once per tracked connection, on its first Close.
func (t *Tracker) done(tc *trackedConn) {
	t.mu.Lock()
	delete(t.open, tc)
	t.mu.Unlock()
	t.handlers.Done()
}

// trackedConn is a connection whose first Close tells its Tracker.
type trackedConn struct {
	net.Conn
	tracker   *Tracker
	tag       string
	closeOnce sync.Once
	closeErr  error
}

// Close closes the connection and tells the Tracker; only the first call
// has an effect.
func (c *trackedConn) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.Conn.Close()
		c.tracker.done(c)
	})
	return c.closeErr
}
