//go:build !linux

package main

import "os/exec"

// setDeathSignal is Linux-only (Pdeathsig); elsewhere the script's trap
// stops the node.
func setDeathSignal(*exec.Cmd) {}
