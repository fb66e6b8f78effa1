package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcutover/cutover/steps/pgtest"
)

// TestSandboxLifecycle drives `cutover sandbox` as a user would: up, up
// again, env, the demo Django app against both clusters, down, up again from
// another process (data kept), and down --purge, checking after each down
// that no server process of the sandbox is left.
func TestSandboxLifecycle(t *testing.T) {
	pgtest.RequireBinaries(t)
	dir := filepath.Join(t.TempDir(), "sandbox")

	out, errOut, code := runSandboxCLI(t, "sandbox", "up", "--dir", dir)
	t.Cleanup(func() {
		if _, e, c := runSandboxCLI(t, "sandbox", "down", "--purge", "--dir", dir); c != 0 {
			t.Errorf("cleanup: sandbox down --purge: exit %d: %s", c, e)
		}
	})
	if code != 0 {
		t.Fatalf("sandbox up: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "sandbox up in "+dir) {
		t.Errorf("sandbox up says:\n%s", out)
	}
	vars := readSandboxEnv(t, filepath.Join(dir, sandboxEnvFile))
	st := mustReadSandboxState(t, dir)
	secrets := []string{vars["DB_PASSWORD"], vars["OLD_DB_PASSWORD"]}
	for _, p := range secrets {
		if len(p) < 20 {
			t.Fatalf("password %q is too short", p)
		}
	}
	noSandboxPasswords(t, "sandbox up", out+errOut, secrets)
	stateJSON, _ := os.ReadFile(filepath.Join(dir, sandboxStateFile))
	noSandboxPasswords(t, sandboxStateFile, string(stateJSON), secrets)
	checkSandboxFileMode(t, filepath.Join(dir, sandboxEnvFile), 0o600)
	for _, c := range st.Clusters {
		checkSandboxFileMode(t, c.PasswordFile, 0o600)
	}

	out, _, code = runSandboxCLI(t, "sandbox", "up", "--dir", dir)
	if code != 0 || !strings.Contains(out, "sandbox already up in "+dir) {
		t.Errorf("second sandbox up: exit %d, stdout:\n%s", code, out)
	}
	noSandboxPasswords(t, "second sandbox up", out, secrets)

	t.Run("clusters", func(t *testing.T) {
		checkSandboxClusters(t, vars, st)
	})

	t.Run("env", func(t *testing.T) {
		checkSandboxEnv(t, dir, vars)
	})

	var app *demoServer
	t.Run("django", func(sub *testing.T) {
		// runserver stays up until the sandbox is down, after this subtest.
		app = checkSandboxDjango(sub, vars, func(f func()) { t.Cleanup(f) })
	})

	out, errOut, code = runSandboxCLI(t, "sandbox", "down", "--dir", dir)
	if code != 0 || !strings.Contains(out, "stopped old") || !strings.Contains(out, "new (127.0.0.1:") {
		t.Fatalf("sandbox down: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	noSandboxProcesses(t, st)
	if app != nil {
		// With its database gone, the app's health check says so.
		if code, body := app.get(t, "/healthz"); code != http.StatusServiceUnavailable {
			t.Errorf("GET /healthz with the sandbox down: %d %s, want 503", code, body)
		}
		app.stop()
		if t.Failed() {
			t.Logf("runserver output:\n%s", app.output())
		}
	}
	out, _, code = runSandboxCLI(t, "sandbox", "down", "--dir", dir)
	if code != 0 || !strings.Contains(out, "is not up") {
		t.Errorf("sandbox down when down: exit %d, stdout:\n%s", code, out)
	}

	// up again, in a process of its own that exits: the clusters outlive
	// it, and keep their data.
	bin, err := exec.LookPath("cutover")
	if err != nil {
		t.Fatalf("the cutover command of the test binary: %v", err)
	}
	cmd := exec.Command(bin, "sandbox", "up", "--dir", dir)
	upOut, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(upOut), "started old and new again, data kept") {
		t.Fatalf("cutover sandbox up (restart): %v\n%s", err, upOut)
	}
	noSandboxPasswords(t, "sandbox up (restart)", string(upOut), secrets)
	vars = readSandboxEnv(t, filepath.Join(dir, sandboxEnvFile))
	conn := sandboxConnect(t, vars["DATABASE_URL"])
	var n int
	query := "SELECT count(*) FROM pg_database WHERE datname = 'shop'"
	if app != nil {
		query = "SELECT count(*) FROM catalog_order"
	}
	if err := conn.QueryRow(context.Background(), query).Scan(&n); err != nil || n != 1 {
		t.Errorf("after the restart, %s: %d, %v; want 1", query, n, err)
	}
	conn.Close(context.Background())

	out, errOut, code = runSandboxCLI(t, "sandbox", "down", "--purge", "--dir", dir)
	if code != 0 || !strings.Contains(out, "deleted "+dir) {
		t.Fatalf("sandbox down --purge: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	noSandboxProcesses(t, st)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after down --purge, %s: %v", dir, err)
	}
}

// checkSandboxClusters checks that the new cluster refuses plaintext and verifies
// with the CA, that the old one accepts plaintext, that role shop owns
// database shop on both without being a superuser, and that the servers do
// not depend on this process.
func checkSandboxClusters(t *testing.T, vars map[string]string, st *sandboxState) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, url string
		tls       bool
	}{
		{"new", vars["DATABASE_URL"], true},
		{"old", vars["OLD_DATABASE_URL"], true},
		{"old plaintext", sandboxURLWithSSLMode(t, vars["OLD_DATABASE_URL"], "disable"), false},
	} {
		conn := sandboxConnect(t, tc.url)
		var db, usr, owner string
		var super, ssl bool
		err := conn.QueryRow(ctx, `SELECT current_database(), current_user, r.rolsuper, pg_get_userbyid(d.datdba),
			(SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())
			FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = current_database()`).
			Scan(&db, &usr, &super, &owner, &ssl)
		conn.Close(ctx)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if db != "shop" || usr != "shop" || owner != "shop" || super || ssl != tc.tls {
			t.Errorf("%s: database %s, user %s (superuser %v), owner %s, TLS %v; want shop, shop (not superuser), shop, TLS %v",
				tc.name, db, usr, super, owner, ssl, tc.tls)
		}
	}

	_, err := pgx.Connect(ctx, sandboxURLWithSSLMode(t, vars["DATABASE_URL"], "disable"))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28000" || !strings.Contains(pgErr.Message, "no encryption") {
		t.Errorf("plaintext connection to the new cluster: %v; want SQLSTATE 28000 ... no encryption", err)
	}
	other := strings.Replace(vars["DATABASE_URL"], "ca.crt", "other-ca.crt", 1)
	if _, err := pgx.Connect(ctx, other); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("new cluster verified against another CA: %v; want a certificate error", err)
	}

	for _, c := range st.Clusters {
		pid, err := sandboxPostmasterPID(c.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		ppid, sid := sandboxProcStat(t, pid)
		if ppid == os.Getpid() || sid != pid {
			t.Errorf("cluster %s: postmaster %d has parent %d and session %d; want a session of its own, not a child of the test (%d)",
				c.Name, pid, ppid, sid, os.Getpid())
		}
	}
}

