// Package pgtest runs throwaway PostgreSQL clusters on the loopback
// interface: for the project's tests, and for a local sandbox.
//
// A cluster is a fresh data directory with its own port, socket directory,
// log, TLS certificates and pg_hba.conf, started by pg_ctl from the
// PostgreSQL binaries installed on the machine (see BinDir). Clusters are
// tuned for speed, not durability: fsync, full_page_writes and
// synchronous_commit are off.
//
// The first cluster of a process runs initdb once into a template directory;
// later clusters copy it. When the process runs as root, the server runs as
// the unprivileged "postgres" user, since PostgreSQL refuses root.
//
// Nothing outlives the process: Stop shuts a cluster down and removes what
// New created, and beside each cluster a small cleanup process watches a
// pipe from this process; if the process dies without calling Stop (a crash,
// a test timeout, a kill), it shuts the server down and removes the
// cluster's temporary directories. A Cluster that is dropped without Stop
// runs until the process exits.
//
// The core API does not depend on package testing; Start and
// RequireBinaries are thin wrappers for tests.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// TLSMode selects whether the server offers TLS, and whether pg_hba.conf
// requires it for TCP connections.
type TLSMode int

const (
	// TLSOff runs the server with ssl=off: TCP connections are plaintext,
	// and a client that requires TLS is refused it.
	TLSOff TLSMode = iota
	// TLSOptional runs with ssl=on and `host` lines in pg_hba.conf, which
	// accept both TLS and plaintext connections.
	TLSOptional
	// TLSEnforced runs with ssl=on, accepts TCP connections only through
	// `hostssl ... scram-sha-256` lines, and rejects plaintext ones with
	// `hostnossl all all all reject` (SQLSTATE 28000).
	TLSEnforced
)

// String returns the name of the mode.
func (m TLSMode) String() string {
	switch m {
	case TLSOff:
		return "TLSOff"
	case TLSOptional:
		return "TLSOptional"
	case TLSEnforced:
		return "TLSEnforced"
	}
	return "TLSMode(" + strconv.Itoa(int(m)) + ")"
}

// CertKind selects the server certificate, to exercise clients' certificate
// verification. Every kind is an ECDSA P-256 certificate generated at run
// time.
type CertKind int

const (
	// CertValid is signed by the CA in Cluster.CAFile, valid now, for
	// localhost, 127.0.0.1 and ::1.
	CertValid CertKind = iota
	// CertExpired is like CertValid but its validity ended a day ago.
	CertExpired
	// CertWrongHost is like CertValid but names only db.wrong.invalid.
	CertWrongHost
	// CertUnknownCA is like CertValid but signed by a CA other than the
	// one in Cluster.CAFile (the one in Cluster.OtherCAFile).
	CertUnknownCA
)

// String returns the name of the kind.
func (k CertKind) String() string {
	switch k {
	case CertValid:
		return "CertValid"
	case CertExpired:
		return "CertExpired"
	case CertWrongHost:
		return "CertWrongHost"
	case CertUnknownCA:
		return "CertUnknownCA"
	}
	return "CertKind(" + strconv.Itoa(int(k)) + ")"
}

// Role is a login role created in a new cluster.
type Role struct {
	// Name of the role. Listing the bootstrap superuser "postgres" sets its
	// password; it stays a superuser.
	Name string
	// Password, stored as a SCRAM-SHA-256 verifier. Empty means none: the
	// role cannot log in over TCP, which always asks for a password.
	Password string
	// Superuser makes the role a superuser.
	Superuser bool
	// CanCreateDB grants CREATEDB.
	CanCreateDB bool
}

