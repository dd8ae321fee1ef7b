//go:build unix && !linux

package chaos

import "syscall"

// procAttr is empty where the kernel cannot tie a child's life to ours.
func procAttr() *syscall.SysProcAttr { return nil }
