package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcutover/cutover/engine"
	"github.com/pgcutover/cutover/engine/journal"
	"github.com/pgcutover/cutover/steps/pgtest"
)

// crashAt returns an observer that SIGKILLs this process at a point of a
// run named by spec:
//
//	end:ID   once step ID's end is journaled: a step boundary
//	mid:ID   while step ID runs: for run-command, 50ms after its program
//	         started; for snapshot and restore, as soon as pg_dump or
//	         pg_restore started (they are quick on the demo database, and
//	         go on as orphans); for the others, right after the intent
//	         record, before the step has any effect
//	rollback:ID  likewise, while a rollback step of step ID runs
func crashAt(spec string) func(*engine.Record) {
	kind, id, _ := strings.Cut(spec, ":")
	die := func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) }
	spawns := map[string]bool{"run-command": true, "snapshot": true, "restore": true}
	delay := map[string]time.Duration{"run-command": 50 * time.Millisecond}
	return func(r *engine.Record) {
		switch kind {
		case "end":
			if r.Type == engine.RecStepEnd && r.Phase == "main" && r.Step == id {
				die()
			}
		case "mid", "rollback":
			match := kind == "mid" && r.Phase == "main" && r.Step == id ||
				kind == "rollback" && r.Phase == "rollback" && r.RollbackOf == id
			if !match {
				return
			}
			switch {
			case r.Type == engine.RecStepStart && !spawns[r.StepType]:
				die()
			case r.Type == engine.RecStepProcess && delay[r.StepType] == 0:
				die()
			case r.Type == engine.RecStepProcess:
				go func() {
					time.Sleep(delay[r.StepType])
					die()
				}()
			}
		}
	}
}