// Options configures a new cluster. The zero value is a plaintext cluster
// with only the "postgres" superuser, in a new temporary directory.
type Options struct {
	// TLS selects TLS and the pg_hba.conf rules for TCP connections.
	TLS TLSMode
	// Cert selects the server certificate (used unless TLS is TLSOff).
	Cert CertKind
	// Roles are created (or, if they exist, altered) with
	// password_encryption=scram-sha-256.
	Roles []Role
	// Databases maps database names to their owners; an empty owner
	// means "postgres". They are created after the roles.
	Databases map[string]string
	// Settings are extra postgresql.conf parameters, such as
	// max_connections or wal_level. They override the defaults of this
	// package (such as shared_buffers=16MB and fsync=off), except
	// listen_addresses, port, unix_socket_directories and cluster_name,
	// which New rejects.
	Settings map[string]string
	// Dir is the state directory (created if missing; it must not hold a
	// "data" directory yet). Empty means a new temporary directory, which
	// Stop removes; a given Dir is left in place. Temporary directories go
	// to $PGTEST_TMPDIR if set, else to /dev/shm if it is a roomy tmpfs and
	// $TMPDIR is unset (a data directory is a thousand files, which a
	// tmpfs creates several times faster than a disk), else to $TMPDIR.
	Dir string
	// BinDir is the directory of the server programs; empty means the one
	// BinDir finds.
	BinDir string
}

// Cluster is a running PostgreSQL server. Its fields describe it and must
// not be changed.
type Cluster struct {
	// Host is the TCP address the server listens on, "127.0.0.1".
	Host string
	// Port is the TCP port, also the port number of the Unix socket.
	Port int
	// Dir is the state directory: data directory, certificates, socket
	// directory and log.
	Dir string
	// DataDir is the data directory, Dir/data.
	DataDir string
	// LogFile is the server log, Dir/postgres.log.
	LogFile string
	// BinDir is the directory of the server programs.
	BinDir string
	// CAFile is the PEM file of the CA a client should trust. With
	// CertUnknownCA it is not the CA that signed the server certificate.
	CAFile string
	// OtherCAFile is the PEM file of a second CA: the signer of the server
	// certificate with CertUnknownCA, unrelated to it otherwise.
	OtherCAFile string
	// ServerCertFile is the PEM file of the server certificate.
	ServerCertFile string
	// SocketDir is the Unix socket directory, normally Dir/sock (or a
	// shorter temporary directory when that path is too long for a socket).
	SocketDir string
	// Version is the server's major version, such as 15.
	Version int

	owner      runAs
	name       string // cluster_name, unique within the machine
	tls        TLSMode
	settings   map[string]string
	certs      certFiles
	ownedDirs  []string // removed by Stop
	reaper     *reaper
	mu         sync.Mutex
	pid        int // postmaster
	stopped    bool
	stopErr    error
	portIsOurs bool
}

// Timeouts of the server programs.
const (
	startTimeout = 60 * time.Second
	stopTimeout  = 30 * time.Second
	// startAttempts bounds the retries with another port when the chosen
	// one was taken before the server could bind it.
	startAttempts = 3
	// maxSocketPath is the longest Unix socket path PostgreSQL accepts.
	maxSocketPath = 107
)

// clusterSeq numbers the clusters of this process.
var clusterSeq atomic.Int64

// New creates and starts a cluster: it copies a data directory made by
// initdb (run once per process, as "postgres" when running as root, with
// trust authentication on the local socket), writes certificates,
// postgresql.conf and pg_hba.conf, picks a free loopback port, starts the
// server with pg_ctl, and creates the roles and databases through the Unix
// socket as the "postgres" superuser.
//
// On failure New stops whatever it started and removes what it created; the
// error includes the tail of the server log. Errors wrapping
// ErrNotInstalled mean the machine cannot run a server at all.
func New(opts Options) (*Cluster, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	bin := opts.BinDir
	if bin == "" {
		var err error
		if bin, err = BinDir(); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
	} else if missing := missingBinaries(bin); missing != "" {
		return nil, fmt.Errorf("pgtest: %w: %s has no %s", ErrNotInstalled, bin, missing)
	}
	owner, err := serverUser()
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	tmpl, err := getTemplate(bin, owner)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	c := &Cluster{
		Host:     "127.0.0.1",
		BinDir:   bin,
		Version:  tmpl.version,
		owner:    owner,
		name:     fmt.Sprintf("pgtest-%d-%d", os.Getpid(), clusterSeq.Add(1)),
		tls:      opts.TLS,
		settings: opts.Settings,
	}
	if err := c.setup(opts, tmpl); err != nil {
		err = fmt.Errorf("pgtest: %w", err)
		if log := c.LogTail(30); log != "" {
			err = fmt.Errorf("%w\n--- tail of %s ---\n%s", err, c.LogFile, log)
		}
		return nil, errors.Join(err, c.Stop())
	}
	return c, nil
}

