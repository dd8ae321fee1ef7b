package main

import (
	"runtime"
	"syscall"
)

// childAttr returns the command's process attributes: its own process
// group when ownGroup, and SIGTERM when lockctl dies (even by SIGKILL),
// since nothing renews the lease then.
func childAttr(ownGroup bool) *syscall.SysProcAttr {
	// Pdeathsig fires when the thread that started the child exits, not
	// the process: keep this goroutine on its thread for good. lockctl
	// starts one command and exits after it.
	runtime.LockOSThread()
	return &syscall.SysProcAttr{Setpgid: ownGroup, Pdeathsig: syscall.SIGTERM}
}