// TestCrashResume kills the runner with SIGKILL at every step boundary and
// in the middle of every step of the reference Django plan, then resumes
// the run: before the commit point, resume must bring both databases and
// the app's config back to what they were before the run; after it, keep
// everything up to the commit point, as a failure there would.
func TestCrashResume(t *testing.T) {
	requireEndToEnd(t)
	if testing.Short() {
		t.Skip("kills and resumes the reference plan 34 times; not in -short")
	}
	bin, err := exec.LookPath("cutover")
	if err != nil {
		t.Fatal(err)
	}
	plans, _ := filepath.Abs(filepath.Join("..", "..", "plans"))
	planFile := filepath.Join(plans, "django-managed-postgres.yaml")
	appDir := filepath.Join(plans, "demo")
	work := t.TempDir()
	env := sandboxEnv(t, work)
	env["CUTOVER_JOURNAL_DIR"] = filepath.Join(work, "journal")
	env["NO_COLOR"] = "1"
	env["PYTHONDONTWRITEBYTECODE"] = "1"
	env["WORK"] = work
	env["APP_DIR"] = appDir
	env["APP_PORT"] = strconv.Itoa(freePort(t))
	env["CUTOVER_JOURNAL_KEY"] = "crash-test-journal-key"
	environ := func(extra ...string) []string {
		out := os.Environ()
		for k, v := range env {
			out = append(out, k+"="+v)
		}
		return append(out, extra...)
	}
	appEnv := filepath.Join(work, "app.env")
	orig := []byte("SECRET_KEY=dev-only\nDATABASE_URL=" + env["OLD_DATABASE_URL"] + "\n")
	must(t, os.WriteFile(appEnv, orig, 0o600))
	must(t, os.WriteFile(filepath.Join(work, "restart.sh"), []byte(restartScript), 0o755))
	stopApp := func() {
		if b, err := os.ReadFile(filepath.Join(work, "app.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
			os.Remove(filepath.Join(work, "app.pid"))
		}
	}
	t.Cleanup(stopApp)

	mig := exec.Command("/usr/bin/python3", filepath.Join(appDir, "manage.py"), "migrate", "--noinput", "catalog", "0003")
	mig.Env = environ("DATABASE_URL=" + env["OLD_DATABASE_URL"])
	if out, err := mig.CombinedOutput(); err != nil {
		t.Fatalf("migrating the old database: %v\n%s", err, out)
	}
	state := func() string {
		t.Helper()
		o, err := dbState(env["OLD_DATABASE_URL"])
		must(t, err)
		n, err := dbState(env["DATABASE_URL"])
		must(t, err)
		a, err := os.ReadFile(appEnv)
		must(t, err)
		return "old:\n" + o + "new:\n" + n + "app.env:\n" + string(a)
	}
	before := state()
	reset := func() {
		t.Helper()
		stopApp()
		must(t, os.WriteFile(appEnv, orig, 0o600))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, env["DATABASE_URL"])
		must(t, err)
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "DROP OWNED BY CURRENT_USER CASCADE")
		must(t, err)
		if got := state(); got != before {
			t.Fatalf("reset did not restore the state before the run:\n%s\nwant:\n%s", got, before)
		}
	}

	prog, ds := engine.Load(planFile)
	if len(ds) > 0 {
		t.Fatal(ds.Format())
	}
	args := []string{"run", planFile, "--param", "environment=staging", "--param", "env_file=" + appEnv,
		"--param", "backup_dir=" + filepath.Join(work, "backups"), "--param", "app_url=http://127.0.0.1:" + env["APP_PORT"],
		"--param", "restart_cmd=sh " + filepath.Join(work, "restart.sh"), "--param", "app_dir=" + appDir}
	committedAfter := false
	for _, s := range prog.Steps {
		for _, kind := range []string{"mid", "end"} {
			point := kind + ":" + s.Label()
			afterCommit := committedAfter || kind == "end" && s.Decl.Commit
			cmd := exec.Command(bin, args...)
			cmd.Env = environ("CUTOVER_TEST_CRASH_AT=" + point)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("%s: the run was not killed there (%v):\n%s", point, err, out.String())
			}
			path := latestJournal(t, env["CUTOVER_JOURNAL_DIR"])
			rep, err := journal.VerifyKey(path, []byte(env["CUTOVER_JOURNAL_KEY"]))
			must(t, err)
			if !rep.OK {
				t.Fatalf("%s: the journal a crash left does not verify: %v", point, rep.Problems)
			}

			crashed, err := engine.ReadRun(path, []byte(env["CUTOVER_JOURNAL_KEY"]))
			must(t, err)
			code, rout := resumeUntilStarted(t, bin, environ(), path, point)
			want := engine.ExitFailed
			switch {
			case afterCommit && s.Index == len(prog.Steps)-1 && kind == "end":
				want = engine.ExitOK // every step ended: only the run's end was lost
			case afterCommit:
				want = engine.ExitHuman
			}
			if code != want {
				t.Fatalf("%s: resume exit %d, want %d:\n%s", point, code, want, rout)
			}
			if d := crashed.InDoubt; d != nil && !strings.Contains(rout, "IN DOUBT  "+d.Step) {
				t.Errorf("%s: resume did not show step %s in doubt:\n%s", point, d.Step, rout)
			}
			if kind == "mid" && s.Mutates && (crashed.InDoubt == nil || crashed.InDoubt.Step != s.Label()) {
				t.Logf("%s: the step had ended when the kill landed", point)
			}
			rep, err = journal.VerifyKey(path, []byte(env["CUTOVER_JOURNAL_KEY"]))
			must(t, err)
			if !rep.OK || rep.Torn != nil {
				t.Fatalf("%s: the resumed journal does not verify: %v (torn %v)", point, rep.Problems, rep.Torn)
			}
			if !afterCommit {
				if got := state(); got != before {
					t.Fatalf("%s: after resume the targets are not as before the run:\n%s\nwant:\n%s\nresume:\n%s", point, got, before, rout)
				}
			} else {
				if b, _ := os.ReadFile(appEnv); !bytes.Contains(b, []byte(env["DB_PORT"])) {
					t.Fatalf("%s: a crash after the commit point undid the switch:\n%s", point, rout)
				}
				reset()
			}
			stopApp()
			t.Logf("%s: resume exit %d", point, code)
		}
		if s.Decl.Commit {
			committedAfter = true
		}
	}
}

