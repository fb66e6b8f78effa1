package main

import (
	"runtime"
	"syscall"
)

// ioctlGetTermios reads a terminal's attributes.
const ioctlGetTermios = syscall.TCGETS

// flushInput discards what was typed on the terminal fd and not read yet
// (tcflush(fd, TCIFLUSH)).
func flushInput(fd uintptr) {
	syscall.Syscall(syscall.SYS_IOCTL, fd, tcflsh(), syscall.TCIFLUSH)
}

// tcflsh is the TCFLSH request, which the syscall package does not define.
func tcflsh() uintptr {
	switch runtime.GOARCH {
	case "mips", "mipsle", "mips64", "mips64le":
		return 0x5407
	case "ppc64", "ppc64le":
		return 0x2000741f
	}
	return 0x540b
}
