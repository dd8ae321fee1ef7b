//go:build unix && !linux

package main

import "syscall"

// childAttr returns the command's process attributes: its own process
// group when ownGroup. (Only Linux can signal the command when lockctl
// dies.)
func childAttr(ownGroup bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: ownGroup}
}
