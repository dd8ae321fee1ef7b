package main

import "golang.org/x/sys/unix"

// ioctlReadTermios is the ioctl that fails on anything but a terminal.
const ioctlReadTermios = unix.TCGETS
