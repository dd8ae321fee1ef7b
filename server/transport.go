package server

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/distlock/distlock/raftconn"
	"github.com/distlock/distlock/tlsconf"
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
// Its raft connections pass through a raftconn.Tracker, so that the node
// can wait for raft's handlers of them to end (drain) before it closes the
// log store (the raftconn package says why).
type streamLayer struct {
	ln        net.Listener
	advertise advertiseAddr
	raftConns chan net.Conn
	onForward func(net.Conn, *bufio.Reader)
	dial      peerDialer
	done      chan struct{}
	closeOnce sync.Once
	tracker   raftconn.Tracker

	// admit decides, from the sender named in the header of a raft
	// connection's first RPC and the cluster id the connection announced
	// ("" if none), whether the connection reaches raft. Routing waits for
	// it (setAdmit), so no RPC reaches raft before it is known.
	admit      func(sender, cluster string) bool
	admitReady chan struct{}
	// cluster returns the id that this node's raft connections announce
	// ("": none); set with admit.
	cluster func() string
}

type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

func newStreamLayer(bind, advertise string, dial peerDialer, onForward func(net.Conn, *bufio.Reader)) (*streamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft listener: %w", err)
	}
	if advertise == "" {
		advertise = ln.Addr().String()
	}
	if dial.tls != nil {
		// Peers only: mutual TLS. The handshake runs on route's first
		// read, under its deadline.
		ln = tls.NewListener(ln, dial.tls.PeerServer())
	}
	s := &streamLayer{ln: ln, advertise: advertiseAddr(advertise), raftConns: make(chan net.Conn),
		onForward: onForward, dial: dial, done: make(chan struct{}), admitReady: make(chan struct{})}
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

// setAdmit sets the admission check of raft connections (see admit) and
// the cluster id they announce when dialed; call it once.
func (s *streamLayer) setAdmit(admit func(sender, cluster string) bool, cluster func() string) {
	s.admit, s.cluster = admit, cluster
	close(s.admitReady)
}

// route reads the first byte of c and hands it to raft or to forwarding. A
// raft connection may open with the sender's cluster id (clusterMagic); it
// reaches raft only if admit lets its first RPC's sender, of that cluster,
// in.
func (s *streamLayer) route(c net.Conn) {
	c.SetDeadline(time.Now().Add(firstByteTimeout)) // the TLS handshake too
	br := bufio.NewReader(c)
	b, err := br.Peek(1)
	if err != nil {
		c.Close()
		return
	}
	cluster := ""
	if b[0] == clusterMagic {
		br.Discard(1)
		if cluster, err = readClusterHello(br); err == nil {
			b, err = br.Peek(1)
		}
		if err != nil || b[0] == forwardMagic || b[0] == clusterMagic {
			c.Close()
			return
		}
	}
	if b[0] == forwardMagic {
		c.SetDeadline(time.Time{})
		br.Discard(1)
		s.onForward(c, br)
		return
	}
	// Replay to raft what was read to find the sender.
	seen := bytes.NewBuffer([]byte{b[0]})
	br.Discard(1)
	sender, err := rpcSender(io.TeeReader(br, seen))
	if err == nil {
		select {
		case <-s.admitReady:
		case <-s.done:
			err = net.ErrClosed
		case <-time.After(firstByteTimeout):
			err = errors.New("raft is not running")
		}
	}
	c.SetDeadline(time.Time{})
	if err != nil || !s.admit(sender, cluster) {
		c.Close()
		return
	}
	tc, err := s.tracker.Track(&peekedConn{Conn: c, r: io.MultiReader(seen, br)}, cluster)
	if err != nil {
		return // draining: Track closed it
	}
	select {
	case s.raftConns <- tc:
	case <-s.done:
		tc.Close()
	}
}

// closeOtherClusters closes the raft connections admitted earlier that
// announced another cluster id than id, or none, and returns how many.
func (s *streamLayer) closeOtherClusters(id string) int {
	return s.tracker.CloseUnless(func(announced string) bool { return announced == id })
}

// drain closes the sockets of the raft connections still open and waits up
// to timeout for their handlers to close them (raftconn.Tracker.Drain);
// connections routed from then on are closed at once.
func (s *streamLayer) drain(timeout time.Duration) error {
	return s.tracker.Drain(timeout)
}

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

// Dial connects to a peer's raft address and, once this node knows its
// cluster's id, announces it.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := s.dial.dial(string(address), timeout)
	if err != nil {
		return nil, err
	}
	id := ""
	select {
	case <-s.admitReady:
		id = s.cluster()
	default:
	}
	if id == "" {
		return c, nil
	}
	c.SetWriteDeadline(time.Now().Add(timeout))
	_, err = c.Write(appendClusterHello(nil, id))
	c.SetWriteDeadline(time.Time{})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("announce the cluster id to %s: %w", address, err)
	}
	return c, nil
}

// peerDialer connects to other nodes' raft ports, for raft and for
// forwarding: over TLS when the node has it (the name checked is the
// host of the address dialed), and through the test-only dial map when
// one is set.
type peerDialer struct {
	dialMap map[string]string
	tls     *tlsconf.Config
}

func (d peerDialer) dial(addr string, timeout time.Duration) (net.Conn, error) {
	to := addr
	if m, ok := d.dialMap[addr]; ok {
		to = m
	}
	if d.tls == nil {
		return net.DialTimeout("tcp", to, timeout)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("peer address %q: %w", addr, err)
	}
	td := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: d.tls.PeerClient(host)}
	return td.Dial("tcp", to) // the timeout bounds the handshake too
}

// Addr returns the advertised address.
func (s *streamLayer) Addr() net.Addr { return s.advertise }

// peekedConn is a raft connection whose first bytes were read while
// routing (r replays them, then reads the rest).
type peekedConn struct {
	net.Conn
	r io.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// NetConn returns the connection under the buffer (a *tls.Conn under
// TLS), so that a drain can close the socket itself (raftconn).
func (c *peekedConn) NetConn() net.Conn { return c.Conn }