// checkSandboxEnv checks that `cutover sandbox env`, run as a command of its own,
// prints what sandbox.env holds, as lines a POSIX shell evaluates back to
// the same values.
func checkSandboxEnv(t *testing.T, dir string, vars map[string]string) {
	bin, err := exec.LookPath("cutover")
	if err != nil {
		t.Fatalf("the cutover command of the test binary: %v", err)
	}
	out, err := exec.Command(bin, "sandbox", "env", "--dir", dir).Output()
	if err != nil {
		t.Fatalf("cutover sandbox env: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.HasPrefix(line, "# ") && !strings.HasPrefix(line, "export ") {
			t.Errorf("sandbox env printed %q: neither a comment nor an export", line)
		}
	}
	script := string(out) + "\nenv\n"
	shOut, err := exec.Command("/bin/sh", "-c", script).Output()
	if err != nil {
		t.Fatalf("sh evaluating sandbox env: %v", err)
	}
	got := map[string]string{}
	for _, line := range strings.Split(string(shOut), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			got[k] = v
		}
	}
	for _, k := range []string{"SANDBOX_DIR", "DATABASE_URL", "DB_NAME", "DB_USER", "DB_PASSWORD", "DB_HOST", "DB_PORT",
		"DB_SSLMODE", "DB_SSLROOTCERT", "OLD_DATABASE_URL", "OLD_DB_PASSWORD", "OLD_DB_PORT"} {
		if vars[k] == "" || got[k] != vars[k] {
			t.Errorf("%s: sandbox env gives %q, sandbox.env %q", k, got[k], vars[k])
		}
	}
	if vars["SANDBOX_DIR"] != dir || vars["DB_SSLMODE"] != "verify-full" || vars["OLD_DB_SSLMODE"] != "prefer" {
		t.Errorf("SANDBOX_DIR %q, DB_SSLMODE %q, OLD_DB_SSLMODE %q", vars["SANDBOX_DIR"], vars["DB_SSLMODE"], vars["OLD_DB_SSLMODE"])
	}
	u, err := url.Parse(vars["DATABASE_URL"])
	if err != nil || u.Query().Get("sslmode") != "verify-full" || u.Query().Get("sslrootcert") != vars["DB_SSLROOTCERT"] ||
		u.Port() != vars["DB_PORT"] || u.User.Username() != vars["DB_USER"] {
		t.Errorf("DATABASE_URL does not match DB_*: %v", err)
	}
}