// validate checks the options before anything is created.
func (o Options) validate() error {
	if o.TLS < TLSOff || o.TLS > TLSEnforced {
		return fmt.Errorf("unknown TLS mode %d", o.TLS)
	}
	if o.Cert < CertValid || o.Cert > CertUnknownCA {
		return fmt.Errorf("unknown certificate kind %d", o.Cert)
	}
	seen := map[string]bool{}
	for _, r := range o.Roles {
		switch {
		case r.Name == "":
			return errors.New("role with an empty name")
		case seen[r.Name]:
			return fmt.Errorf("role %q listed twice", r.Name)
		case strings.ContainsRune(r.Name, 0) || strings.ContainsRune(r.Password, 0):
			return fmt.Errorf("role %q: NUL byte in name or password", r.Name)
		}
		seen[r.Name] = true
	}
	for db, owner := range o.Databases {
		if db == "" || strings.ContainsRune(db, 0) || strings.ContainsRune(owner, 0) {
			return fmt.Errorf("bad database %q (owner %q)", db, owner)
		}
	}
	for k, v := range o.Settings {
		if !settingName.MatchString(k) {
			return fmt.Errorf("bad setting name %q", k)
		}
		if reservedSettings[strings.ToLower(k)] {
			return fmt.Errorf("setting %s is managed by pgtest and cannot be overridden", k)
		}
		if strings.ContainsAny(v, "\x00\n\r") {
			return fmt.Errorf("setting %s: value has a NUL or line break", k)
		}
	}
	return nil
}

// reservedSettings are the postgresql.conf names Options.Settings may not
// set: the ones the package relies on to reach and clean up the server, and
// the include directives.
var reservedSettings = map[string]bool{
	"listen_addresses": true, "port": true, "unix_socket_directories": true, "cluster_name": true,
	"include": true, "include_dir": true, "include_if_exists": true,
}

// settingName matches postgresql.conf parameter names, custom ones included.
var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

