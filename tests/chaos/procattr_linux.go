package chaos

import "syscall"

// procAttr makes the kernel kill a node if the test process dies (a test
// timeout panics past every deferred cleanup).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
