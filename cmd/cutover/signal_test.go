package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgcutover/cutover/engine/journal"
)

// buildCutover builds the real command: signal handling lives in main,
// which the in-process scripts do not exercise.
func buildCutover(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "cutover")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// started is a running cutover process.
type started struct {
	t      *testing.T
	dir    string
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   chan struct{}
	err    error
}

// startRun runs `cutover run plan.yaml` for plan in a fresh directory, in
// its own process group.
func startRun(t *testing.T, bin, plan string) *started {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "plan.yaml"), []byte(plan), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &started{t: t, dir: dir, done: make(chan struct{})}
	s.cmd = exec.Command(bin, "run", "plan.yaml", "--journal-dir", filepath.Join(dir, "journal"))
	s.cmd.Dir = dir
	s.cmd.Env = append(os.Environ(), "NO_COLOR=1")
	s.cmd.Stdout, s.cmd.Stderr = &s.stdout, &s.stderr
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := s.cmd.Process.Pid
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		// Leave nothing behind, whatever the test saw: cutover's group
		// and the groups of the steps it started.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		for _, f := range []string{"main.pid", "rollback.pid"} {
			if pgid, ok := s.readPID(f); ok {
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
			}
		}
		<-s.done
	})
	return s
}

// readPID reads a pid a step wrote into the run directory.
func (s *started) readPID(name string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, err == nil && pid > 0
}

// waitFor polls until a step has written the pid file name, failing if the
// run ends first. It returns the pid, which is also the step's process
// group.
func (s *started) waitFor(name string) int {
	s.t.Helper()
	for {
		if pid, ok := s.readPID(name); ok {
			return pid
		}
		select {
		case <-s.done:
			s.t.Fatalf("the run ended before %s appeared: %v\nstdout:\n%s\nstderr:\n%s", name, s.err, &s.stdout, &s.stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (s *started) interrupt() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(os.Interrupt); err != nil {
		s.t.Fatalf("SIGINT: %v", err)
	}
}

// wait waits for the run to end and returns its exit code.
func (s *started) wait() int {
	s.t.Helper()
	<-s.done
	var ee *exec.ExitError
	if s.err != nil && !errors.As(s.err, &ee) {
		s.t.Fatalf("wait: %v", s.err)
	}
	return s.cmd.ProcessState.ExitCode()
}

func (s *started) exists(name string) bool {
	_, err := os.Stat(filepath.Join(s.dir, name))
	return err == nil
}

// groupGone reports whether no live process is left in process group
// pgid. A zombie (dead, waiting for its parent or init to reap it) does not
// count.
func groupGone(t *testing.T, pgid int) bool {
	t.Helper()
	if errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH) {
		return true
	}
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil || len(stats) == 0 {
		return false
	}
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) < 3 || fields[2] != strconv.Itoa(pgid) {
			continue
		}
		if fields[0] != "Z" {
			t.Logf("still alive in group %d: %s", pgid, b)
			return false
		}
	}
	return true
}

// journalStatus returns the status the run's journal ends with, after
// checking its hash chain.
func (s *started) journalStatus() string {
	s.t.Helper()
	dir := filepath.Join(s.dir, "journal")
	ids, err := journal.List(dir)
	if err != nil || len(ids) != 1 {
		s.t.Fatalf("journals in %s: %v %v", dir, ids, err)
	}
	path := filepath.Join(dir, ids[0]+journal.Ext)
	rep, err := journal.Verify(path)
	if err != nil || !rep.OK || rep.Torn != nil {
		s.t.Fatalf("journal does not verify: %v %+v", err, rep)
	}
	recs, _, err := journal.Read(path)
	if err != nil {
		s.t.Fatal(err)
	}
	last := recs[len(recs)-1]
	if last.Type != "run.end" {
		s.t.Fatalf("journal ends with %s, not run.end", last.Type)
	}
	st, _ := strconv.Unquote(string(last.Fields["status"]))
	return st
}

// pidStep is a shell step body that records its pid (its own process
// group: run-command starts each step in a new one) and then becomes sleep.
// It starts no other process, so the group is that one process.
func pidStep(file string) string {
	return `[sh, -c, 'echo $$ > ` + file + `; exec sleep 30']`
}

