package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The forwarding wire: every frame is
//
//	uint32 length (big endian, of what follows) | byte kind | uint64 id | body
//
// (bodies: forwardcodec.go). A follower keeps one connection per leader and
// multiplexes every forwarded request over it: requests carry an id, the
// leader answers each id once, in any order, and a cancel frame withdraws a
// request (a client that stopped waiting). Frames that are ready together
// leave in one write, so a busy follower pays a few system calls per batch,
// not per request. An ordered request is one of a client's pipeline: the
// leader submits it to raft after the ordered request before it on the same
// connection.

// Frame kinds.
const (
	frameRequest        byte = 1
	frameResponse       byte = 2
	frameCancel         byte = 3
	frameOrderedRequest byte = 4
)

// frameHeader is the size of a frame's kind and id.
const frameHeader = 1 + 8

// maxFrame bounds a forwarded frame (a LOCK.LIST of many locks is the
// largest).
const maxFrame = 256 << 20

// forwardIdleTimeout closes a follower's forwarding connection after this
// long with nothing in flight. The leader never closes one for idleness
// (TCP keepalive finds dead peers), so a request is never sent into a
// connection the leader is closing.
const forwardIdleTimeout = 5 * time.Minute

// forwardWriteTimeout bounds one write of frames to a peer.
const forwardWriteTimeout = 10 * time.Second

// deadPeerAfter is how long a connection must stay silent while a request
// waits on it before a timed-out request closes it.
const deadPeerAfter = 2 * time.Second

// maxKeptBuffer is the largest write buffer kept for reuse.
const maxKeptBuffer = 1 << 20

// errMuxClosed means a connection was closed before a request was sent on
// it: the request can be sent again on a new connection.
var errMuxClosed = errors.New("forwarding connection closed")

func appendFrame(buf []byte, kind byte, id uint64, body []byte) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(frameHeader+len(body)))
	buf = append(buf, kind)
	buf = binary.BigEndian.AppendUint64(buf, id)
	return append(buf, body...)
}

// readFrame reads one frame from r.
func readFrame(r io.Reader) (kind byte, id uint64, body []byte, err error) {
	var head [4 + frameHeader]byte
	if _, err = io.ReadFull(r, head[:]); err != nil {
		return 0, 0, nil, err
	}
	n := binary.BigEndian.Uint32(head[:4])
	if n < frameHeader || n > maxFrame {
		return 0, 0, nil, fmt.Errorf("forwarded frame of %d bytes is outside [%d, %d]", n, frameHeader, maxFrame)
	}
	kind, id = head[4], binary.BigEndian.Uint64(head[5:])
	if body, err = readBody(r, int(n-frameHeader)); err != nil {
		return 0, 0, nil, err
	}
	return kind, id, body, nil
}

// bodyChunk is the most readBody allocates before the bytes arrive.
const bodyChunk = 64 << 10

// readBody reads a body of size bytes. A large body's buffer grows as its
// bytes arrive (doubling), so a peer that announces a huge frame and sends
// little makes this node allocate little.
func readBody(r io.Reader, size int) ([]byte, error) {
	body := make([]byte, min(size, bodyChunk))
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	for len(body) < size {
		have := len(body)
		body = slices.Grow(body, min(size-have, have))
		body = body[:min(size, cap(body))]
		if _, err := io.ReadFull(r, body[have:]); err != nil {
			return nil, err
		}
	}
	return body, nil
}

// frameWriter coalesces frames: senders append to a buffer and one
// goroutine writes whatever has gathered in a single system call.
type frameWriter struct {
	c    net.Conn
	mu   sync.Mutex
	buf  []byte
	err  error
	wake chan struct{}
	done chan struct{}
}

