package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgcutover/cutover/engine"
	"github.com/pgcutover/cutover/engine/journal"
	"github.com/pgcutover/cutover/engine/lease"
)

// resumePlan appends what each step and rollback does to $LOG, so that a
// test can see exactly what a resume ran. Step d fails when FAIL_D is set.
const resumePlan = `apiVersion: cutover/v1
kind: Plan
name: resume
version: 1
params:
  log: {type: string, required: true}
steps:
  - id: a
    type: run-command
    with: {argv: ['echo do a >> "$LOG"'], shell: true, env: {LOG: "${{ params.log }}"}}
    rollback:
      - type: run-command
        with: {argv: ['echo undo a >> "$LOG"'], shell: true, env: {LOG: "${{ params.log }}"}}
  - id: b
    type: run-command
    idempotent: true
    with: {argv: ['echo do b >> "$LOG"'], shell: true, env: {LOG: "${{ params.log }}"}}
    rollback:
      - type: run-command
        with: {argv: ['echo undo b >> "$LOG"'], shell: true, env: {LOG: "${{ params.log }}"}}
  - id: check
    type: assert
    assert: ["true"]
  - id: c
    type: run-command
    with: {argv: ['echo do c >> "$LOG"'], shell: true, env: {LOG: "${{ params.log }}"}}
    rollback:
      - type: run-command
        with: {argv: ['echo undo c >> "$LOG"'], shell: true, env: {LOG: "${{ params.log }}"}}
  - id: d
    type: run-command
    with: {argv: ['echo do d >> "$LOG"; test -z "$FAIL_D"'], shell: true, env: {LOG: "${{ params.log }}"}}
finally:
  - type: run-command
    with: {argv: ['echo finally >> "$LOG"'], shell: true, env: {LOG: "${{ params.log }}"}}
`

// fullRun runs resumePlan to its end and returns the journal's lines.
func fullRun(t *testing.T, failD bool) (*engine.Program, [][]byte, string) {
	t.Helper()
	prog := compile(t, resumePlan)
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	if failD {
		t.Setenv("FAIL_D", "1")
	}
	res := engine.Run(context.Background(), prog, engine.Options{Params: map[string]any{"log": log}, JournalDir: dir, Version: "test"})
	want := engine.StatusSucceeded
	if failD {
		want = engine.StatusRolledBack
	}
	if res.Status != want {
		t.Fatalf("full run: %s (%v), want %s", res.Status, res.Err, want)
	}
	os.Unsetenv("FAIL_D")
	data, err := os.ReadFile(res.Journal)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	return prog, lines[:len(lines)-1], log
}

