package engine_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgcutover/cutover/engine"
	"github.com/pgcutover/cutover/engine/journal"
	"github.com/pgcutover/cutover/schema"
	"github.com/pgcutover/cutover/steps"
)

// compile decodes and compiles a plan given as text, failing the test on
// any diagnostic.
func compile(t testing.TB, src string) *engine.Program {
	t.Helper()
	p, ds := schema.Decode("test.yaml", []byte(src), steps.Types)
	if len(ds) > 0 {
		t.Fatalf("decode: %s", ds.Format())
	}
	prog, ds := engine.Compile(p)
	if len(ds) > 0 {
		t.Fatalf("compile: %s", ds.Format())
	}
	return prog
}

// recorder keeps every record a run emits.
type recorder struct {
	mu   sync.Mutex
	recs []engine.Record
}

func (r *recorder) observe(rec *engine.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, *rec)
}

// ends lists "phase:step=status" for every step.end, in order.
func (r *recorder) ends() []string {
	var out []string
	for _, rec := range r.recs {
		if rec.Type == engine.RecStepEnd {
			out = append(out, rec.Phase+":"+rec.Step+"="+rec.Status)
		}
	}
	return out
}

func (r *recorder) end(step string) engine.Record {
	for _, rec := range r.recs {
		if rec.Type == engine.RecStepEnd && rec.Step == step {
			return rec
		}
	}
	return engine.Record{}
}

type runOpts struct {
	dry    bool
	params map[string]any
	env    map[string]string
	ctx    context.Context
}

func runPlan(t *testing.T, prog *engine.Program, o runOpts) (*engine.Result, *recorder, *bytes.Buffer) {
	t.Helper()
	rec := &recorder{}
	out := &bytes.Buffer{}
	ctx := o.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	res := engine.Run(ctx, prog, engine.Options{
		Params: o.params, DryRun: o.dry, JournalDir: t.TempDir(), Version: "test",
		Observe: rec.observe, Out: out,
		LookupEnv: func(k string) (string, bool) { v, ok := o.env[k]; return v, ok },
	})
	if res.Journal != "" {
		rep, err := journal.Verify(res.Journal)
		if err != nil || !rep.OK || rep.Torn != nil {
			t.Fatalf("journal does not verify: %v %+v", err, rep)
		}
	}
	return res, rec, out
}

const header = "apiVersion: cutover/v1\nkind: Plan\nname: t\nversion: 1\n"

