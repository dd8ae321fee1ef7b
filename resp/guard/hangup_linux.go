package guard

import (
	"time"

	"golang.org/x/sys/unix"
)

// TCP states of include/net/tcp_states.h.
const (
	tcpClose     = 7 // reset (or never connected)
	tcpCloseWait = 8 // the peer sent its FIN
)

// watchHangup waits on the runtime's network poller (a RawConn.Read whose
// function never reads) and looks at the TCP state each time the socket
// becomes readable: the poller is edge-triggered, so it wakes the watch once
// per arrival of bytes, a FIN or a reset, and not again for bytes left
// unread. The first look is made right away, after RawConn.Read has reset
// the poller's record of earlier arrivals, so a hang-up before the watch
// began is not missed. stop ends the wait with a read deadline in the past.
func watchHangup(sock socket, onHangup func()) (stop func()) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		hungUp := false
		err := rc.Read(func(fd uintptr) bool {
			hungUp = closedState(fd)
			return hungUp
		})
		if err == nil && hungUp {
			onHangup()
		}
	}()
	return func() {
		_ = sock.SetReadDeadline(time.Unix(1, 0))
		<-done
		_ = sock.SetReadDeadline(time.Time{})
	}
}

// closedState reads the TCP state of the socket fd (TCP_INFO): the peer has
// hung up once it sent its FIN or a reset, even while data it sent before
// waits unread (a TLS close alert, pipelined requests), which a peek would
// return instead of the end of the stream. It answers false when the state
// cannot be read.
func closedState(fd uintptr) bool {
	info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return false
	}
	return info.State == tcpCloseWait || info.State == tcpClose
}