// crashedAt writes the first n lines of a journal, as a runner killed after
// writing them leaves it, plus a torn half line, and returns its path.
func crashedAt(t *testing.T, lines [][]byte, n int) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "20261124T000000000Z-000000"+journal.Ext)
	data := bytes.Join(lines[:n], nil)
	if n < len(lines) {
		data = append(data, lines[n][:len(lines[n])/2]...)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func recordType(line []byte) (typ, step, phase string) {
	var r engine.Record
	_ = json.Unmarshal(line, &r)
	return r.Type, r.Step, r.Phase
}

func resume(t *testing.T, prog *engine.Program, path, log string, retry bool) (*engine.Result, string) {
	t.Helper()
	os.Remove(log)
	st, err := engine.ReadRun(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := engine.Resume(context.Background(), prog, st, engine.Options{Params: map[string]any{"log": log}, Version: "test"}, retry)
	b, _ := os.ReadFile(log)
	return res, strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", ", ")
}

// A crash after every record of a successful run: resume undoes exactly
// the steps that completed, and the one in doubt, newest first.
func TestResumeRollsBackAfterCrashAnywhere(t *testing.T) {
	prog, lines, log := fullRun(t, false)
	var done []string // completed main steps with a rollback, oldest first
	inDoubt := ""
	for n := 1; n <= len(lines); n++ {
		typ, step, phase := recordType(lines[n-1])
		switch {
		case typ == engine.RecStepStart && phase == "main" && step != "check":
			inDoubt = step
		case typ == engine.RecStepEnd && phase == "main":
			inDoubt = ""
			if step != "check" && step != "d" {
				done = append(done, step)
			}
		}
		if typ == engine.RecRunEnd {
			continue
		}
		path := crashedAt(t, lines, n)
		res, ran := resume(t, prog, path, log, false)

		var want []string
		allDone := len(done) == 3 && inDoubt == "" && strings.Contains(string(bytes.Join(lines[:n], nil)), `"step":"d","step_type":"run-command","phase":"main","mutates":true,"attempt":1,"status":"succeeded"`)
		if inDoubt != "" && inDoubt != "d" {
			want = append(want, "undo "+inDoubt)
		}
		for i := len(done) - 1; i >= 0; i-- {
			want = append(want, "undo "+done[i])
		}
		want = append(want, "finally")
		wantStatus := engine.StatusRolledBack
		if allDone {
			want, wantStatus = []string{"finally"}, engine.StatusSucceeded
		}
		if ran != strings.Join(want, ", ") || res.Status != wantStatus {
			t.Errorf("crash after record %d (%s %s): resume ran [%s] and ended %s (%v); want [%s], %s",
				n, typ, step, ran, res.Status, res.Err, strings.Join(want, ", "), wantStatus)
		}
		rep, err := journal.Verify(path)
		if err != nil || !rep.OK || rep.Torn != nil {
			t.Errorf("crash after record %d: resumed journal: %+v %v", n, rep, err)
		}
	}
}

// A crash during the rollback: resume goes on with it, re-running the
// rollback step in doubt and none that already succeeded.
func TestResumeContinuesRollback(t *testing.T) {
	prog, lines, log := fullRun(t, true)
	for n := 1; n <= len(lines); n++ {
		typ, _, phase := recordType(lines[n-1])
		if phase != "rollback" || typ == engine.RecStepProcess {
			continue
		}
		var r engine.Record
		json.Unmarshal(lines[n-1], &r)
		path := crashedAt(t, lines, n)
		res, ran := resume(t, prog, path, log, false)
		// Rollbacks run c, b, a; which ones are left depends on the point.
		all := []string{"c", "b", "a"}
		idx := strings.Index("cba", r.RollbackOf[:1])
		left := all[idx:]
		if typ == engine.RecStepEnd {
			left = all[idx+1:]
		}
		var want []string
		for _, s := range left {
			want = append(want, "undo "+s)
		}
		want = append(want, "finally")
		if ran != strings.Join(want, ", ") || res.Status != engine.StatusRolledBack {
			t.Errorf("crash after record %d (%s of %s): resume ran [%s], %s (%v); want [%s]", n, typ, r.RollbackOf, ran, res.Status, res.Err, strings.Join(want, ", "))
		}
	}
}

func TestResumeRetryInDoubt(t *testing.T) {
	prog, lines, log := fullRun(t, false)
	startOf := func(step string) int {
		for i, l := range lines {
			if typ, s, phase := recordType(l); typ == engine.RecStepStart && s == step && phase == "main" {
				return i + 1
			}
		}
		t.Fatalf("no start of %s", step)
		return 0
	}
	// b is idempotent: it runs again and the plan goes on.
	res, ran := resume(t, prog, crashedAt(t, lines, startOf("b")), log, true)
	if ran != "do b, do c, do d, finally" || res.Status != engine.StatusSucceeded {
		t.Errorf("retry of b: ran [%s], %s (%v)", ran, res.Status, res.Err)
	}
	// a is not: resume refuses to retry it and changes nothing.
	path := crashedAt(t, lines, startOf("a"))
	res, ran = resume(t, prog, path, log, true)
	if res.ExitCode != engine.ExitUsage || ran != "" || !strings.Contains(fmt.Sprint(res.Err), "not declared `idempotent: true`") {
		t.Errorf("retry of a: exit %d, ran [%s], %v", res.ExitCode, ran, res.Err)
	}
	// Between steps, retry mode goes on with the next step.
	res, ran = resume(t, prog, crashedAt(t, lines, startOf("c")-1), log, true)
	if !strings.HasPrefix(ran, "do c, do d") || res.Status != engine.StatusSucceeded {
		t.Errorf("retry between steps: ran [%s], %s (%v)", ran, res.Status, res.Err)
	}
}

func TestResumeRefuses(t *testing.T) {
	prog, lines, log := fullRun(t, false)
	cases := []struct {
		name string
		path func() string
		prog *engine.Program
		want string
	}{
		{"ended", func() string { return crashedAt(t, lines, len(lines)) }, prog, "ended succeeded: there is nothing to resume"},
		{"plan changed", func() string { return crashedAt(t, lines, 5) }, compile(t, resumePlan+"# edited\n"), "changed since run"},
		{"tampered", func() string {
			l := append([][]byte{}, lines[:5]...)
			l[1] = bytes.Replace(l[1], []byte(`"time":"2`), []byte(`"time":"1`), 1)
			return crashedAt(t, l, 5)
		}, prog, "does not verify"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := c.path()
			before, _ := os.ReadFile(path)
			res, ran := resume(t, c.prog, path, log, false)
			if res.ExitCode != engine.ExitUsage || ran != "" || !strings.Contains(fmt.Sprint(res.Err), c.want) {
				t.Errorf("exit %d, ran [%s], err %v; want exit 2 and %q", res.ExitCode, ran, res.Err, c.want)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Error("a refused resume changed the journal")
			}
		})
	}
}

// A second signal aborts the rollback; resume finishes it.
func TestResumeAfterAbort(t *testing.T) {
	prog := compile(t, resumePlan)
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	t.Setenv("FAIL_D", "1")
	abort, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := engine.Run(context.Background(), prog, engine.Options{
		Params: map[string]any{"log": log}, JournalDir: dir, Version: "test", Abort: abort,
		Observe: func(r *engine.Record) {
			if r.Type == engine.RecStepEnd && r.Phase == "rollback" && r.RollbackOf == "c" {
				cancel() // as the second SIGINT does
			}
		},
	})
	if res.Status != engine.StatusAborted {
		t.Fatalf("run: %s (%v), want aborted", res.Status, res.Err)
	}
	if want := "not rolled back: b.rollback[0], a.rollback[0]; `cutover resume " + res.RunID + "` finishes the rollback"; !strings.Contains(fmt.Sprint(res.Err), want) {
		t.Errorf("abort message %q does not say %q", res.Err, want)
	}
	os.Unsetenv("FAIL_D")
	res, ran := resume(t, prog, res.Journal, log, false)
	if ran != "undo b, undo a, finally" || res.Status != engine.StatusRolledBack {
		t.Errorf("resume after abort ran [%s], %s (%v); want undo b, undo a, finally and rolled-back", ran, res.Status, res.Err)
	}
}

// A run whose lease another host took over (it judged this run dead) makes
// no more changes: the next mutating step does not start.
func TestLostLeaseStopsChanges(t *testing.T) {
	prog := compile(t, `apiVersion: cutover/v1
kind: Plan
name: lost
version: 1
steps:
  - id: steal
    type: run-command
    with:
      argv: ['printf "{\"key\":\"lost\",\"run_id\":\"run-x\",\"pid\":7,\"host\":\"elsewhere.invalid\",\"heartbeat\":\"%s\"}" "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" > "$LEASE"; sleep 0.3']
      shell: true
  - id: change
    type: run-command
    with: {argv: ['touch "$MARK"'], shell: true}
`)
	dir := t.TempDir()
	mark := filepath.Join(dir, "changed")
	t.Setenv("LEASE", filepath.Join(dir, ".locks", "lost.lease"))
	t.Setenv("MARK", mark)
	res := engine.Run(context.Background(), prog, engine.Options{JournalDir: dir, Version: "test", Lease: lease.Options{Heartbeat: 20 * time.Millisecond}})
	if res.Status != engine.StatusRolledBack || !strings.Contains(fmt.Sprint(res.Err), "step change failed: not started: lease \"lost\" was taken over by run run-x (pid 7 on host elsewhere.invalid") {
		t.Fatalf("run: %s, %v", res.Status, res.Err)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Fatal("a step ran after the lease was lost")
	}
}
