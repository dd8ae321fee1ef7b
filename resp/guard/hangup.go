package guard

import (
	"net"
	"syscall"
)

// WatchHangup calls onHangup, from a goroutine of its own, if the client at
// the far end of nc (a connection the Listener accepted, plain or TLS)
// closes its side of the TCP connection or resets it before stop is called,
// whatever bytes it sent before that are still unread. onHangup is never
// called once stop has returned, and stop leaves nc as it found it (nc must
// have no read deadline set, and must not be read until stop returns).
//
// A server that is not reading (a command blocks while redcon waits for its
// reply) learns of a client that went away only so: Redis unblocks a
// blocked client that disconnects, and so must a LOCK.ACQUIRE ... WAIT, or
// the lock could be handed to a client that is gone. The watch costs
// nothing while the client is quiet: it parks on the runtime's network
// poller, which wakes it when bytes, a FIN or a reset arrive, and only then
// reads the socket's TCP state. Where it cannot tell (not a TCP socket, or
// not Linux) it does nothing.
func WatchHangup(nc net.Conn, onHangup func()) (stop func()) {
	sock := tcpSocket(nc)
	if sock == nil {
		return func() {}
	}
	return watchHangup(sock, onHangup)
}

// socket is a connection whose file descriptor can be reached.
type socket interface {
	net.Conn
	syscall.Conn
}

// tcpSocket returns the socket beneath nc's guard and TLS layers, or nil.
func tcpSocket(nc net.Conn) socket {
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
	sock, _ := nc.(socket)
	return sock
}
