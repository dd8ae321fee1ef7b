//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package main

import "io"

// isTerminal reports false: terminal detection is not implemented here.
func isTerminal(io.Reader) bool { return false }