func newFrameWriter(c net.Conn) *frameWriter {
	w := &frameWriter{c: c, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go w.loop()
	return w
}

// send queues a frame. An error means the connection is already broken.
func (w *frameWriter) send(kind byte, id uint64, body []byte) error {
	w.mu.Lock()
	if w.err != nil {
		w.mu.Unlock()
		return w.err
	}
	w.buf = appendFrame(w.buf, kind, id, body)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return nil
}

func (w *frameWriter) loop() {
	var out []byte
	for {
		select {
		case <-w.wake:
		case <-w.done:
			return
		}
		// Let the other goroutines that are ready to send (answers of one
		// raft batch complete together) add their frames to this write.
		runtime.Gosched()
		w.mu.Lock()
		out, w.buf = w.buf, out[:0]
		w.mu.Unlock()
		if len(out) == 0 {
			continue
		}
		w.c.SetWriteDeadline(time.Now().Add(forwardWriteTimeout))
		if _, err := w.c.Write(out); err != nil {
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
			w.c.Close()
			return
		}
		if cap(out) > maxKeptBuffer {
			out = nil
		}
	}
}

// stop ends the writer goroutine; queued frames not yet written are dropped.
func (w *frameWriter) stop() {
	w.mu.Lock()
	if w.err == nil {
		w.err = errMuxClosed
	}
	w.mu.Unlock()
	close(w.done)
}

// muxResult is the answer to one forwarded request: a response body, or
// the error that ended the connection before it came.
type muxResult struct {
	body []byte
	err  error
}

// muxConn is a follower's connection to one leader, shared by every
// request forwarded there.
type muxConn struct {
	addr     string
	c        net.Conn
	w        *frameWriter
	onClose  func(*muxConn)
	lastRecv atomic.Int64 // unix nanoseconds of the last frame received
	lastSent atomic.Int64 // unix nanoseconds of the last request sent
	idle     *time.Timer  // runs closeIfIdle

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan muxResult
	closed  error
}

func dialMux(dial peerDialer, addr string, timeout time.Duration, onClose func(*muxConn)) (*muxConn, error) {
	c, err := dial.dial(addr, timeout)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{forwardMagic}); err != nil {
		c.Close()
		return nil, err
	}
	m := &muxConn{addr: addr, c: c, w: newFrameWriter(c), onClose: onClose, pending: make(map[uint64]chan muxResult)}
	m.lastRecv.Store(time.Now().UnixNano())
	return m, nil
}

// run starts reading answers and the idle check. It is called once m is
// registered, so a connection that dies at once is forgotten, not kept.
func (m *muxConn) run() {
	m.mu.Lock()
	m.idle = time.AfterFunc(forwardIdleTimeout, m.closeIfIdle)
	m.mu.Unlock()
	go m.readLoop()
}

// start sends a request (frame kind frameRequest or frameOrderedRequest)
// and returns its id and the channel its answer arrives on. errMuxClosed
// means nothing was sent.
func (m *muxConn) start(kind byte, body []byte) (uint64, <-chan muxResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed != nil {
		return 0, nil, errMuxClosed
	}
	m.nextID++
	id := m.nextID
	ch := make(chan muxResult, 1)
	if err := m.w.send(kind, id, body); err != nil {
		return 0, nil, errMuxClosed
	}
	m.pending[id] = ch
	m.lastSent.Store(time.Now().UnixNano())
	return id, ch, nil
}

// abandon withdraws a request whose caller stopped waiting: the leader
// cancels it (a waiting acquire leaves the queue). If the request timed
// out and nothing at all was heard on the connection since it was sent, at
// least deadPeerAfter ago, the leader is taken for unreachable and the
// connection is closed, so the next request dials anew.
func (m *muxConn) abandon(id uint64, sentAt time.Time, timedOut bool) {
	m.mu.Lock()
	_, ok := m.pending[id]
	delete(m.pending, id)
	m.mu.Unlock()
	if !ok {
		return
	}
	m.w.send(frameCancel, id, nil)
	if timedOut && m.lastRecv.Load() < sentAt.UnixNano() && time.Since(sentAt) >= deadPeerAfter {
		m.fail(fmt.Errorf("no answer from %s since %s", m.addr, sentAt.Format(time.RFC3339Nano)))
	}
}