// checkSandboxDjango migrates the demo app (plans/demo) against the new cluster
// with the sandbox's environment, proves the non-atomic migration 0004 can
// be made to fail half-way on the old cluster, and starts runserver on a
// free port; it returns the running server, which cleanup stops.
func checkSandboxDjango(t *testing.T, vars map[string]string, cleanup func(func())) *demoServer {
	python := requireDemoPython(t)
	demo, err := filepath.Abs(filepath.Join("..", "..", "plans", "demo"))
	if err != nil {
		t.Fatal(err)
	}
	env := demoEnv(vars)
	manage := func(extra []string, args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(python, append([]string{"manage.py"}, args...)...)
		cmd.Dir = demo
		cmd.Env = append(append([]string(nil), env...), extra...)
		out, err := cmd.CombinedOutput()
		code := 0
		if err != nil {
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("manage.py %s: %v", strings.Join(args, " "), err)
			}
			code = exit.ExitCode()
		}
		return string(out), code
	}
	for _, step := range []struct {
		args []string
		want int
	}{
		{[]string{"check", "--database", "default"}, 0},
		{[]string{"migrate", "--plan", "--check"}, 1}, // pending
		{[]string{"migrate", "--noinput"}, 0},
		{[]string{"migrate", "--plan", "--check"}, 0}, // nothing pending
	} {
		if out, code := manage(nil, step.args...); code != step.want {
			t.Fatalf("manage.py %s: exit %d, want %d\n%s", strings.Join(step.args, " "), code, step.want, out)
		}
	}

	// On the old cluster, the flaky migration fails after creating its
	// table and is not recorded: a half-applied migration.
	old := []string{"DATABASE_URL=" + vars["OLD_DATABASE_URL"], "SHOP_BREAK_MIGRATION=1"}
	if out, code := manage(old, "migrate", "--noinput"); code == 0 || !strings.Contains(out, "SHOP_BREAK_MIGRATION=1: failing") {
		t.Errorf("migrate with SHOP_BREAK_MIGRATION=1: exit %d\n%s", code, out)
	}
	conn := sandboxConnect(t, vars["OLD_DATABASE_URL"])
	var table *string
	var recorded, flaky int
	err = conn.QueryRow(context.Background(), `SELECT to_regclass('catalog_half_applied')::text,
		(SELECT count(*) FROM django_migrations WHERE app = 'catalog'),
		(SELECT count(*) FROM django_migrations WHERE app = 'catalog' AND name = '0004_flaky')`).Scan(&table, &recorded, &flaky)
	conn.Close(context.Background())
	if err != nil || table == nil || recorded != 3 || flaky != 0 {
		t.Errorf("old cluster after the broken migrate: table %v, %d catalog migrations recorded, 0004 recorded %d times (%v); want the table, 3, 0",
			table, recorded, flaky, err)
	}

	app := startDemoServer(t, python, demo, env)
	cleanup(app.stop)
	code, body := app.get(t, "/healthz")
	var health map[string]any
	if err := json.Unmarshal([]byte(body), &health); code != http.StatusOK || err != nil ||
		health["db"] != "ok" || health["database"] != "shop" || health["tls"] != true {
		t.Errorf("GET /healthz: %d %s", code, body)
	}
	code, body = app.get(t, "/products/")
	if code != http.StatusOK || !strings.Contains(body, `"sku": "SKU-000001"`) || !strings.Contains(body, `"count": 3`) {
		t.Errorf("GET /products/: %d %s", code, body)
	}
	code, body = app.post(t, "/orders/", `{"product": "SKU-000001", "quantity": 2}`)
	if code != http.StatusCreated || !strings.Contains(body, `"total": "49.80"`) {
		t.Errorf("POST /orders/: %d %s", code, body)
	}
	noSandboxPasswords(t, "runserver output", app.output(), []string{vars["DB_PASSWORD"], vars["OLD_DB_PASSWORD"]})
	return app
}

// requireDemoPython returns a Python that can import Django, psycopg2 and
// dj_database_url, preferring the system's; without one it skips the test,
// or fails it when $CI is true.
func requireDemoPython(t *testing.T) string {
	t.Helper()
	candidates := []string{"/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	var tried []string
	for _, p := range candidates {
		out, err := exec.Command(p, "-c", "import django, psycopg2, dj_database_url; print(django.get_version())").CombinedOutput()
		if err == nil {
			return p
		}
		tried = append(tried, fmt.Sprintf("%s: %s", p, sandboxLastLines(strings.TrimSpace(string(out))+" "+err.Error(), 1)))
	}
	msg := "no python3 with django, psycopg2 and dj_database_url (Debian: apt-get install python3-django python3-psycopg2 python3-dj-database-url); tried " +
		strings.Join(tried, "; ")
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatalf("%s (CI is set, so this fails instead of skipping)", msg)
	}
	t.Skip(msg)
	return ""
}

