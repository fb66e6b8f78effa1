package steps

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcutover/cutover/schema"
	"github.com/pgcutover/cutover/steps/pgtest"
)

const lockTestPassword = "Lock-Test-pw-3c9e"

// lockCluster starts a plaintext cluster with database appdb owned by app,
// and a second login role bob.
func lockCluster(t *testing.T) *pgtest.Cluster {
	t.Helper()
	return pgtest.Start(t, pgtest.Options{
		Roles:     []pgtest.Role{{Name: "app", Password: lockTestPassword}, {Name: "bob", Password: lockTestPassword}},
		Databases: map[string]string{"appdb": "app"},
	})
}

// lockTargets is a run's targets: "new", appdb as app.
func lockTargets(t *testing.T, cl *pgtest.Cluster) *Targets {
	t.Helper()
	return newTargets(t, map[string]string{"pw": lockTestPassword}, &schema.Target{
		Name: "new", Host: cl.Host, Port: cl.Port, DBName: "appdb", User: "app", Password: "pw", SSLMode: "disable",
	})
}

// backendPID is the server pid of the run's session on "new".
func backendPID(t *testing.T, ts *Targets) int32 {
	t.Helper()
	c, err := ts.Conn(context.Background(), "new")
	if err != nil {
		t.Fatal(err)
	}
	var pid int32
	if err := c.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// holdsLock reports whether the run's session on "new" holds cutover's
// advisory lock, and its application_name.
func holdsLock(t *testing.T, ts *Targets) (bool, string) {
	t.Helper()
	c, err := ts.Conn(context.Background(), "new")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var app string
	err = c.QueryRow(context.Background(), `SELECT count(*), current_setting('application_name') FROM pg_locks
		WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
		  AND classid::int8 = $1::int8 AND objid::int8 = $2::int8 AND objsubid = 2`,
		int64(AdvisoryLockClass), int64(AdvisoryLockObject)).Scan(&n, &app)
	if err != nil {
		t.Fatal(err)
	}
	return n == 1, app
}

// lockEventually retries Lock until it succeeds: a closed session's backend
// lets go of its locks only as it exits, a moment after the client is gone.
func lockEventually(t *testing.T, ts *Targets, holder string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := ts.Lock(context.Background(), "new", holder)
		if err == nil {
			return
		}
		var held *LockHeldError
		if !errors.As(err, &held) || time.Now().After(deadline) {
			t.Fatalf("Lock: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// breakConn ends the run's session on "new" from the server side, and has
// the client notice it, as a step would when its connection broke.
func breakConn(t *testing.T, cl *pgtest.Cluster, ts *Targets) {
	t.Helper()
	ctx := context.Background()
	c, err := ts.Conn(ctx, "new")
	if err != nil {
		t.Fatal(err)
	}
	pid := backendPID(t, ts)
	if err := cl.Exec(ctx, "", "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !c.IsClosed() {
		_, _ = c.Exec(ctx, "SELECT 1")
		if time.Now().After(deadline) {
			t.Fatal("the client did not notice its session was terminated")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTargetLock(t *testing.T) {
	cl := lockCluster(t)
	ctx := context.Background()

	run1 := lockTargets(t, cl)
	if err := run1.Lock(ctx, "new", "cutover run run-1"); err != nil {
		t.Fatal(err)
	}
	if err := run1.Lock(ctx, "new", "cutover run run-1"); err != nil {
		t.Fatalf("locking again: %v", err)
	}
	held, app := holdsLock(t, run1)
	if !held || app != "cutover run run-1" {
		t.Fatalf("run 1 holds the lock: %v, application_name %q", held, app)
	}
	if run1.Opened["new"] != 1 {
		t.Errorf("opened %d connections, want 1: the lock is on the run's shared connection", run1.Opened["new"])
	}
	pid1 := backendPID(t, run1)

	run2 := lockTargets(t, cl)
	t.Run("a second run is refused and told who holds it", func(t *testing.T) {
		err := run2.Lock(ctx, "new", "cutover run run-2")
		var he *LockHeldError
		if !errors.As(err, &he) {
			t.Fatalf("err = %v, want a LockHeldError", err)
		}
		if he.Target != "new" || he.Database != "appdb" || he.PID != pid1 || he.ApplicationName != "cutover run run-1" ||
			he.User != "app" || he.ClientAddr != "127.0.0.1" || he.Since.IsZero() || he.Lost || he.Previous {
			t.Errorf("LockHeldError = %+v", he)
		}
		want := fmt.Sprintf(`target new (database appdb) is locked by another cutover run "cutover run run-1" (backend pid %d, user app, from 127.0.0.1, connected since `, pid1)
		if msg := err.Error(); !strings.HasPrefix(msg, want) || !strings.HasSuffix(msg, "; one mutating cutover run per database at a time: wait for it to end") {
			t.Errorf("error = %q", msg)
		} else {
			t.Log(msg)
		}
		if run2.locks["new"] != nil {
			t.Error("a failed Lock left the target marked locked")
		}
	})

	t.Run("once the first run ends the second gets it", func(t *testing.T) {
		run1.Close()
		lockEventually(t, run2, "cutover run run-2")
		if held, app := holdsLock(t, run2); !held || app != "cutover run run-2" {
			t.Fatalf("run 2 holds the lock: %v, application_name %q", held, app)
		}
	})

	t.Run("a reopened connection takes the lock again", func(t *testing.T) {
		opened := run2.Opened["new"]
		c, err := run2.Conn(ctx, "new")
		if err != nil {
			t.Fatal(err)
		}
		// A clean close: the old backend may still hold the lock for a
		// moment when the new connection asks for it.
		if err := c.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if held, app := holdsLock(t, run2); !held || app != "cutover run run-2" {
			t.Fatalf("after a reconnect: holds the lock %v, application_name %q", held, app)
		}
		// A session the server ended.
		breakConn(t, cl, run2)
		if held, _ := holdsLock(t, run2); !held {
			t.Fatal("after the session was terminated: the new session does not hold the lock")
		}
		if run2.Opened["new"] != opened+2 {
			t.Errorf("opened %d connections, want %d", run2.Opened["new"], opened+2)
		}
		err = lockTargets(t, cl).Lock(ctx, "new", "cutover run run-x")
		var he *LockHeldError
		if !errors.As(err, &he) || he.PID != backendPID(t, run2) || he.ApplicationName != "cutover run run-2" {
			t.Fatalf("another run after the reconnect: %v", err)
		}
	})

	t.Run("a lock taken by another run meanwhile is a clear failure", func(t *testing.T) {
		breakConn(t, cl, run2)
		run3 := lockTargets(t, cl)
		lockEventually(t, run3, "cutover run run-3")
		pid3 := backendPID(t, run3)
		for range 2 {
			_, err := run2.Conn(ctx, "new")
			var he *LockHeldError
			if !errors.As(err, &he) || !he.Lost || he.PID != pid3 || he.ApplicationName != "cutover run run-3" {
				t.Fatalf("Conn after the lock was taken: %v", err)
			}
			if !IsPermanent(err) {
				t.Error("a lost lock is not worth retrying")
			}
			want := fmt.Sprintf(`target new (database appdb): the run's connection was reopened, and its advisory lock had been taken meanwhile by another cutover run "cutover run run-3" (backend pid %d, user app, from 127.0.0.1, connected since `, pid3)
			if msg := err.Error(); !strings.HasPrefix(msg, want) {
				t.Errorf("error = %q", msg)
			} else {
				t.Log(msg)
			}
		}

		// Unlock lets the next run in, and is idempotent.
		if err := run3.Unlock(ctx, "new"); err != nil {
			t.Fatal(err)
		}
		if err := run3.Unlock(ctx, "new"); err != nil {
			t.Fatal(err)
		}
		if held, _ := holdsLock(t, run3); held {
			t.Error("still held after Unlock")
		}
		run4 := lockTargets(t, cl)
		if err := run4.Lock(ctx, "new", "cutover run run-4"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestTargetLockHeldByAnotherClient(t *testing.T) {
	cl := lockCluster(t)
	ctx := context.Background()
	// Someone in psql, as another role: app sees its application_name,
	// user and pid, not its address or start.
	other, err := pgx.Connect(ctx, cl.URL("bob", lockTestPassword, "appdb", "sslmode=disable", "application_name=psql"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	var pid int32
	if err := other.QueryRow(ctx, "SELECT pg_backend_pid() FROM (SELECT pg_advisory_lock($1::int4, $2::int4)) l",
		AdvisoryLockClass, AdvisoryLockObject).Scan(&pid); err != nil {
		t.Fatal(err)
	}

	err = lockTargets(t, cl).Lock(ctx, "new", "cutover run run-1")
	var he *LockHeldError
	if !errors.As(err, &he) || he.PID != pid || he.ApplicationName != "psql" || he.User != "bob" {
		t.Fatalf("err = %v", err)
	}
	want := fmt.Sprintf(`target new (database appdb) is locked by a session that is not a cutover run, application_name "psql" (backend pid %d, user bob, its address and start are not visible to this user), which holds cutover's advisory lock pg_advisory_lock(1668641910, 0); wait for it to let go, or end it`, pid)
	if msg := err.Error(); msg != want {
		t.Errorf("error =\n%s\nwant\n%s", msg, want)
	}
}

func TestLockAppName(t *testing.T) {
	for in, want := range map[string]string{
		"cutover run 20261124T101500000Z-ab12cd": "cutover run 20261124T101500000Z-ab12cd",
		"cutover run é\n":                        "cutover run ??",
		strings.Repeat("x", 80):                  strings.Repeat("x", 63),
		strings.Repeat("é", 80):                  strings.Repeat("?", 63),
	} {
		if got := appName(in); got != want {
			t.Errorf("appName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLockHeldErrorWording(t *testing.T) {
	since := time.Date(2026, 11, 24, 10, 15, 0, 0, time.UTC)
	for _, tc := range []struct {
		err  LockHeldError
		want string
	}{
		{LockHeldError{Target: "new", Database: "appdb", PID: 4242, ApplicationName: "cutover run r1", User: "app", ClientAddr: "10.0.0.5", Since: since},
			`target new (database appdb) is locked by another cutover run "cutover run r1" (backend pid 4242, user app, from 10.0.0.5, connected since 2026-11-24 10:15:00Z); one mutating cutover run per database at a time: wait for it to end`},
		{LockHeldError{Target: "new", Database: "appdb", PID: 4242, User: "app", Since: since},
			`target new (database appdb) is locked by a session with no application_name, not a cutover run (backend pid 4242, user app, over a Unix socket, connected since 2026-11-24 10:15:00Z), which holds cutover's advisory lock pg_advisory_lock(1668641910, 0); wait for it to let go, or end it`},
		{LockHeldError{Target: "new", Database: "appdb"},
			`target new (database appdb) is locked by another session, which let go or could not be identified; try again`},
		{LockHeldError{Target: "new", Database: "appdb", PID: 4242, ApplicationName: "cutover run r1", User: "app", ClientAddr: "10.0.0.5", Since: since, Previous: true},
			`target new (database appdb) is still locked by this run's previous session (backend pid 4242, user app, from 10.0.0.5, connected since 2026-11-24 10:15:00Z), which the server has not ended yet: it may still be running a statement; if it stays, end it with SELECT pg_terminate_backend(4242)`},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("got\n%s\nwant\n%s", got, tc.want)
		}
	}
}

func TestTargetLockWaitsForThePreviousSession(t *testing.T) {
	cl := lockCluster(t)
	ctx := context.Background()
	defer func(d time.Duration) { relockWait = d }(relockWait)

	// previous plays the run's earlier session on the target, which the
	// server has not ended yet: it holds the lock under the run's name.
	previous := func() (*pgx.Conn, int32) {
		c, err := pgx.Connect(ctx, cl.URL("app", lockTestPassword, "appdb", "sslmode=disable", "application_name=cutover run run-1"))
		if err != nil {
			t.Fatal(err)
		}
		var pid int32
		if err := c.QueryRow(ctx, "SELECT pg_backend_pid() FROM (SELECT pg_advisory_lock($1::int4, $2::int4)) l",
			AdvisoryLockClass, AdvisoryLockObject).Scan(&pid); err != nil {
			t.Fatal(err)
		}
		return c, pid
	}

	t.Run("it lets go in time", func(t *testing.T) {
		old, pid := previous()
		run := lockTargets(t, cl)
		run.locks = map[string]*targetLock{"new": {appName: "cutover run run-1", pid: pid}}
		go func() {
			time.Sleep(100 * time.Millisecond)
			_ = old.Close(ctx)
		}()
		relockWait = 20 * time.Second
		if _, err := run.Conn(ctx, "new"); err != nil {
			t.Fatal(err)
		}
		if held, app := holdsLock(t, run); !held || app != "cutover run run-1" {
			t.Fatalf("holds the lock %v, application_name %q", held, app)
		}
	})

	t.Run("it does not", func(t *testing.T) {
		old, pid := previous()
		defer old.Close(ctx)
		run := lockTargets(t, cl)
		run.locks = map[string]*targetLock{"new": {appName: "cutover run run-1", pid: pid}}
		relockWait = 500 * time.Millisecond
		_, err := run.Conn(ctx, "new")
		var he *LockHeldError
		if !errors.As(err, &he) || !he.Previous || he.Lost || he.PID != pid {
			t.Fatalf("err = %v", err)
		}
		if IsPermanent(err) {
			t.Error("waiting for the previous session may pass: not Permanent")
		}
		if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("is still locked by this run's previous session (backend pid %d, user app, from 127.0.0.1", pid)) ||
			!strings.HasSuffix(msg, fmt.Sprintf("end it with SELECT pg_terminate_backend(%d)", pid)) {
			t.Errorf("error = %q", msg)
		}
		// Once it is gone, the next Conn takes the lock.
		_ = old.Close(ctx)
		relockWait = 20 * time.Second
		if _, err := run.Conn(ctx, "new"); err != nil {
			t.Fatal(err)
		}
		if held, _ := holdsLock(t, run); !held {
			t.Fatal("the lock was not taken once the previous session ended")
		}
	})
}

// Two targets of one run on one database (an admin role and the app's
// role): the second Lock finds the first session holding the lock, and
// that session is the run's own.
func TestTargetLockTwoTargetsOneDatabase(t *testing.T) {
	cl := lockCluster(t)
	ctx := context.Background()
	ts := newTargets(t, map[string]string{"pw": lockTestPassword},
		&schema.Target{Name: "admin", Host: cl.Host, Port: cl.Port, DBName: "appdb", User: "bob", Password: "pw", SSLMode: "disable"},
		&schema.Target{Name: "app", Host: cl.Host, Port: cl.Port, DBName: "appdb", User: "app", Password: "pw", SSLMode: "disable"})
	if err := ts.Lock(ctx, "admin", "cutover run run-1"); err != nil {
		t.Fatal(err)
	}
	if err := ts.Lock(ctx, "app", "cutover run run-1"); err != nil {
		t.Fatalf("the run's second target on the same database: %v", err)
	}
	// Another run, even under the same name, is still refused.
	other := newTargets(t, map[string]string{"pw": lockTestPassword},
		&schema.Target{Name: "app", Host: cl.Host, Port: cl.Port, DBName: "appdb", User: "app", Password: "pw", SSLMode: "disable"})
	var he *LockHeldError
	if err := other.Lock(ctx, "app", "cutover run run-1"); !errors.As(err, &he) {
		t.Fatalf("another run: err = %v, want a LockHeldError", err)
	}
}
