package guard

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// TCP states of include/net/tcp_states.h.
const (
	tcpClose     = 7 // reset (or never connected)
	tcpCloseWait = 8 // the peer sent its FIN
)

// peerClosed reads the socket's TCP state (TCP_INFO): the peer has hung up
// once it sent its FIN or a reset, even while data it sent before waits
// unread (a TLS close alert, pipelined requests), which a peek would
// return instead of the end of the stream.
func peerClosed(sc syscall.Conn) bool {
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var state uint8
	var infoErr error
	if err := rc.Control(func(fd uintptr) {
		var info *unix.TCPInfo
		if info, infoErr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); infoErr == nil {
			state = info.State
		}
	}); err != nil || infoErr != nil {
		return false
	}
	return state == tcpCloseWait || state == tcpClose
}
