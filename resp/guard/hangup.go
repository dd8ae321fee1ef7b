package guard

import (
	"net"
	"syscall"
)

// HungUp reports whether the client at the far end of nc (a connection the
// Listener accepted, plain or TLS) has closed its side of the TCP
// connection or reset it, whatever bytes it sent before that are still
// unread. A server that is not reading (a command blocks while redcon waits
// for its reply) learns of a client that went away only so: Redis unblocks
// a blocked client that disconnects, and so must a LOCK.ACQUIRE ... WAIT,
// or the lock could be handed to a client that is gone. It answers false
// where it cannot tell (not a TCP socket, a closed one, or not Linux).
func HungUp(nc net.Conn) bool {
	if c, ok := nc.(*conn); ok {
		nc = c.Conn
	}
	for {
		inner, ok := nc.(interface{ NetConn() net.Conn }) // *tls.Conn
		if !ok {
			break
		}
		nc = inner.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	return peerClosed(sc)
}
