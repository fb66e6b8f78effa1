package proc

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func TestAliveAndZombie(t *testing.T) {
	if noProc() {
		t.Skip("no /proc on this system: Alive falls back to kill(2), which sees zombies")
	}
	if !Alive(os.Getpid()) {
		t.Fatal("this process is not alive")
	}
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer cmd.Wait()
	if !Alive(pid) || !GroupAlive(pid) {
		t.Fatal("a running child (and its group) is not alive")
	}
	// Killed and not yet reaped: a zombie, which kill(2) still finds.
	_ = syscall.Kill(pid, syscall.SIGKILL)
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		if st, _, _ := parseStat(b); st == "Z" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child did not become a zombie")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !signalable(pid) {
		t.Fatal("kill(2) should still find the zombie (the trap this package avoids)")
	}
	if Alive(pid) || GroupAlive(pid) {
		t.Error("a zombie counts as alive")
	}
}

func TestParseStat(t *testing.T) {
	state, pgrp, ok := parseStat([]byte("42 (a (weird) name) S 1 4242 4242 0 -1"))
	if !ok || state != "S" || pgrp != "4242" {
		t.Errorf("parseStat = %q %q %v", state, pgrp, ok)
	}
	if _, _, ok := parseStat([]byte("garbage")); ok {
		t.Error("garbage parsed")
	}
	if Alive(0) || GroupAlive(0) || Alive(-1) {
		t.Error("pid 0 or negative is alive")
	}
}