func (m *muxConn) readLoop() {
	br := bufio.NewReaderSize(m.c, 64<<10)
	for {
		kind, id, body, err := readFrame(br)
		if err != nil {
			m.fail(err)
			return
		}
		m.lastRecv.Store(time.Now().UnixNano())
		if kind != frameResponse {
			m.fail(fmt.Errorf("unexpected frame kind %d from %s", kind, m.addr))
			return
		}
		m.mu.Lock()
		ch := m.pending[id]
		delete(m.pending, id)
		m.mu.Unlock()
		if ch != nil {
			ch <- muxResult{body: body}
		}
	}
}

// closeIfIdle closes the connection when nothing was sent or received for
// forwardIdleTimeout and nothing is in flight; otherwise it looks again later.
func (m *muxConn) closeIfIdle() {
	idle := time.Since(time.Unix(0, max(m.lastRecv.Load(), m.lastSent.Load())))
	if idle >= forwardIdleTimeout && m.shut(errMuxClosed, true) {
		return
	}
	m.rearm(forwardIdleTimeout - min(idle, forwardIdleTimeout-time.Second))
}

// rearm schedules the next idle check unless the connection is closed.
func (m *muxConn) rearm(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed == nil {
		m.idle.Reset(d)
	}
}

// fail closes the connection and ends every request in flight with err.
func (m *muxConn) fail(err error) { m.shut(err, false) }

// shut closes the connection (only when nothing is in flight, if onlyIdle)
// and reports whether it did; the check and the close are one step, so no
// request slips in between.
func (m *muxConn) shut(err error, onlyIdle bool) bool {
	m.mu.Lock()
	if m.closed != nil || (onlyIdle && len(m.pending) > 0) {
		m.mu.Unlock()
		return false
	}
	m.closed = err
	pending := m.pending
	m.pending = nil
	if m.idle != nil {
		m.idle.Stop()
	}
	m.mu.Unlock()
	m.w.stop()
	m.c.Close()
	for _, ch := range pending {
		ch <- muxResult{err: err}
	}
	if m.onClose != nil {
		m.onClose(m)
	}
	return true
}

// forwarder holds one multiplexed connection per leader address.
type forwarder struct {
	mu      sync.Mutex
	conns   map[string]*muxConn
	dialing map[string]*dialCall
	closed  bool
	peers   peerDialer
}

// dialCall is a dial in progress; every caller that needs the same
// address waits for it instead of dialing again.
type dialCall struct {
	done chan struct{}
	m    *muxConn
	err  error
}

// conn returns the connection to addr, dialing one if there is none. It
// gives up when ctx ends; the dial itself is bounded by timeout.
func (f *forwarder) conn(ctx context.Context, addr string, timeout time.Duration) (*muxConn, error) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, errMuxClosed
	}
	if m := f.conns[addr]; m != nil {
		f.mu.Unlock()
		return m, nil
	}
	call := f.dialing[addr]
	if call == nil {
		call = &dialCall{done: make(chan struct{})}
		if f.dialing == nil {
			f.dialing = make(map[string]*dialCall)
		}
		f.dialing[addr] = call
		go f.dial(addr, timeout, call)
	}
	f.mu.Unlock()
	select {
	case <-call.done:
		return call.m, call.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// dial connects to addr and registers the connection before it starts
// reading from it.
func (f *forwarder) dial(addr string, timeout time.Duration, call *dialCall) {
	m, err := dialMux(f.peers, addr, timeout, f.forget)
	f.mu.Lock()
	delete(f.dialing, addr)
	switch {
	case err != nil:
		call.err = err
	case f.closed:
		call.err = errMuxClosed
		go m.fail(errMuxClosed)
	default:
		if f.conns == nil {
			f.conns = make(map[string]*muxConn)
		}
		f.conns[addr] = m
		call.m = m
		m.run()
	}
	f.mu.Unlock()
	close(call.done)
}

// forget drops a closed connection from the map.
func (f *forwarder) forget(m *muxConn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns[m.addr] == m {
		delete(f.conns, m.addr)
	}
}

// close closes every connection; requests in flight end with an error.
func (f *forwarder) close() {
	f.mu.Lock()
	f.closed = true
	conns := f.conns
	f.conns = nil
	f.mu.Unlock()
	for _, m := range conns {
		m.fail(errMuxClosed)
	}
}