// TestSignals runs the built command and interrupts it as an operator at a
// terminal would, with Ctrl-C.
func TestSignals(t *testing.T) {
	bin := buildCutover(t)
	t.Run("InterruptStopsTheStepAndRollsBack", func(t *testing.T) { testInterruptRollsBack(t, bin) })
	t.Run("SecondInterruptAbortsTheRollback", func(t *testing.T) { testSecondInterruptAborts(t, bin, true) })
	// The aborted rollback step is the last one in the saga: the run was
	// still aborted, not merely rollback-failed.
	t.Run("SecondInterruptDuringLastRollbackAborts", func(t *testing.T) {
		testSecondInterruptAborts(t, bin, false)
	})
}

func testInterruptRollsBack(t *testing.T, bin string) {
	s := startRun(t, bin, `apiVersion: cutover/v1
kind: Plan
name: interrupt
version: 1
steps:
  - id: first
    type: run-command
    with: {argv: [touch, first-ran]}
    rollback:
      - type: run-command
        with: {argv: [touch, rollback-ran]}
  - id: wait
    type: run-command
    with: {argv: `+pidStep("main.pid")+`}
    rollback:
      - type: run-command
        with: {argv: [touch, wait-rollback-ran]}
  - id: never
    type: run-command
    with: {argv: [touch, never-ran]}
`)
	pgid := s.waitFor("main.pid")
	s.interrupt()
	code := s.wait()
	out, errOut := s.stdout.String(), s.stderr.String()
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "run rolled-back (exit 1)") {
		t.Errorf("stdout does not say rolled-back:\n%s", out)
	}
	if !strings.Contains(errOut, "interrupt: stopping the running step and rolling back") {
		t.Errorf("stderr does not acknowledge the signal:\n%s", errOut)
	}
	if !s.exists("rollback-ran") || !s.exists("wait-rollback-ran") {
		t.Errorf("rollbacks did not run (first: %v, wait: %v)\nstdout:\n%s", s.exists("rollback-ran"), s.exists("wait-rollback-ran"), out)
	}
	if s.exists("never-ran") {
		t.Errorf("a step after the interrupted one ran")
	}
	if !groupGone(t, pgid) {
		t.Errorf("process group %d of the interrupted step is still alive", pgid)
	}
	if st := s.journalStatus(); st != "rolled-back" {
		t.Errorf("journal ends with status %q, want rolled-back", st)
	}
}

// abortPlan is a plan whose step wait sleeps until interrupted and whose
// rollback of step second sleeps as well. With later, step first comes
// before them, with a rollback that must not run once the run is aborted.
func abortPlan(later bool) string {
	plan := `apiVersion: cutover/v1
kind: Plan
name: abort
version: 1
steps:
`
	if later {
		plan += `  - id: first
    type: run-command
    with: {argv: ["true"]}
    rollback:
      - type: run-command
        with: {argv: [touch, first-rollback-ran]}
`
	}
	return plan + `  - id: second
    type: run-command
    with: {argv: ["true"]}
    rollback:
      - type: run-command
        with: {argv: ` + pidStep("rollback.pid") + `}
  - id: wait
    type: run-command
    with: {argv: ` + pidStep("main.pid") + `}
finally:
  - type: run-command
    with: {argv: [touch, finally-ran]}
`
}

func testSecondInterruptAborts(t *testing.T, bin string, later bool) {
	s := startRun(t, bin, abortPlan(later))
	s.waitFor("main.pid")
	s.interrupt()
	pgid := s.waitFor("rollback.pid")
	s.interrupt()
	code := s.wait()
	out, errOut := s.stdout.String(), s.stderr.String()
	if code != 3 {
		t.Fatalf("exit %d, want 3\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "run aborted (exit 3)") {
		t.Errorf("stdout does not say aborted:\n%s", out)
	}
	if !strings.Contains(errOut, "interrupt again: aborting now") {
		t.Errorf("stderr does not acknowledge the second signal:\n%s", errOut)
	}
	if s.exists("first-rollback-ran") {
		t.Errorf("a rollback step ran after the abort")
	}
	if s.exists("finally-ran") {
		t.Errorf("finally ran after the abort")
	}
	if !groupGone(t, pgid) {
		t.Errorf("process group %d of the aborted rollback step is still alive", pgid)
	}
	if st := s.journalStatus(); st != "aborted" {
		t.Errorf("journal ends with status %q, want aborted", st)
	}
}
