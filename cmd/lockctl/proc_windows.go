package main

import (
	"os"
	"syscall"
)

// childAttr returns nil: Windows has no process groups to signal, and
// nothing signals the command when lockctl dies.
func childAttr(bool) *syscall.SysProcAttr { return nil }

// signalCommand stops the command for SIGTERM and SIGKILL: Windows
// delivers no other signal to a process, so a stop is a kill (the lock is
// released once it has exited, as on Unix). Other signals are dropped.
func signalCommand(p *os.Process, _ bool, sig syscall.Signal) {
	if sig == syscall.SIGTERM || sig == syscall.SIGKILL {
		p.Kill()
	}
}
