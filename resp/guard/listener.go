package guard

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// maxClientsReply is Redis's reply to a connection over maxclients.
const maxClientsReply = "-ERR max number of clients reached\r\n"

// replyTimeout bounds the write of a rejection or protocol error reply to a
// client that is being disconnected.
const replyTimeout = time.Second

// readSize is how many bytes a guarded connection reads from the network at
// once.
const readSize = 4 << 10

// Listener returns a listener whose connections validate their input against
// lim (see the package comment) and which accepts at most maxClients
// connections at a time (0 or less means no limit). A connection over the
// limit is sent "-ERR max number of clients reached" and closed; it is never
// returned by Accept. Closing the returned listener closes ln.
func Listener(ln net.Listener, lim Limits, maxClients int) net.Listener {
	return &listener{Listener: ln, lim: lim.WithDefaults(), max: int64(maxClients)}
}

type listener struct {
	net.Listener
	lim    Limits
	max    int64
	active atomic.Int64
}

// Accept waits for and returns the next connection under the limit.
func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if n := l.active.Add(1); l.max > 0 && n > l.max {
			l.active.Add(-1)
			// Reply in the background so that a client that does not
			// read (or a TLS handshake) cannot stall Accept.
			go reject(nc)
			continue
		}
		return newConn(nc, l.lim, l), nil
	}
}

// newConn guards nc with lim; l is the listener that counts it, or nil.
func newConn(nc net.Conn, lim Limits, l *listener) *conn {
	c := &conn{Conn: nc, p: newParser(lim), l: l}
	if lim.AuthRequired {
		c.p.authed = &c.authed
	}
	return c
}

// SetAuthenticated tells the guard of nc, a connection its [Listener]
// accepted, whether its client has authenticated, which lifts or restores
// the unauthenticated bounds of [Limits.AuthRequired]. It applies to the
// requests the guard has not parsed yet: a request over the bounds that
// the guard paused on is decided at the next Read, so the server must call
// it before it reads again (redcon runs every command it has read before it
// reads again); requests the guard already passed under the looser bounds
// (after a RESET, say, in the same packet) stay passed. It does nothing to
// other connections.
func SetAuthenticated(nc net.Conn, authed bool) {
	if c, ok := nc.(*conn); ok {
		c.authed.Store(authed)
	}
}

func reject(nc net.Conn) {
	// Read too: over TLS, the Write first runs the handshake, which waits
	// for the client's hello.
	_ = nc.SetDeadline(time.Now().Add(replyTimeout))
	_, _ = nc.Write([]byte(maxClientsReply))
	_ = nc.Close()
}

// conn is a connection whose Read passes only validated bytes.
type conn struct {
	net.Conn
	p *parser
	l *listener // nil when not counted

	rbuf    []byte // read area
	unfed   []byte // bytes of rbuf the parser has not consumed (it paused)
	out     []byte // output area, reused once pending is drained
	pending []byte // validated bytes not yet returned by Read
	rerr    error  // read error to return once pending is drained
	replied bool   // the protocol error reply has been written
	authed  atomic.Bool

	closeOnce sync.Once
	closeErr  error
}

// Read returns validated bytes. After a violation it returns the bytes of the
// complete commands before it, then, on the next call, writes the protocol
// error reply to the client and returns the *ProtocolError. A request over
// the unauthenticated bounds is decided the same way, on the call after the
// bytes before it were returned: by then the server has run them, and an
// AUTH among them lets the request through.
//
// Read must not be called concurrently with itself (net.Conn allows it, but
// a command stream has one reader).
func (c *conn) Read(b []byte) (int, error) {
	for {
		if len(c.pending) > 0 {
			n := copy(b, c.pending)
			c.pending = c.pending[n:]
			return n, nil
		}
		if c.p.held != nil {
			c.p.resume()
		}
		if c.p.err != nil {
			if !c.replied {
				c.replied = true
				_ = c.Conn.SetWriteDeadline(time.Now().Add(replyTimeout))
				_, _ = c.Conn.Write([]byte("-ERR " + c.p.err.Error() + "\r\n"))
			}
			return 0, c.p.err
		}
		if len(c.unfed) > 0 {
			c.feed(c.unfed)
			continue
		}
		if c.rerr != nil {
			return 0, c.rerr
		}
		if len(b) == 0 {
			return 0, nil
		}
		if c.rbuf == nil {
			c.rbuf = make([]byte, readSize)
			if err := c.handshake(); err != nil {
				c.rerr = err
				continue
			}
		}
		n, err := c.Conn.Read(c.rbuf)
		c.feed(c.rbuf[:n])
		c.rerr = err
	}
}

// feed passes src, which is c.unfed or fresh bytes in c.rbuf, through the
// parser into c.pending and keeps what it did not consume in c.unfed.
func (c *conn) feed(src []byte) {
	var n int
	c.out, n = c.p.feed(c.out[:0], src)
	c.pending = c.out
	c.unfed = src[n:]
	if c.p.err != nil {
		c.unfed = nil
	}
	if cap(c.out) > 4*readSize {
		c.out = nil // do not keep the buffer of a large inline line
	}
}

// handshakeTimeout bounds a TLS connection's handshake, as net/http's
// ReadHeaderTimeout does: a client that connects and never says hello is
// dropped instead of holding a connection slot for good. A variable for
// tests.
var handshakeTimeout = 10 * time.Second

// handshake runs the TLS handshake of a TLS connection, under
// handshakeTimeout, before its first read.
func (c *conn) handshake() error {
	hs, ok := c.Conn.(interface{ HandshakeContext(context.Context) error })
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	return hs.HandshakeContext(ctx)
}

// closeAlertTimeout bounds the close alert a TLS connection sends as it
// closes: to a client that does not read, crypto/tls would wait 5 s, and
// redcon closes its connections one after another when the server stops.
const closeAlertTimeout = 100 * time.Millisecond

// Close closes the connection; only the first call has an effect and
// releases the connection's slot.
func (c *conn) Close() error {
	c.closeOnce.Do(func() {
		if raw, ok := c.Conn.(interface{ NetConn() net.Conn }); ok {
			t := time.AfterFunc(closeAlertTimeout, func() { raw.NetConn().Close() })
			defer t.Stop()
		}
		c.closeErr = c.Conn.Close()
		if c.l != nil {
			c.l.active.Add(-1)
		}
	})
	return c.closeErr
}
