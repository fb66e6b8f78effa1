// Package proc tells whether processes still run on this host. Zombies do
// not count: a killed runner's children are reparented, and an init that
// does not reap (a container's) leaves them as zombies, which kill(2) with
// signal 0 still finds.
package proc

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Alive reports whether process pid runs (and is not a zombie).
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		if noProc() {
			return signalable(pid)
		}
		return false
	}
	state, _, ok := parseStat(b)
	return ok && running(state)
}

// GroupAlive reports whether any process of process group pgid runs.
func GroupAlive(pgid int) bool {
	if pgid <= 0 {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return signalable(-pgid)
	}
	want := strconv.Itoa(pgid)
	for _, e := range entries {
		if c := e.Name()[0]; c < '0' || c > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if state, pgrp, ok := parseStat(b); ok && running(state) && pgrp == want {
			return true
		}
	}
	return false
}

// parseStat reads the state and process group of a /proc/PID/stat line:
// "pid (comm) state ppid pgrp ...", where comm may hold spaces and parens.
func parseStat(b []byte) (state, pgrp string, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", "", false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 {
		return "", "", false
	}
	return f[0], f[2], true
}

func running(state string) bool { return state != "Z" && state != "X" }

// noProc reports that /proc is not there to ask (not Linux, or not mounted).
func noProc() bool {
	_, err := os.Stat("/proc/self/stat")
	return err != nil
}

// signalable is the fallback without /proc: the process or group exists,
// zombies included. EPERM means it exists under another user.
func signalable(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
