package pgtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// app is the ordinary role most tests connect as.
var app = Role{Name: "app", Password: "app-secret"}

// dial connects to url with the extended protocol but no prepared
// statements, as the project's clients do.
func dial(t testing.TB, url string) (*pgx.Conn, error) {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		t.Cleanup(func() { conn.Close(context.Background()) })
	}
	return conn, err
}

// mustDial is dial that fails the test on error.
func mustDial(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	conn, err := dial(t, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	return conn
}

// usesTLS reports whether conn's backend sees a TLS connection.
func usesTLS(t testing.TB, conn *pgx.Conn) bool {
	t.Helper()
	var ssl bool
	if err := conn.QueryRow(context.Background(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
		t.Fatalf("pg_stat_ssl: %v", err)
	}
	return ssl
}

// sqlState returns the SQLSTATE of err, or "" if it is not a server error.
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// postgresProcesses lists the processes whose command line contains s,
// zombies excluded (their command line is empty).
func postgresProcesses(s string) []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil || e.Name() == strconv.Itoa(os.Getpid()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s)) {
			found = append(found, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return found
}

// baseDir returns a directory for an explicit Options.Dir, reachable by the
// server user and removed after the test.
func baseDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp(tempBase(), "pgtest-base-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func TestTLSEnforcedValidCert(t *testing.T) {
	t.Parallel()
	c := Start(t, Options{
		TLS:       TLSEnforced,
		Cert:      CertValid,
		Roles:     []Role{app},
		Databases: map[string]string{"appdb": "app"},
	})
	verify := []string{"sslmode=verify-full", "sslrootcert=" + c.CAFile}

	conn := mustDial(t, c.URL(app.Name, app.Password, "appdb", verify...))
	if !usesTLS(t, conn) {
		t.Error("verify-full connection: pg_stat_ssl.ssl = false, want true")
	}
	var owner string
	if err := conn.QueryRow(context.Background(),
		"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()").Scan(&owner); err != nil {
		t.Fatal(err)
	}
	if owner != "app" {
		t.Errorf("appdb owner = %q, want app", owner)
	}

	// "localhost" is in the certificate too.
	local := strings.Replace(c.URL(app.Name, app.Password, "appdb", verify...), "127.0.0.1", "localhost", 1)
	if conn, err := dial(t, local); err != nil {
		t.Errorf("verify-full via localhost: %v", err)
	} else if !usesTLS(t, conn) {
		t.Error("verify-full via localhost: not TLS")
	}

	_, err := dial(t, c.URL(app.Name, app.Password, "appdb", "sslmode=disable"))
	if got := sqlState(err); got != "28000" {
		t.Errorf("sslmode=disable on a TLS-enforced cluster: err = %v (SQLSTATE %q), want SQLSTATE 28000", err, got)
	}

	_, err = dial(t, c.URL(app.Name, "not-the-password", "appdb", verify...))
	if got := sqlState(err); got != "28P01" {
		t.Errorf("wrong password over TLS: err = %v (SQLSTATE %q), want 28P01", err, got)
	}
}

func TestTLSOptionalAcceptsBoth(t *testing.T) {
	t.Parallel()
	c := Start(t, Options{TLS: TLSOptional, Roles: []Role{app}})

	plain := mustDial(t, c.URL(app.Name, app.Password, "postgres", "sslmode=disable"))
	if usesTLS(t, plain) {
		t.Error("sslmode=disable: connection uses TLS")
	}
	secure := mustDial(t, c.URL(app.Name, app.Password, "postgres", "sslmode=verify-full", "sslrootcert="+c.CAFile))
	if !usesTLS(t, secure) {
		t.Error("sslmode=verify-full: connection does not use TLS")
	}
}

func TestTLSOffRefusesTLS(t *testing.T) {
	t.Parallel()
	c := Start(t, Options{TLS: TLSOff, Roles: []Role{app}})

	_, err := dial(t, c.URL(app.Name, app.Password, "postgres", "sslmode=require"))
	if err == nil {
		t.Fatal("sslmode=require on an ssl=off server: connected, want an error")
	}
	if !strings.Contains(err.Error(), "refused TLS") {
		t.Errorf("sslmode=require: err = %v, want the server to refuse TLS", err)
	}
	plain := mustDial(t, c.URL(app.Name, app.Password, "postgres", "sslmode=disable"))
	if usesTLS(t, plain) {
		t.Error("plaintext connection reports TLS")
	}
	var ssl string
	if err := plain.QueryRow(context.Background(), "SHOW ssl").Scan(&ssl); err != nil || ssl != "off" {
		t.Errorf("SHOW ssl = %q, %v; want off", ssl, err)
	}
}

func TestBadCertificatesFailVerifyFull(t *testing.T) {
	t.Parallel()
	cases := []struct {
		kind  CertKind
		check func(error) bool
		want  string
		// verifyCA is whether sslmode=verify-ca (chain, no host name)
		// succeeds.
		verifyCA bool
	}{
		{CertExpired, func(err error) bool {
			var e x509.CertificateInvalidError
			return errors.As(err, &e) && e.Reason == x509.Expired
		}, "x509.CertificateInvalidError{Reason: Expired}", false},
		{CertWrongHost, func(err error) bool {
			var e x509.HostnameError
			return errors.As(err, &e)
		}, "x509.HostnameError", true},
		{CertUnknownCA, func(err error) bool {
			var e x509.UnknownAuthorityError
			return errors.As(err, &e)
		}, "x509.UnknownAuthorityError", false},
	}
	for _, tc := range cases {
		t.Run(tc.kind.String(), func(t *testing.T) {
			t.Parallel()
			c := Start(t, Options{TLS: TLSEnforced, Cert: tc.kind, Roles: []Role{app}})

			_, err := dial(t, c.URL(app.Name, app.Password, "postgres", "sslmode=verify-full", "sslrootcert="+c.CAFile))
			if err == nil {
				t.Fatal("verify-full connected, want a certificate error")
			}
			if !tc.check(err) {
				t.Errorf("verify-full: err = %v, want %s", err, tc.want)
			}

			_, err = dial(t, c.URL(app.Name, app.Password, "postgres", "sslmode=verify-ca", "sslrootcert="+c.CAFile))
			if (err == nil) != tc.verifyCA {
				t.Errorf("verify-ca: err = %v, want success %v", err, tc.verifyCA)
			}

			// The server itself is fine: unverified TLS works.
			conn := mustDial(t, c.URL(app.Name, app.Password, "postgres", "sslmode=require"))
			if !usesTLS(t, conn) {
				t.Error("sslmode=require: not TLS")
			}
			if tc.kind == CertUnknownCA {
				conn := mustDial(t, c.URL(app.Name, app.Password, "postgres", "sslmode=verify-full", "sslrootcert="+c.OtherCAFile))
				if !usesTLS(t, conn) {
					t.Error("verify-full against the signing CA: not TLS")
				}
			}
		})
	}
}

func TestSCRAMAuthentication(t *testing.T) {
	t.Parallel()
	// Characters that must be escaped in a URL, and quotes for SQL.
	odd := Role{Name: `o'd"d@us:er/x?`, Password: `p@ss:w/rd?#%' \x+`, CanCreateDB: true}
	c := Start(t, Options{
		Roles:     []Role{app, odd, {Name: "boss", Password: "b", Superuser: true}},
		Databases: map[string]string{"odd db/?": odd.Name},
	})

	conn := mustDial(t, c.URL(odd.Name, odd.Password, "odd db/?"))
	var user, db, method string
	var super, createdb bool
	err := conn.QueryRow(context.Background(), `SELECT current_user, current_database(), rolsuper, rolcreatedb
		FROM pg_roles WHERE rolname = current_user`).Scan(&user, &db, &super, &createdb)
	if err != nil {
		t.Fatal(err)
	}
	if user != odd.Name || db != "odd db/?" || super || !createdb {
		t.Errorf("got user %q db %q super %v createdb %v", user, db, super, createdb)
	}

	boss := mustDial(t, c.URL("boss", "b", "postgres"))
	if err := boss.QueryRow(context.Background(),
		"SELECT substr(rolpassword, 1, 14) FROM pg_authid WHERE rolname = $1", app.Name).Scan(&method); err != nil {
		t.Fatal(err)
	}
	if method != "SCRAM-SHA-256$" {
		t.Errorf("app's stored password starts %q, want a SCRAM-SHA-256 verifier", method)
	}

	for _, tc := range []struct{ user, password string }{
		{app.Name, "wrong"},
		{odd.Name, odd.Password + "x"},
		{"nosuchrole", "x"},
	} {
		_, err := dial(t, c.URL(tc.user, tc.password, "postgres"))
		if got := sqlState(err); got != "28P01" {
			t.Errorf("user %q, wrong password: err = %v (SQLSTATE %q), want 28P01", tc.user, err, got)
		}
	}
}

func TestStopLeavesNoProcess(t *testing.T) {
	t.Parallel()
	RequireBinaries(t)
	c, err := New(Options{TLS: TLSOptional, Roles: []Role{app}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	// A client connection gives the server a backend to shut down too.
	conn := mustDial(t, c.URL(app.Name, app.Password, "postgres", "sslmode=disable"))
	_ = conn

	if procs := postgresProcesses(c.DataDir); len(procs) == 0 {
		t.Fatalf("no process has %s in its command line while the cluster runs", c.DataDir)
	}
	if procs := postgresProcesses("postgres: " + c.name + ":"); len(procs) < 2 {
		t.Errorf("server children titled %q: %v, want several", c.name, procs)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if procs := postgresProcesses(c.DataDir); len(procs) > 0 {
		t.Errorf("after Stop, processes still name %s:\n%s", c.DataDir, strings.Join(procs, "\n"))
	}
	// Children exit on their own once the postmaster is gone; allow a moment.
	deadline := time.Now().Add(5 * time.Second)
	for len(postgresProcesses("postgres: "+c.name+":")) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if procs := postgresProcesses("postgres: " + c.name + ":"); len(procs) > 0 {
		t.Errorf("after Stop, server children remain:\n%s", strings.Join(procs, "\n"))
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("temporary Dir %s not removed: %v", c.Dir, err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if c.reaper.cmd.ProcessState == nil {
		t.Error("cleanup process not waited for")
	}
}

func TestParallelClustersGetDistinctPorts(t *testing.T) {
	t.Parallel()
	RequireBinaries(t)
	const n = 4
	clusters := make([]*Cluster, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { clusters[i], errs[i] = New(Options{}) })
	}
	wg.Wait()
	for i, c := range clusters {
		if c != nil {
			t.Cleanup(func() {
				if err := c.Stop(); err != nil {
					t.Error(err)
				}
			})
		}
		if errs[i] != nil {
			t.Fatalf("cluster %d: %v", i, errs[i])
		}
	}
	seen := map[int]bool{}
	for i, c := range clusters {
		if seen[c.Port] {
			t.Errorf("port %d used twice", c.Port)
		}
		seen[c.Port] = true
		// Each cluster answers on its own port with its own marker.
		ctx := context.Background()
		if err := c.Exec(ctx, "", fmt.Sprintf("CREATE TABLE marker AS SELECT %d AS i", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range clusters {
		conn, err := c.connect(context.Background(), "postgres")
		if err != nil {
			t.Fatal(err)
		}
		var got, port int
		if err := conn.QueryRow(context.Background(), "SELECT i, current_setting('port')::int FROM marker").Scan(&got, &port); err != nil {
			t.Fatal(err)
		}
		conn.Close(context.Background())
		if got != i || port != c.Port {
			t.Errorf("cluster %d: marker %d, port %d; want %d, %d", i, got, port, i, c.Port)
		}
	}
}

func TestExecConnectionsAndSettings(t *testing.T) {
	t.Parallel()
	c := Start(t, Options{
		Roles:    []Role{app},
		Settings: map[string]string{"max_connections": "37", "application_name": "it's set"},
	})
	ctx := context.Background()
	if c.Version < 10 {
		t.Errorf("Version = %d", c.Version)
	}

	if err := c.Exec(ctx, "postgres", "CREATE TABLE t (v text); GRANT ALL ON t TO app"); err != nil {
		t.Fatalf("multi-statement Exec: %v", err)
	}
	if err := c.Exec(ctx, "postgres", "INSERT INTO t VALUES ($1), ($2)", "a", "b'c"); err != nil {
		t.Fatalf("Exec with args: %v", err)
	}
	if err := c.Exec(ctx, "postgres", "SELECT * FROM nosuchtable"); sqlState(err) != "42P01" {
		t.Errorf("Exec of a bad query: err = %v, want SQLSTATE 42P01", err)
	}

	var conns []*pgx.Conn
	for range 3 {
		conns = append(conns, mustDial(t, c.URL(app.Name, app.Password, "postgres")))
	}
	var maxConns, appName string
	var rows int
	if err := conns[0].QueryRow(ctx, "SELECT current_setting('max_connections'), current_setting('application_name'), (SELECT count(*) FROM t WHERE v IN ('a', 'b''c'))").Scan(&maxConns, &appName, &rows); err != nil {
		t.Fatal(err)
	}
	if maxConns != "37" || rows != 2 {
		t.Errorf("max_connections = %s, rows = %d; want 37, 2", maxConns, rows)
	}

	if n, err := c.Connections(ctx); err != nil || n != 3 {
		t.Errorf("Connections() = %d, %v; want 3", n, err)
	}
	for _, conn := range conns {
		conn.Close(ctx)
	}
	// Backends exit shortly after their client leaves.
	deadline := time.Now().Add(5 * time.Second)
	n, err := c.Connections(ctx)
	for err == nil && n != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		n, err = c.Connections(ctx)
	}
	if err != nil || n != 0 {
		t.Errorf("Connections() after closing = %d, %v; want 0", n, err)
	}

	if log := c.LogTail(5); !strings.Contains(c.LogTail(0), "ready to accept connections") || strings.Count(log, "\n") > 4 {
		t.Errorf("LogTail: %q", log)
	}
}

func TestNewFailureCleansUp(t *testing.T) {
	t.Parallel()
	RequireBinaries(t)
	dir := filepath.Join(baseDir(t), "state")
	c, err := New(Options{Dir: dir, Roles: []Role{app}, Databases: map[string]string{"db": "nosuchowner"}})
	if err == nil {
		c.Stop()
		t.Fatal("New with a database owned by a missing role succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, `role "nosuchowner" does not exist`) || !strings.Contains(msg, "--- tail of") ||
		!strings.Contains(msg, "ready to accept connections") {
		t.Errorf("error lacks the cause or the server log:\n%s", msg)
	}
	if procs := postgresProcesses(filepath.Join(dir, "data")); len(procs) > 0 {
		t.Errorf("failed New left processes:\n%s", strings.Join(procs, "\n"))
	}
	// A given Dir is the caller's: it stays, with the log.
	if _, err := os.Stat(filepath.Join(dir, "postgres.log")); err != nil {
		t.Errorf("log of the failed cluster: %v", err)
	}
	// And it cannot be reused by mistake.
	if _, err := New(Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "already holds a data directory") {
		t.Errorf("New in a used Dir: %v", err)
	}

	for _, bad := range []string{"bad\nname", "port", "Unix_Socket_Directories", "include"} {
		if _, err := New(Options{Settings: map[string]string{bad: "1"}}); err == nil {
			t.Errorf("New accepted the setting %q", bad)
		}
	}
	if _, err := New(Options{Settings: map[string]string{"no_such_setting": "1"}}); err == nil ||
		!strings.Contains(err.Error(), "no_such_setting") {
		t.Errorf("New with an unknown setting: err = %v, want the log naming it", err)
	}
}

func TestGivenDirUnderTempDir(t *testing.T) {
	t.Parallel()
	// t.TempDir's parents are private to this user; New must open them up
	// enough for the server user.
	dir := t.TempDir()
	c := Start(t, Options{Dir: dir})
	if c.DataDir != filepath.Join(dir, "data") {
		t.Errorf("DataDir = %s", c.DataDir)
	}
	if err := c.Exec(context.Background(), "", "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "postgres.log")); err != nil {
		t.Errorf("a given Dir is kept after Stop: %v", err)
	}
}

// TestBusyPortIsRetried hands New a port that another socket holds, as
// happens when the port is taken between its pick and the server's bind.
func TestBusyPortIsRetried(t *testing.T) {
	RequireBinaries(t)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	calls := 0
	pickPort = func() (int, error) {
		calls++
		if calls == 1 {
			return busy, nil
		}
		return reservePort()
	}
	defer func() { pickPort = reservePort }()

	c := Start(t, Options{})
	if calls != 2 || c.Port == busy {
		t.Errorf("ports picked: %d, final port %d (busy one %d); want a second pick", calls, c.Port, busy)
	}
	if log := c.LogTail(0); !strings.Contains(log, "could not bind") {
		t.Errorf("log does not show the failed bind:\n%s", log)
	}
	if err := c.Exec(context.Background(), "", "SELECT 1"); err != nil {
		t.Error(err)
	}
}

func TestURL(t *testing.T) {
	c := &Cluster{Host: "127.0.0.1", Port: 5433}
	ca := filepath.Join(t.TempDir(), "a b+c&d=e", "ca.crt")
	os.Mkdir(filepath.Dir(ca), 0o755)
	caCert, err := newCA("test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, caCert.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	u := c.URL(`u@s:e/r+`, `p@:/?#%+ w&=`, "my db/+", "sslmode=verify-full", "sslrootcert="+ca, "application_name=a+b c")
	cfg, err := pgconn.ParseConfig(u)
	if err != nil {
		t.Fatalf("%s: %v", u, err)
	}
	if cfg.User != `u@s:e/r+` || cfg.Password != `p@:/?#%+ w&=` || cfg.Database != "my db/+" ||
		cfg.Host != "127.0.0.1" || cfg.Port != 5433 || cfg.TLSConfig == nil || cfg.RuntimeParams["application_name"] != "a+b c" {
		t.Errorf("%s parsed as user %q password %q db %q host %s:%d params %v",
			u, cfg.User, cfg.Password, cfg.Database, cfg.Host, cfg.Port, cfg.RuntimeParams)
	}
	if got := c.URL("", "", ""); got != "postgres://127.0.0.1:5433" {
		t.Errorf("bare URL = %s", got)
	}
	if got := c.URL("u", "", "", "sslmode=disable"); got != "postgres://u@127.0.0.1:5433/?sslmode=disable" {
		t.Errorf("URL without password and database = %s", got)
	}
}

func TestBinDir(t *testing.T) {
	RequireBinaries(t)
	d, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	if missing := missingBinaries(d); missing != "" {
		t.Errorf("BinDir() = %s, which lacks %s", d, missing)
	}
	t.Setenv("PGTEST_BINDIR", t.TempDir())
	if _, err := BinDir(); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("BinDir with an empty PGTEST_BINDIR: %v, want ErrNotInstalled", err)
	}
}

// TestProcessDeathLeavesNothingBehind starts a cluster in a child process
// that then exits without Stop, as a test binary does on a timeout, and
// checks that the server and the directories go away anyway.
func TestProcessDeathLeavesNothingBehind(t *testing.T) {
	if os.Getenv("PGTEST_DYING_CHILD") == "1" {
		c, err := New(Options{TLS: TLSEnforced, Roles: []Role{app}})
		if err != nil {
			fmt.Println("ERROR", err)
			os.Exit(2)
		}
		conn, err := c.connect(context.Background(), "postgres")
		if err != nil {
			fmt.Println("ERROR", err)
			os.Exit(2)
		}
		_ = conn // an open connection, abandoned
		fmt.Printf("DATADIR %s\nDIR %s\nNAME %s\nTEMPLATE %s\n", c.DataDir, c.Dir, c.name, filepath.Dir(templates.byBin[c.BinDir].dataDir))
		os.Exit(3)
	}
	t.Parallel()
	RequireBinaries(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestProcessDeathLeavesNothingBehind$", "-test.count=1")
	cmd.Env = append(os.Environ(), "PGTEST_DYING_CHILD=1")
	cmd.WaitDelay = 30 * time.Second
	out, err := cmd.Output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("child: %v\n%s", err, out)
	}
	got := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok {
			got[k] = v
		}
	}
	if got["DATADIR"] == "" || got["NAME"] == "" || got["TEMPLATE"] == "" {
		t.Fatalf("child output:\n%s", out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		procs := append(postgresProcesses(got["DATADIR"]), postgresProcesses("postgres: "+got["NAME"]+":")...)
		var left []string
		for _, d := range []string{got["DIR"], got["TEMPLATE"]} {
			if _, err := os.Stat(d); err == nil {
				left = append(left, d)
			}
		}
		if len(procs) == 0 && len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("20s after the process died, left behind:\nprocesses: %v\ndirectories: %v", procs, left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStartupTime logs what starting a cluster costs, and what the
// template saves.
func TestStartupTime(t *testing.T) {
	RequireBinaries(t)
	c := Start(t, Options{}) // the template exists from here on
	tmpl := templates.byBin[c.BinDir]

	// One more initdb, to compare with copying the template.
	base := baseDir(t)
	owner, err := serverUser()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := runInitdb(c.BinDir, owner, filepath.Join(base, "initdb")); err != nil {
		t.Fatal(err)
	}
	initdb := time.Since(start)
	start = time.Now()
	if err := copyTree(tmpl.dataDir, filepath.Join(base, "copy")); err != nil {
		t.Fatal(err)
	}
	copied := time.Since(start)

	const n = 5
	var plain, full time.Duration
	for range n {
		start := time.Now()
		c, err := New(Options{})
		if err != nil {
			t.Fatal(err)
		}
		plain += time.Since(start)
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		c, err = New(Options{TLS: TLSEnforced, Roles: []Role{app}, Databases: map[string]string{"appdb": "app"}})
		if err != nil {
			t.Fatal(err)
		}
		full += time.Since(start)
		start = time.Now()
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("PostgreSQL %d from %s", c.Version, c.BinDir)
	t.Logf("initdb: %v (first run, for the template: %v); copying the template: %v", initdb.Round(time.Millisecond), tmpl.took.Round(time.Millisecond), copied.Round(time.Millisecond))
	t.Logf("New from the template: %v plain, %v with TLS, a role and a database (mean of %d)",
		(plain / n).Round(time.Millisecond), (full / n).Round(time.Millisecond), n)
}

func BenchmarkStart(b *testing.B) {
	RequireBinaries(b)
	Start(b, Options{}) // make the template outside the timing
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{"plain", Options{}},
		{"tls-role-db", Options{TLS: TLSEnforced, Roles: []Role{app}, Databases: map[string]string{"appdb": "app"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				c, err := New(bc.opts)
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Stop(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
