//go:build darwin || freebsd || netbsd || openbsd || dragonfly

package main

import (
	"syscall"
	"unsafe"
)

// ioctlGetTermios reads a terminal's attributes.
const ioctlGetTermios = syscall.TIOCGETA

// flushInput discards what was typed on the terminal fd and not read yet
// (tcflush(fd, TCIFLUSH)).
func flushInput(fd uintptr) {
	what := int32(1) // FREAD
	syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCFLUSH, uintptr(unsafe.Pointer(&what)))
}
