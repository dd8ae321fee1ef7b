//go:build !linux

package guard

// watchHangup cannot tell on this system: a client that hangs up is noticed
// only when the server next reads or writes.
func watchHangup(socket, func()) (stop func()) { return func() {} }