func equal(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\ngot:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestRollbackRunsFailedStepFirstThenCompletedInReverse(t *testing.T) {
	prog := compile(t, header+`
steps:
  - id: a
    type: run-command
    with: {argv: ["true"]}
    rollback: [{type: run-command, with: {argv: ["true"]}}]
  - id: skipped
    type: run-command
    when: "false"
    with: {argv: ["true"]}
    rollback: [{type: run-command, with: {argv: ["true"]}}]
  - id: b
    type: run-command
    with: {argv: ["true"]}
  - id: c
    type: run-command
    with: {argv: ["true"]}
    rollback:
      - {type: run-command, with: {argv: ["true"]}}
      - {type: run-command, with: {argv: ["true"]}}
  - id: d
    type: run-command
    with: {argv: ["false"]}
    rollback: [{type: run-command, with: {argv: ["true"]}}]
  - id: never
    type: run-command
    with: {argv: ["true"]}
    rollback: [{type: run-command, with: {argv: ["true"]}}]
finally:
  - type: assert
    assert: ["run.status == 'rolled-back'"]
`)
	res, rec, _ := runPlan(t, prog, runOpts{})
	if res.Status != engine.StatusRolledBack || res.ExitCode != 1 {
		t.Fatalf("status %s exit %d, want rolled-back 1 (%v)", res.Status, res.ExitCode, res.Err)
	}
	equal(t, "step order", rec.ends(), []string{
		"main:a=succeeded", "main:skipped=skipped", "main:b=succeeded", "main:c=succeeded", "main:d=failed",
		"rollback:d.rollback[0]=succeeded",
		"rollback:c.rollback[0]=succeeded", "rollback:c.rollback[1]=succeeded",
		"rollback:a.rollback[0]=succeeded",
		"finally:finally[0]=succeeded",
	})
	if !strings.Contains(res.Err.Error(), "step d failed: false exited 1") {
		t.Errorf("error %q does not say which step failed and how", res.Err)
	}
}

func TestEveryRollbackIsAttemptedAndErrorsAggregate(t *testing.T) {
	prog := compile(t, header+`
steps:
  - id: a
    type: run-command
    with: {argv: ["true"]}
    rollback: [{type: run-command, with: {argv: [sh, -c, "echo undo-a-broke >&2; exit 3"]}}]
  - id: b
    type: run-command
    with: {argv: ["true"]}
    rollback: [{type: run-command, with: {argv: [sh, -c, "echo undo-b-broke >&2; exit 4"]}}]
  - id: c
    type: run-command
    with: {argv: ["false"]}
`)
	res, rec, _ := runPlan(t, prog, runOpts{})
	if res.Status != engine.StatusRollbackFailed || res.ExitCode != 3 {
		t.Fatalf("status %s exit %d, want rollback-failed 3", res.Status, res.ExitCode)
	}
	equal(t, "step order", rec.ends(), []string{
		"main:a=succeeded", "main:b=succeeded", "main:c=failed",
		"rollback:b.rollback[0]=failed", "rollback:a.rollback[0]=failed",
	})
	for _, want := range []string{"2 rollback step(s) failed", "undo-a-broke", "undo-b-broke", "exited 3", "exited 4"} {
		if !strings.Contains(res.Err.Error(), want) {
			t.Errorf("error %q lacks %q", res.Err, want)
		}
	}
}

func TestFailureAfterCommitUndoesOnlyLaterSteps(t *testing.T) {
	prog := compile(t, header+`
steps:
  - id: before
    type: run-command
    with: {argv: ["true"]}
    rollback: [{type: run-command, with: {argv: ["true"]}}]
  - id: switch
    type: run-command
    commit: true
    with: {argv: ["true"]}
    rollback: [{type: run-command, with: {argv: ["true"]}}]
  - id: after
    type: run-command
    with: {argv: ["true"]}
    rollback: [{type: run-command, with: {argv: ["true"]}}]
  - id: check
    type: run-command
    with: {argv: ["false"]}
    rollback: [{type: run-command, with: {argv: ["true"]}}]
finally:
  - type: run-command
    with: {argv: [sh, -c, 'test "${{ run.status }}" = failed-after-commit']}
`)
	res, rec, _ := runPlan(t, prog, runOpts{})
	if res.Status != engine.StatusFailedAfterCommit || res.ExitCode != 3 {
		t.Fatalf("status %s exit %d, want failed-after-commit 3", res.Status, res.ExitCode)
	}
	equal(t, "step order", rec.ends(), []string{
		"main:before=succeeded", "main:switch=succeeded", "main:after=succeeded", "main:check=failed",
		"rollback:check.rollback[0]=succeeded", "rollback:after.rollback[0]=succeeded",
		"finally:finally[0]=succeeded",
	})
	if !strings.Contains(res.Err.Error(), "human decision") {
		t.Errorf("error %q should say recovery is a human decision", res.Err)
	}
	commits := 0
	for _, r := range rec.recs {
		if r.Type == engine.RecCommit && r.Step == "switch" {
			commits++
		}
	}
	if commits != 1 {
		t.Errorf("want one commit record for switch, got %d", commits)
	}
}

func TestFailingCommitStepRollsBackNormally(t *testing.T) {
	prog := compile(t, header+`
steps:
  - id: a
    type: run-command
    with: {argv: ["true"]}
    rollback: [{type: run-command, with: {argv: ["true"]}}]
  - id: switch
    type: run-command
    commit: true
    with: {argv: ["false"]}
    rollback: [{type: run-command, with: {argv: ["true"]}}]
`)
	res, rec, _ := runPlan(t, prog, runOpts{})
	if res.Status != engine.StatusRolledBack {
		t.Fatalf("status %s, want rolled-back", res.Status)
	}
	equal(t, "step order", rec.ends(), []string{"main:a=succeeded", "main:switch=failed", "rollback:switch.rollback[0]=succeeded", "rollback:a.rollback[0]=succeeded"})
}

func TestRetryUntilSuccessAndNotForPermanentErrors(t *testing.T) {
	dir := t.TempDir()
	counter := filepath.Join(dir, "n")
	prog := compile(t, header+`
steps:
  - id: flaky
    type: run-command
    retry: {attempts: 3, backoff: 1ms}
    with: {argv: [sh, -c, 'n=$(cat `+counter+` 2>/dev/null || echo 0); n=$((n+1)); echo $n > `+counter+`; test $n -ge 3']}
  - id: missing
    type: run-command
    retry: {attempts: 5, backoff: 1ms}
    with: {argv: [no-such-program-anywhere]}
`)
	res, rec, _ := runPlan(t, prog, runOpts{})
	if got := rec.end("flaky"); got.Status != engine.StepSucceeded || got.Attempt != 3 {
		t.Errorf("flaky: status %s after %d attempts, want succeeded after 3", got.Status, got.Attempt)
	}
	retries := 0
	for _, r := range rec.recs {
		if r.Type == engine.RecStepRetry {
			retries++
		}
	}
	if retries != 2 {
		t.Errorf("want 2 retry records (flaky only), got %d", retries)
	}
	m := rec.end("missing")
	if m.Status != engine.StepFailed || m.Attempt != 1 || !strings.Contains(m.Error, "no-such-program-anywhere") {
		t.Errorf("missing binary: %+v; want one attempt and a message naming the program", m)
	}
	if res.Status != engine.StatusRolledBack {
		t.Errorf("status %s", res.Status)
	}
}

func TestTimeoutKillsTheWholeProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	prog := compile(t, header+`
steps:
  - id: hang
    type: run-command
    timeout: 300ms
    with:
      argv: [sh, -c, 'sleep 60 & echo $! > `+pidFile+`; wait']
      grace: 100ms
`)
	res, rec, _ := runPlan(t, prog, runOpts{})
	if res.Status != engine.StatusRolledBack {
		t.Fatalf("status %s", res.Status)
	}
	if e := rec.end("hang").Error; !strings.Contains(e, "timed out") {
		t.Errorf("error %q should say the step timed out", e)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	// The grandchild must be gone (or a zombie awaiting its reaper).
	for i := 0; i < 100; i++ {
		if err := syscall.Kill(pid, 0); err != nil || isZombie(pid) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("background child %d of the timed-out command is still running", pid)
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] == "Z"
}

func TestInterruptStopsTheStepAndRollsBack(t *testing.T) {
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	prog := compile(t, header+`
steps:
  - id: a
    type: run-command
    with: {argv: ["true"]}
    rollback: [{type: run-command, with: {argv: ["true"]}}]
  - id: long
    type: run-command
    with: {argv: [sh, -c, 'touch `+started+`; sleep 60'], grace: 100ms}
  - id: never
    type: run-command
    with: {argv: ["true"]}
`)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			if _, err := os.Stat(started); err == nil {
				cancel()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	res, rec, _ := runPlan(t, prog, runOpts{ctx: ctx})
	if res.Status != engine.StatusRolledBack || res.ExitCode != 1 {
		t.Fatalf("status %s exit %d", res.Status, res.ExitCode)
	}
	equal(t, "step order", rec.ends(), []string{"main:a=succeeded", "main:long=failed", "rollback:a.rollback[0]=succeeded"})
	if e := rec.end("long").Error; !strings.Contains(e, "interrupted") {
		t.Errorf("error %q should say interrupted", e)
	}
}

func TestDryRunIsHonest(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "mutated")
	prog := compile(t, header+`
params:
  environment: {type: string, enum: [staging, production], required: true}
steps:
  - id: probe
    type: run-command
    with: {argv: [echo, hello], read_only: true}
    assert: ['outputs.stdout_tail == "hello\n"']
  - id: migrate
    type: run-command
    with:
      argv: [touch, `+marker+`]
      dry_run_argv: [echo, plan]
    rollback: [{type: run-command, with: {argv: [touch, `+marker+`]}}]
  - id: seed
    type: run-command
    with: {argv: [touch, `+marker+`]}
  - id: guarded
    type: run-command
    when: "steps.migrate.outputs.exit_code == 0"
    with: {argv: [touch, `+marker+`]}
  - id: decided
    type: run-command
    when: "params.environment == 'production' && steps.migrate.outputs.exit_code == 0"
    with: {argv: [touch, `+marker+`]}
  - id: known
    type: assert
    when: "steps.probe.outputs.exit_code == 0"
    assert: ["steps.probe.outputs.stdout_tail.startsWith('hel')"]
`)
	res, rec, _ := runPlan(t, prog, runOpts{dry: true, params: map[string]any{"environment": "staging"}})
	if res.Status != engine.StatusSucceeded || res.ExitCode != 0 {
		t.Fatalf("status %s exit %d: %v", res.Status, res.ExitCode, res.Err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a dry run ran a mutating command")
	}
	equal(t, "statuses", rec.ends(), []string{
		"main:probe=succeeded", "main:migrate=dry-run", "main:seed=would-run",
		"main:guarded=undecided", "main:decided=skipped", "main:known=succeeded",
	})
	if g := rec.end("guarded").Guard; g == nil || g.Result != "unknown" {
		t.Errorf("guard over an output of a step that did not run must be unknown, got %+v", g)
	}
	if g := rec.end("decided").Guard; g == nil || g.Result != "false" {
		t.Errorf("a guard decided by known values must be decided, got %+v", g)
	}
	equal(t, "rollback preview of seed", rec.end("seed").RollbackPlan, []string{"migrate.rollback[0] (run-command)"})
}

func TestDryRunReportsEveryFailingCheck(t *testing.T) {
	prog := compile(t, header+`
steps:
  - id: one
    type: run-command
    with: {argv: ["false"], read_only: true}
  - id: two
    type: assert
    assert: ["1 == 2"]
  - id: three
    type: run-command
    with: {argv: ["true"], read_only: true}
`)
	res, rec, _ := runPlan(t, prog, runOpts{dry: true})
	if res.Status != engine.StatusFailed || res.ExitCode != 1 {
		t.Fatalf("status %s exit %d", res.Status, res.ExitCode)
	}
	equal(t, "statuses", rec.ends(), []string{"main:one=failed", "main:two=failed", "main:three=succeeded"})
	if !strings.Contains(res.Err.Error(), "and 1 more failing step") {
		t.Errorf("error %q should count the other failure", res.Err)
	}
}

func TestAssertFailureShowsExpressionAndValues(t *testing.T) {
	prog := compile(t, header+`
params:
  expected_db: {type: string, default: appdb}
steps:
  - id: who
    type: run-command
    with: {argv: [echo, otherdb], read_only: true}
    assert: ["outputs.stdout_tail.trim() == params.expected_db", "outputs.exit_code == 0"]
`)
	res, rec, _ := runPlan(t, prog, runOpts{params: map[string]any{"expected_db": "appdb"}})
	if res.Status != engine.StatusRolledBack {
		t.Fatalf("status %s", res.Status)
	}
	end := rec.end("who")
	want := `assert ` + "`outputs.stdout_tail.trim() == params.expected_db`" + ` is false (outputs.stdout_tail="otherdb\n", params.expected_db="appdb")`
	if end.Error != want {
		t.Errorf("error:\n got %q\nwant %q", end.Error, want)
	}
	if len(end.Asserts) != 2 || end.Asserts[0].Result != "false" || end.Asserts[1].Result != "true" || end.Asserts[0].Line != 12 {
		t.Errorf("assert records %+v", end.Asserts)
	}
}

func TestCanarySecretNeverLeaks(t *testing.T) {
	const canary = "Canary-p@ss/w:rd+9f3a7c"
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte(canary+"-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	prog := compile(t, header+`
secrets:
  from_env: {from: env, name: APP_SECRET}
  from_file: {from: file, path: `+file+`}
  from_cmd: {from: command, argv: [sh, -c, 'echo `+canary+`-cmd']}
steps:
  - id: leak
    type: run-command
    with:
      argv: [sh, -c, 'echo "$S"; echo "$F" >&2; echo "$C"; printf %s "$S" | base64; echo "url:$U"; exit 7']
      env: {S: {secret: from_env}, F: {secret: from_file}, C: {secret: from_cmd}, U: '${{ "x" }}'}
    rollback:
      - type: run-command
        with:
          argv: [sh, -c, 'echo "rollback sees $S" >&2; exit 1']
          env: {S: {secret: from_env}}
finally:
  - type: run-command
    with: {argv: [sh, -c, 'echo "$S"'], env: {S: {secret: from_env}}}
`)
	res, rec, out := runPlan(t, prog, runOpts{env: map[string]string{"APP_SECRET": canary}})
	if res.ExitCode != 3 {
		t.Fatalf("exit %d, want 3 (rollback failed): %v", res.ExitCode, res.Err)
	}
	recs, _ := json.Marshal(rec.recs)
	file2, _ := os.ReadFile(res.Journal)
	places := map[string]string{"journal": string(file2), "records": string(recs), "live output": out.String(), "error": res.Err.Error()}
	forms := []string{canary, canary + "-file", canary + "-cmd", url.QueryEscape(canary), url.PathEscape(canary),
		base64.StdEncoding.EncodeToString([]byte(canary)), strings.TrimSuffix(strings.TrimPrefix(mustJSON(canary), `"`), `"`)}
	for where, text := range places {
		for _, f := range forms {
			if strings.Contains(text, f) {
				t.Errorf("secret form %q leaked into the %s", f, where)
			}
		}
	}
	if !strings.Contains(out.String(), "[secret:from_env]") || !strings.Contains(string(file2), "[secret:from_env]") {
		t.Errorf("masked placeholder missing: the test would pass vacuously")
	}
}

func mustJSON(s string) string { b, _ := json.Marshal(s); return string(b) }

func TestFinallyRunsAfterSuccessWithStatus(t *testing.T) {
	prog := compile(t, header+`
steps:
  - id: a
    type: run-command
    with: {argv: ["true"]}
finally:
  - type: assert
    assert: ["run.status == 'succeeded'", "steps.a.status == 'succeeded'"]
`)
	res, rec, _ := runPlan(t, prog, runOpts{})
	if res.Status != engine.StatusSucceeded {
		t.Fatalf("status %s: %v", res.Status, res.Err)
	}
	if got := rec.end("finally[0]").Status; got != engine.StepSucceeded {
		t.Errorf("finally status %s", got)
	}
}

func TestUnavailableSecretFailsTheStepThatNeedsIt(t *testing.T) {
	prog := compile(t, header+`
secrets:
  url: {from: env, name: DATABASE_URL}
steps:
  - id: use
    type: run-command
    with: {argv: ["true"], env: {DATABASE_URL: {secret: url}}}
`)
	res, rec, _ := runPlan(t, prog, runOpts{})
	if res.Status != engine.StatusRolledBack {
		t.Fatalf("status %s", res.Status)
	}
	if e := rec.end("use").Error; e != "with.env: secret url is not available: environment variable DATABASE_URL is not set" {
		t.Errorf("error %q", e)
	}
}

func TestJournalNotWritableCannotStart(t *testing.T) {
	prog := compile(t, header+"steps: [{id: a, type: run-command, with: {argv: [\"true\"]}}]\n")
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	res := engine.Run(context.Background(), prog, engine.Options{JournalDir: filepath.Join(file, "sub")})
	if res.ExitCode != engine.ExitCannotStart || !strings.Contains(res.Err.Error(), "journal") {
		t.Fatalf("exit %d err %v; want 4 and a journal message", res.ExitCode, res.Err)
	}
}