// demoEnv is this process's environment without database, libpq and
// Django variables, plus the sandbox's: what `eval "$(cutover sandbox
// env)"` gives a shell.
func demoEnv(vars map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "DB_") || strings.HasPrefix(k, "OLD_") || strings.HasPrefix(k, "PG") ||
			strings.HasPrefix(k, "DJANGO_") || strings.HasPrefix(k, "PYTHON") ||
			k == "DATABASE_URL" || k == "SHOP_BREAK_MIGRATION" || k == "CONN_MAX_AGE" || k == "DEBUG" || k == "ALLOWED_HOSTS" {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return append(env, "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1")
}

// demoServer is a running `manage.py runserver`.
type demoServer struct {
	cmd  *exec.Cmd
	base string
	log  string
	done chan struct{}
	once sync.Once
}

// startDemoServer starts runserver on a free loopback port in a process group
// of its own and waits until it answers.
func startDemoServer(t *testing.T, python, demo string, env []string) *demoServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	logPath := filepath.Join(t.TempDir(), "runserver.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(python, "manage.py", "runserver", addr, "--noreload")
	cmd.Dir = demo
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &demoServer{cmd: cmd, base: "http://" + addr, log: logPath, done: make(chan struct{})}
	defer func() {
		if t.Failed() {
			s.stop()
		}
	}()
	go func() { cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-s.done:
			t.Fatalf("runserver exited:\n%s", s.output())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("runserver does not listen on %s after 30s:\n%s", addr, s.output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends runserver's process group and waits for it. Calls after the
// first do nothing.
func (s *demoServer) stop() {
	s.once.Do(func() {
		pgid := s.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-s.done
		}
	})
}

func (s *demoServer) output() string {
	b, _ := os.ReadFile(s.log)
	return string(b)
}

func (s *demoServer) get(t *testing.T, path string) (int, string) {
	t.Helper()
	return s.do(t, http.MethodGet, path, "")
}

func (s *demoServer) post(t *testing.T, path, body string) (int, string) {
	t.Helper()
	return s.do(t, http.MethodPost, path, body)
}

func (s *demoServer) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: 20 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", method, path, err, s.output())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// runSandboxCLI runs the CLI in this process.
func runSandboxCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(""), &out, &errb, nil)
	return out.String(), errb.String(), code
}

// readSandboxEnv reads a sandbox.env: comments and KEY=VALUE lines, values
// optionally in single quotes.
func readSandboxEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: line %q", path, line)
		}
		if strings.HasPrefix(v, "'") {
			if !strings.HasSuffix(v, "'") || len(v) < 2 {
				t.Fatalf("%s: unterminated quote in %q", path, line)
			}
			v = strings.ReplaceAll(v[1:len(v)-1], `'\''`, "'")
		}
		vars[k] = v
	}
	return vars
}

func mustReadSandboxState(t *testing.T, dir string) *sandboxState {
	t.Helper()
	st, err := readSandboxState(dir)
	if err != nil || st == nil || len(st.Clusters) != 2 {
		t.Fatalf("%s: %+v, %v", filepath.Join(dir, sandboxStateFile), st, err)
	}
	return st
}

// noSandboxProcesses fails if a process of the sandbox's clusters still runs.
func noSandboxProcesses(t *testing.T, st *sandboxState) {
	t.Helper()
	for _, c := range st.Clusters {
		if pids := c.processes(); len(pids) > 0 {
			t.Errorf("cluster %s: processes %v still run", c.Name, pids)
		}
	}
}

func noSandboxPasswords(t *testing.T, what, text string, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%s shows a password", what)
		}
	}
}

func checkSandboxFileMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}

func sandboxConnect(t *testing.T, connString string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return conn
}

// sandboxURLWithSSLMode returns the URL with sslmode set and no sslrootcert.
func sandboxURLWithSSLMode(t *testing.T, raw, mode string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("sslmode", mode)
	q.Del("sslrootcert")
	u.RawQuery = q.Encode()
	return u.String()
}

// sandboxProcStat returns the parent pid and session id of pid.
func sandboxProcStat(t *testing.T, pid int) (ppid, sid int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	// pid (comm) state ppid pgrp session ...; comm may hold spaces.
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(fields) < 4 {
		t.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	ppid, _ = strconv.Atoi(fields[1])
	sid, _ = strconv.Atoi(fields[3])
	return ppid, sid
}