// setup does the work of New after the template exists.
func (c *Cluster) setup(opts Options, tmpl *template) error {
	if opts.Dir == "" {
		d, err := os.MkdirTemp(tempBase(), "pgtest-")
		if err != nil {
			return err
		}
		c.ownedDirs = append(c.ownedDirs, d)
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
		c.Dir = d
	} else {
		d, err := filepath.Abs(opts.Dir)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if _, err := os.Lstat(filepath.Join(d, "data")); err == nil {
			return fmt.Errorf("%s already holds a data directory", d)
		}
		c.Dir = d
	}
	if err := ensureTraversable(c.Dir, c.owner); err != nil {
		return err
	}
	c.DataDir = filepath.Join(c.Dir, "data")
	c.LogFile = filepath.Join(c.Dir, "postgres.log")
	c.SocketDir = filepath.Join(c.Dir, "sock")
	if len(c.SocketDir)+len("/.s.PGSQL.65535") > maxSocketPath {
		d, err := os.MkdirTemp(tempBase(), "pgs-")
		if err != nil {
			return err
		}
		c.ownedDirs = append(c.ownedDirs, d)
		c.SocketDir = d
	} else if err := os.MkdirAll(c.SocketDir, 0o755); err != nil {
		return err
	}
	if strings.ContainsAny(c.SocketDir, `,"'\`) {
		return fmt.Errorf("socket directory %q has a character postgresql.conf lists cannot hold", c.SocketDir)
	}
	if err := os.Chmod(c.SocketDir, 0o755); err != nil {
		return err
	}
	if err := c.owner.chown(c.SocketDir); err != nil {
		return err
	}

	// From here on a process may start: have the cleanup process watch.
	r, err := startReaper(c.DataDir, c.name, c.ownedDirs...)
	if err != nil {
		return err
	}
	c.reaper = r

	if err := copyTree(tmpl.dataDir, c.DataDir); err != nil {
		return fmt.Errorf("copy template data directory: %w", err)
	}
	certDir := filepath.Join(c.Dir, "certs")
	if err := os.MkdirAll(certDir, 0o755); err != nil {
		return err
	}
	if c.certs, err = writeCerts(certDir, opts.Cert, c.owner); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	c.CAFile, c.OtherCAFile, c.ServerCertFile = c.certs.ca, c.certs.otherCA, c.certs.cert
	if err := os.WriteFile(filepath.Join(c.DataDir, "pg_hba.conf"), []byte(hbaConf(opts.TLS)), 0o600); err != nil {
		return err
	}
	if err := appendFile(filepath.Join(c.DataDir, "postgresql.conf"),
		"\n# Settings of this test cluster, rewritten at each start.\ninclude 'pgtest.conf'\n"); err != nil {
		return err
	}
	f, err := os.OpenFile(c.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	f.Close()
	if err := c.owner.chown(c.LogFile); err != nil {
		return err
	}

	if err := c.start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return c.provision(ctx, opts)
}

// hbaConf returns pg_hba.conf for the mode: trust on the local socket,
// SCRAM-SHA-256 over TCP.
func hbaConf(mode TLSMode) string {
	var b strings.Builder
	b.WriteString("# TYPE    DATABASE USER ADDRESS       METHOD\n")
	b.WriteString("local     all      all                   trust\n")
	switch mode {
	case TLSEnforced:
		b.WriteString("hostssl   all      all  127.0.0.1/32  scram-sha-256\n")
		b.WriteString("hostssl   all      all  ::1/128       scram-sha-256\n")
		b.WriteString("hostnossl all      all  all           reject\n")
	default:
		b.WriteString("host      all      all  127.0.0.1/32  scram-sha-256\n")
		b.WriteString("host      all      all  ::1/128       scram-sha-256\n")
	}
	return b.String()
}

// conf returns pgtest.conf for port.
func (c *Cluster) conf(port int) string {
	ssl := "off"
	if c.tls != TLSOff {
		ssl = "on"
	}
	lines := [][2]string{
		{"listen_addresses", "127.0.0.1"},
		{"port", strconv.Itoa(port)},
		{"unix_socket_directories", c.SocketDir},
		{"cluster_name", c.name},
		{"fsync", "off"},
		{"full_page_writes", "off"},
		{"synchronous_commit", "off"},
		{"shared_buffers", "16MB"},
		{"huge_pages", "off"},
		{"password_encryption", "scram-sha-256"},
		{"ssl", ssl},
		{"ssl_cert_file", c.certs.cert},
		{"ssl_key_file", c.certs.key},
		{"logging_collector", "off"},
		{"log_line_prefix", "%m [%p] %q%u@%d "},
	}
	keys := make([]string, 0, len(c.settings))
	for k := range c.settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		lines = append(lines, [2]string{k, c.settings[k]})
	}
	var b strings.Builder
	for _, kv := range lines {
		fmt.Fprintf(&b, "%s = '%s'\n", kv[0], strings.ReplaceAll(kv[1], "'", "''"))
	}
	return b.String()
}

// start runs pg_ctl start, retrying with another port if the chosen one was
// taken in the meantime.
func (c *Cluster) start() error {
	for attempt := 1; ; attempt++ {
		port, err := pickPort()
		if err != nil {
			return err
		}
		c.Port, c.portIsOurs = port, true
		if err := os.WriteFile(filepath.Join(c.DataDir, "pgtest.conf"), []byte(c.conf(port)), 0o600); err != nil {
			return err
		}
		if err := c.owner.chown(filepath.Join(c.DataDir, "pgtest.conf")); err != nil {
			return err
		}
		var logStart int64
		if fi, err := os.Stat(c.LogFile); err == nil {
			logStart = fi.Size()
		}
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout+30*time.Second)
		out, err := c.owner.command(ctx, c.Dir, filepath.Join(c.BinDir, "pg_ctl"), "start",
			"-D", c.DataDir, "-l", c.LogFile, "-w", "-t", strconv.Itoa(int(startTimeout/time.Second))).CombinedOutput()
		cancel()
		if err == nil {
			c.pid, err = readPostmasterPID(c.DataDir)
			return err
		}
		startErr := fmt.Errorf("pg_ctl start: %v: %s", err, strings.TrimSpace(string(out)))
		if err := c.stopServer(); err != nil {
			return errors.Join(startErr, err)
		}
		releasePort(port)
		c.portIsOurs = false
		if attempt < startAttempts && strings.Contains(readFrom(c.LogFile, logStart), "could not bind") {
			continue
		}
		return startErr
	}
}

// readPostmasterPID reads the postmaster's pid from postmaster.pid.
func readPostmasterPID(dataDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("postmaster.pid: bad pid %q", first)
	}
	return pid, nil
}

// provision creates the roles and databases.
func (c *Cluster) provision(ctx context.Context, opts Options) error {
	if len(opts.Roles) == 0 && len(opts.Databases) == 0 {
		return nil
	}
	conn, err := c.connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, r := range opts.Roles {
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", r.Name).Scan(&exists); err != nil {
			return fmt.Errorf("role %q: %w", r.Name, err)
		}
		verb, super, createdb, password := "CREATE", "NOSUPERUSER", "NOCREATEDB", "NULL"
		if exists {
			verb = "ALTER"
		}
		if r.Superuser || r.Name == "postgres" {
			super = "SUPERUSER"
		}
		if r.CanCreateDB {
			createdb = "CREATEDB"
		}
		if r.Password != "" {
			password = quoteLiteral(r.Password)
		}
		sql := fmt.Sprintf("%s ROLE %s WITH LOGIN %s %s PASSWORD %s",
			verb, pgx.Identifier{r.Name}.Sanitize(), super, createdb, password)
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s role %q: %w", strings.ToLower(verb), r.Name, err)
		}
	}
	names := make([]string, 0, len(opts.Databases))
	for name := range opts.Databases {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		owner := opts.Databases[name]
		if owner == "" {
			owner = "postgres"
		}
		sql := fmt.Sprintf("CREATE DATABASE %s OWNER %s", pgx.Identifier{name}.Sanitize(), pgx.Identifier{owner}.Sanitize())
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("create database %q: %w", name, err)
		}
	}
	return nil
}

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings
// is on, so backslashes are ordinary characters).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// Stop shuts the server down with pg_ctl stop -m immediate, falling back to
// SIGKILL of the postmaster, waits until the postmaster is gone, and removes
// the directories New created (a temporary Dir; a given Dir stays). It is
// safe to call more than once, and concurrently; later calls return the
// result of the first.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return c.stopErr
	}
	c.stopped = true
	var errs []error
	if c.DataDir != "" {
		if err := c.stopServer(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.portIsOurs {
		releasePort(c.Port)
		c.portIsOurs = false
	}
	if c.reaper != nil {
		if err := c.reaper.release(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range c.ownedDirs {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		c.stopErr = fmt.Errorf("pgtest: stop %s: %w", c.Dir, err)
	}
	return c.stopErr
}

// stopServer stops the postmaster of DataDir if one runs, and makes sure it
// and its children are gone.
func (c *Cluster) stopServer() error {
	pid, pidErr := readPostmasterPID(c.DataDir)
	if pidErr != nil {
		pid = c.pid // postmaster.pid is gone or unreadable
	}
	running := pid != 0 && processAlive(pid, c.DataDir)
	if !running && errors.Is(pidErr, os.ErrNotExist) {
		return nil // never started, or already stopped
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout+10*time.Second)
	out, err := c.owner.command(ctx, c.Dir, filepath.Join(c.BinDir, "pg_ctl"), "stop",
		"-D", c.DataDir, "-m", "immediate", "-w", "-t", strconv.Itoa(int(stopTimeout/time.Second))).CombinedOutput()
	cancel()
	var ctlErr error
	if err != nil {
		ctlErr = fmt.Errorf("pg_ctl stop: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if pid == 0 {
		return ctlErr
	}
	// pg_ctl returns once postmaster.pid is gone; the postmaster may still
	// be exiting. And if pg_ctl failed, kill it.
	if waitGone(pid, c.DataDir, 5*time.Second) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	gone := waitGone(pid, c.DataDir, 5*time.Second)
	// Children notice the postmaster's death by themselves, but do not
	// wait for them.
	for _, p := range processesMatching("postgres: " + c.name + ":") {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	if !gone {
		return errors.Join(ctlErr, fmt.Errorf("postmaster %d still runs after SIGKILL", pid))
	}
	return nil
}

// waitGone polls until pid no longer runs with dataDir in its command line.
func waitGone(pid int, dataDir string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for processAlive(pid, dataDir) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// URL returns a postgres:// URL for the cluster's TCP address, with params
// ("key=value", such as "sslmode=verify-full" or "sslrootcert="+c.CAFile) as
// query parameters. User, password, database and parameters are
// percent-encoded wherever they are not unreserved characters, which both
// libpq and pgx decode (neither reads "+" as a space). An empty user,
// password or database is left out.
func (c *Cluster) URL(user, password, db string, params ...string) string {
	var b strings.Builder
	b.WriteString("postgres://")
	if user != "" {
		b.WriteString(uriEscape(user))
		if password != "" {
			b.WriteString(":" + uriEscape(password))
		}
		b.WriteString("@")
	}
	b.WriteString(net.JoinHostPort(c.Host, strconv.Itoa(c.Port)))
	if db != "" {
		b.WriteString("/" + uriEscape(db))
	}
	for i, p := range params {
		sep := "&"
		if i == 0 {
			sep = "?"
			if db == "" {
				sep = "/?"
			}
		}
		k, v, _ := strings.Cut(p, "=")
		b.WriteString(sep + uriEscape(k) + "=" + uriEscape(v))
	}
	return b.String()
}

// uriEscape percent-encodes every byte of s but the unreserved characters of
// RFC 3986.
func uriEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case 'a' <= ch && ch <= 'z', 'A' <= ch && ch <= 'Z', '0' <= ch && ch <= '9',
			ch == '-', ch == '.', ch == '_', ch == '~':
			b.WriteByte(ch)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[ch>>4])
			b.WriteByte(hex[ch&15])
		}
	}
	return b.String()
}

// connect opens a connection to db as "postgres" over the Unix socket,
// ignoring the PG* environment variables.
func (c *Cluster) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	if db == "" {
		db = "postgres"
	}
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable connect_timeout=10",
		quoteDSN(c.SocketDir), c.Port, quoteDSN(db)))
	if err != nil {
		return nil, err
	}
	cfg.Password = ""
	cfg.TLSConfig = nil
	cfg.Fallbacks = nil
	cfg.ValidateConnect = nil
	cfg.RequireAuth = ""
	cfg.ChannelBinding = "disable"
	cfg.RuntimeParams = map[string]string{"application_name": "pgtest"}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s over %s: %w", db, c.SocketDir, err)
	}
	return conn, nil
}

// quoteDSN quotes a value of a keyword/value connection string.
func quoteDSN(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// Exec runs sql in database db ("" means "postgres") as the "postgres"
// superuser over the Unix socket, on a connection of its own. Without args,
// sql may hold several statements.
func (c *Cluster) Exec(ctx context.Context, db, sql string, args ...any) error {
	conn, err := c.connect(ctx, db)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("pgtest: exec in %s: %w", db, err)
	}
	return nil
}

// Connections counts the client backends connected to the server, not
// counting the connection this call uses: what a server sees of a client's
// connection pool.
func (c *Cluster) Connections(ctx context.Context) (int, error) {
	conn, err := c.connect(ctx, "postgres")
	if err != nil {
		return 0, fmt.Errorf("pgtest: %w", err)
	}
	defer conn.Close(context.Background())
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("pgtest: count connections: %w", err)
	}
	return n, nil
}

// LogTail returns the last n lines of the server log (all of it if n <= 0),
// or "" if there is no log.
func (c *Cluster) LogTail(n int) string {
	if c.LogFile == "" {
		return ""
	}
	b, err := os.ReadFile(c.LogFile)
	if err != nil {
		return ""
	}
	return tail(string(b), n)
}

// appendFile appends s to the file at path.
func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readFrom returns the content of path from offset on.
func readFrom(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || offset > int64(len(b)) {
		return ""
	}
	return string(b[offset:])
}
