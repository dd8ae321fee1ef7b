//go:build unix

package main

import (
	"os"
	"syscall"
)

// signalCommand sends sig to the command's process group when group (the
// command leads one, see childAttr), else to the command alone.
func signalCommand(p *os.Process, group bool, sig syscall.Signal) {
	if group {
		syscall.Kill(-p.Pid, sig)
		return
	}
	p.Signal(sig)
}
