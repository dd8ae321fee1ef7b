package server

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// forwardMagic is the first byte of a connection that carries forwarded
// client requests instead of raft RPCs. Raft's own connections start with an
// RPC type byte (0-3), so the two share the raft port.
const forwardMagic = 0xF7

// firstByteTimeout bounds how long an accepted connection may stay silent
// before its protocol is known.
const firstByteTimeout = 10 * time.Second

// streamLayer is a plain TCP raft.StreamLayer that advertises the address
// given by the operator verbatim ("localhost:9001" as in --peers), where
// raft's own TCP transport insists on a resolved IP. It also demultiplexes
// the raft port: connections opened with forwardMagic go to onForward.
//
// It keeps track of the raft connections it accepted, so that the node can
// wait for raft's handlers of them to end (drain) before it closes the log
// store: hashicorp/raft handles heartbeats on the connection's goroutine,
// which neither raft.Shutdown nor the transport's Close waits for, and a
// heartbeat that passed raft's shutdown check may still write the term to
// the stable store or read the log, where a closed store's error makes
// raft panic.
type streamLayer struct {
	ln        net.Listener
	advertise advertiseAddr
	raftConns chan net.Conn
	onForward func(net.Conn, *bufio.Reader)
	dialMap   map[string]string
	done      chan struct{}
	closeOnce sync.Once

	mu       sync.Mutex
	accepted map[*peekedConn]struct{} // raft connections not yet closed by their handler
	handlers sync.WaitGroup           // one per entry of accepted
	drained  bool                     // drain has begun: connections are refused
}

type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

func newStreamLayer(bind, advertise string, dialMap map[string]string, onForward func(net.Conn, *bufio.Reader)) (*streamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft listener: %w", err)
	}
	if advertise == "" {
		advertise = ln.Addr().String()
	}
	s := &streamLayer{ln: ln, advertise: advertiseAddr(advertise), raftConns: make(chan net.Conn),
		onForward: onForward, dialMap: dialMap, done: make(chan struct{}), accepted: make(map[*peekedConn]struct{})}
	go s.acceptLoop()
	return s, nil
}

func (s *streamLayer) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go s.route(c)
	}
}

// route reads the first byte of c and hands it to raft or to forwarding.
func (s *streamLayer) route(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(firstByteTimeout))
	br := bufio.NewReader(c)
	b, err := br.Peek(1)
	c.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return
	}
	if b[0] == forwardMagic {
		br.Discard(1)
		s.onForward(c, br)
		return
	}
	pc := &peekedConn{Conn: c, r: br, layer: s}
	s.mu.Lock()
	if s.drained {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.accepted[pc] = struct{}{}
	s.handlers.Add(1)
	s.mu.Unlock()
	select {
	case s.raftConns <- pc:
	case <-s.done:
		pc.Close()
	}
}

// handlerDone is called once per accepted raft connection, when it is
// closed through the connection raft's handler was given.
func (s *streamLayer) handlerDone(pc *peekedConn) {
	s.mu.Lock()
	delete(s.accepted, pc)
	s.mu.Unlock()
	s.handlers.Done()
}

// drain closes the sockets of the raft connections still open, so that
// their handlers' reads fail, and waits up to timeout for every handler to
// return (each closes its connection when it does); connections routed
// from then on are closed at once. It returns errDrainTimeout if some
// handler did not return in time.
func (s *streamLayer) drain(timeout time.Duration) error {
	s.mu.Lock()
	s.drained = true
	for pc := range s.accepted {
		pc.Conn.Close() // the socket only: the handler's own Close marks it done
	}
	s.mu.Unlock()
	finished := make(chan struct{})
	go func() {
		s.handlers.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		return nil
	case <-time.After(timeout):
		return errDrainTimeout
	}
}

// errDrainTimeout means a raft connection handler did not return in time
// while the node closed.
var errDrainTimeout = errors.New("raft connection handlers still running")

// Accept returns the next raft connection.
func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.raftConns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting connections.
func (s *streamLayer) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		err = s.ln.Close()
	})
	return err
}

// Dial connects to a peer's raft address.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return dialPeer(s.dialMap, string(address), timeout)
}

// dialPeer connects to another node's raft port, through the test-only
// dial map when one is set.
func dialPeer(dialMap map[string]string, addr string, timeout time.Duration) (net.Conn, error) {
	if to, ok := dialMap[addr]; ok {
		addr = to
	}
	return net.DialTimeout("tcp", addr, timeout)
}

// Addr returns the advertised address.
func (s *streamLayer) Addr() net.Addr { return s.advertise }

// peekedConn is a raft connection whose first bytes were buffered while
// routing.
type peekedConn struct {
	net.Conn
	r         *bufio.Reader
	layer     *streamLayer
	closeOnce sync.Once
	closeErr  error
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Close closes the socket and tells the layer this connection's handler is
// done; only the first call has an effect.
func (c *peekedConn) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.Conn.Close()
		c.layer.handlerDone(c)
	})
	return c.closeErr
}
