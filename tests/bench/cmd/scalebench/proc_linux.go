package main

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel kill the node if scalebench dies first.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