// resumeUntilStarted runs cutover resume; while it refuses because the
// crashed run's child is still running (exit 4), it waits and tries again.
func resumeUntilStarted(t *testing.T, bin string, env []string, path, point string) (int, string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		cmd := exec.Command(bin, "resume", path)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := cmd.ProcessState.ExitCode()
		if err != nil && code < 0 {
			t.Fatalf("%s: resume: %v", point, err)
		}
		if code == engine.ExitCannotStart && strings.Contains(out.String(), "still running") && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		return code, out.String()
	}
}

func latestJournal(t *testing.T, dir string) string {
	t.Helper()
	ids, err := journal.List(dir)
	must(t, err)
	if len(ids) == 0 {
		t.Fatal("no journal written")
	}
	return filepath.Join(dir, ids[len(ids)-1]+journal.Ext)
}

// requireEndToEnd skips (fails in CI) without PostgreSQL and Django.
func requireEndToEnd(t *testing.T) {
	t.Helper()
	if err := pgtest.Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL is required in CI: %v", err)
		}
		t.Skipf("PostgreSQL is not available: %v", err)
	}
	if out, err := exec.Command("/usr/bin/python3", "-c", "import django, psycopg2, dj_database_url").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Django is required in CI: %v\n%s", err, out)
		}
		t.Skipf("Django (python3-django, python3-psycopg2, python3-dj-database-url) is not available: %v", err)
	}
}

// sandboxEnv starts a sandbox in dir/sandbox, stopped when the test ends,
// and returns its variables.
func sandboxEnv(t *testing.T, dir string) map[string]string {
	t.Helper()
	vars, down, err := sandboxUp(filepath.Join(dir, "sandbox"))
	must(t, err)
	t.Cleanup(down)
	return vars
}

// sandboxUp starts a sandbox in dir and returns its variables (those
// sandbox.env holds, unquoted) and the func that stops and removes it.
func sandboxUp(dir string) (map[string]string, func(), error) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"sandbox", "up", "--dir", dir}, nil, &out, &errb, nil); code != 0 {
		return nil, nil, fmt.Errorf("sandbox up: exit %d\n%s%s", code, out.String(), errb.String())
	}
	down := func() {
		run(context.Background(), []string{"sandbox", "down", "--dir", dir, "--purge"}, nil, &out, &errb, nil)
	}
	st, err := readSandboxState(dir)
	if err == nil && st == nil {
		err = fmt.Errorf("no sandbox in %s after sandbox up", dir)
	}
	var list [][2]string
	if err == nil {
		list, err = sandboxVars(dir, st)
	}
	if err != nil {
		down()
		return nil, nil, err
	}
	vars := map[string]string{}
	for _, kv := range list {
		vars[kv[0]] = kv[1]
	}
	return vars, down, nil
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// restartScript restarts the demo app so that it reads app.env and returns
// once it listens, as the end-to-end scripts' restart.sh does.
const restartScript = `#!/bin/sh
set -eu
cd "$WORK"
[ -f app.pid ] && kill -- "-$(cat app.pid)" 2>/dev/null || true
set -a; . ./app.env; set +a
cd "$APP_DIR"
setsid /usr/bin/python3 manage.py runserver "127.0.0.1:$APP_PORT" --noreload >"$WORK/app.log" 2>&1 </dev/null &
echo $! >"$WORK/app.pid"
for i in $(seq 1 100); do
	if /usr/bin/python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 0.2)" "$APP_PORT" 2>/dev/null; then exit 0; fi
	sleep 0.1
done
echo "app did not start" >&2
exit 1
`
