package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pgcutover/cutover/engine"
	"github.com/pgcutover/cutover/steps/pgtest"
)

const sandboxUsage = `Usage: cutover sandbox up|env|down [--dir DIR] [--purge]

Runs two local PostgreSQL clusters on 127.0.0.1 to rehearse a cutover:

  old  the app's current database, self-managed style: TLS offered but
       plaintext accepted (sslmode=prefer); role shop owns database shop
  new  the managed-style target: TLS enforced (hostssl; plaintext refused),
       verify-full against DIR/new/certs/ca.crt; role shop, not a
       superuser, owns database shop

  up    start them (creating them the first time, with generated passwords);
        they keep running after this command exits, until down
  env   print export lines for eval "$(cutover sandbox env)". They include
        the passwords, by design: they are for your own shell. Nothing else
        prints them; they are also in DIR/sandbox.env (mode 0600)
  down  stop them; their data stays for the next up (--purge deletes DIR)

DATABASE_URL and DB_* name the new cluster, OLD_DATABASE_URL and OLD_DB_*
the old one; SANDBOX_DIR is DIR.

Exit codes: 0 done (or nothing to do), 1 failed, 2 usage error.

Flags:
`

// Sandbox layout: DIR/state.json, DIR/sandbox.env, and one directory per
// cluster (DIR/old, DIR/new) holding data/, certs/, postgres.log and
// password.
const (
	sandboxStateFile = "state.json"
	sandboxEnvFile   = "sandbox.env"
	sandboxLockFile  = ".lock"
	sandboxConfFile  = "sandbox.conf" // in each data directory
	sandboxDB        = "shop"
	sandboxUser      = "shop"
)

// sandboxEntries are the names the sandbox creates in DIR: all that
// down --purge removes.
var sandboxEntries = []string{"old", "new", sandboxStateFile, sandboxEnvFile, ".gitignore", sandboxLockFile}

// sandboxState is DIR/state.json: what up created, read by later
// invocations. It holds no password.
type sandboxState struct {
	Version  int              `json:"version"`
	Created  time.Time        `json:"created"`
	BinDir   string           `json:"bin_dir"`
	Clusters []sandboxCluster `json:"clusters"`
}

// sandboxCluster describes one cluster of the sandbox.
type sandboxCluster struct {
	// Name is "old" or "new".
	Name string `json:"name"`
	// ClusterName is the server's cluster_name, which titles its processes
	// ("postgres: NAME: checkpointer").
	ClusterName string `json:"cluster_name"`
	Dir         string `json:"dir"`
	DataDir     string `json:"data_dir"`
	LogFile     string `json:"log_file"`
	// SocketDir is the Unix socket directory ("" for none), where the
	// "postgres" superuser logs in without a password.
	SocketDir string `json:"socket_dir,omitempty"`
	Host      string `json:"host"`
	Port      int    `json:"port"`
	// PID is the postmaster's process id at the last start.
	PID int `json:"pid"`
	// TLS is "optional" (plaintext accepted) or "enforced".
	TLS string `json:"tls"`
	// SSLMode and SSLRootCert are what the app's connection settings use.
	SSLMode      string `json:"sslmode"`
	SSLRootCert  string `json:"sslrootcert,omitempty"`
	CAFile       string `json:"ca_file"`
	DBName       string `json:"dbname"`
	User         string `json:"user"`
	PasswordFile string `json:"password_file"`
}

// sandboxSpec is how each cluster is created.
var sandboxSpecs = []struct {
	name    string
	tls     pgtest.TLSMode
	sslmode string
	verify  bool
}{
	{name: "old", tls: pgtest.TLSOptional, sslmode: "prefer"},
	{name: "new", tls: pgtest.TLSEnforced, sslmode: "verify-full", verify: true},
}

// sandbox runs `cutover sandbox up|env|down`.
func (s stdio) sandbox(args []string) int {
	flags := newFlags("sandbox")
	dir := flags.String("dir", ".sandbox", "the sandbox's directory")
	purge := flags.Bool("purge", false, "with down: also delete the clusters' data and DIR")
	pos, err := parseInterspersed(flags, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(s.out, sandboxUsage+flagUsage(flags))
		return 0
	}
	if err == nil {
		switch {
		case len(pos) != 1:
			err = errors.New("name one action: up, env or down")
		case pos[0] != "up" && pos[0] != "env" && pos[0] != "down":
			err = fmt.Errorf("unknown action %q: up, env or down", pos[0])
		case *purge && pos[0] != "down":
			err = errors.New("--purge goes with down")
		case *dir == "":
			err = errors.New("--dir is empty")
		}
	}
	if err != nil {
		fmt.Fprintf(s.err, "cutover sandbox: %v\n\n%s%s", err, sandboxUsage, flagUsage(flags))
		return engine.ExitUsage
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fmt.Fprintf(s.err, "cutover sandbox: %v\n", err)
		return 1
	}
	switch pos[0] {
	case "up":
		err = s.sandboxUp(abs)
	case "env":
		err = s.sandboxEnv(abs)
	default:
		err = s.sandboxDown(abs, *purge)
	}
	if err != nil {
		fmt.Fprintf(s.err, "cutover sandbox %s: %v\n", pos[0], err)
		return 1
	}
	return 0
}

// sandboxUp starts the sandbox in dir: creates it, restarts clusters a
// down (or a reboot) stopped, or says it is already up.
func (s stdio) sandboxUp(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, sandboxStateFile)); errors.Is(err, fs.ErrNotExist) {
		if err := checkNewSandboxDir(dir); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	st, unlock, err := lockedSandboxState(dir)
	if err != nil {
		return err
	}
	defer unlock()
	if st == nil {
		if st, err = createSandbox(dir); err != nil {
			return err
		}
		if err := writeSandboxFiles(dir, st); err != nil {
			return err
		}
		s.describeSandbox(dir, st, "sandbox up in "+dir)
		return nil
	}
	owner, err := sandboxOwner()
	if err != nil {
		return err
	}
	var started []string
	for i := range st.Clusters {
		c := &st.Clusters[i]
		if c.running() {
			continue
		}
		if _, err := os.Stat(c.DataDir); err != nil {
			return fmt.Errorf("cluster %s: %w (remove the sandbox with cutover sandbox down --purge --dir %s)", c.Name, err, dir)
		}
		if err := c.start(st.BinDir, owner); err != nil {
			return err
		}
		started = append(started, c.Name)
	}
	if len(started) == 0 {
		fmt.Fprintf(s.out, "sandbox already up in %s: %s\n", dir, sandboxSummary(st))
		return nil
	}
	if err := writeSandboxFiles(dir, st); err != nil {
		return err
	}
	s.describeSandbox(dir, st, fmt.Sprintf("sandbox up in %s (started %s again, data kept)", dir, strings.Join(started, " and ")))
	return nil
}

// sandboxGitignore keeps a sandbox inside a repository out of Git.
const sandboxGitignore = "# cutover sandbox: local clusters and their passwords\n*\n"

// createSandbox creates and starts both clusters, at once. On failure it
// stops and removes whatever it created.
func createSandbox(dir string) (st *sandboxState, err error) {
	if err := pgtest.Available(); err != nil {
		return nil, err
	}
	owner, err := sandboxOwner()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, ".gitignore"), []byte(sandboxGitignore), 0o644); err != nil {
		return nil, err
	}
	type result struct {
		c      *sandboxCluster
		binDir string
		err    error
	}
	results := make([]result, len(sandboxSpecs))
	var wg sync.WaitGroup
	for i, spec := range sandboxSpecs {
		wg.Go(func() {
			c, bin, err := createSandboxCluster(dir, spec.name, spec.tls, spec.sslmode, spec.verify, owner)
			results[i] = result{c, bin, err}
		})
	}
	wg.Wait()
	st = &sandboxState{Version: 1, Created: time.Now().UTC().Truncate(time.Second)}
	var errs []error
	for _, r := range results {
		if r.c != nil {
			st.Clusters = append(st.Clusters, *r.c)
			st.BinDir = r.binDir
		}
		errs = append(errs, r.err)
	}
	if err := errors.Join(errs...); err != nil {
		for i := range st.Clusters {
			st.Clusters[i].stop(st.BinDir, owner)
		}
		for _, spec := range sandboxSpecs {
			os.RemoveAll(filepath.Join(dir, spec.name))
		}
		os.Remove(filepath.Join(dir, ".gitignore"))
		return nil, err
	}
	return st, nil
}

// createSandboxCluster provisions one cluster with pgtest, then runs it
// detached from this process.
//
// pgtest ties a cluster's life to the process that created it (a watcher
// process stops it when that process exits), which suits tests but not a
// sandbox that must outlive `cutover sandbox up`. So the cluster is created
// in DIR/NAME by pgtest (certificates, pg_hba.conf, roles, database), made
// durable by a checkpoint, stopped with pgtest's Stop (which keeps a given
// directory), and started again by pg_ctl, which detaches the postmaster
// into a session of its own. DATA/sandbox.conf, included after pgtest's
// settings, then owns the port, socket directory, cluster name and
// durability settings.
func createSandboxCluster(dir, name string, mode pgtest.TLSMode, sslmode string, verify bool, owner *syscall.Credential) (c *sandboxCluster, binDir string, err error) {
	password := newSandboxPassword()
	pc, err := pgtest.New(pgtest.Options{
		TLS:       mode,
		Cert:      pgtest.CertValid,
		Roles:     []pgtest.Role{{Name: sandboxUser, Password: password}},
		Databases: map[string]string{sandboxDB: sandboxUser},
		Dir:       filepath.Join(dir, name),
	})
	if err != nil {
		return nil, "", fmt.Errorf("cluster %s: %w", name, err)
	}
	c = &sandboxCluster{
		Name:         name,
		ClusterName:  "cutover-sandbox-" + name + "-" + strings.ToLower(rand.Text()[:8]),
		Dir:          pc.Dir,
		DataDir:      pc.DataDir,
		LogFile:      pc.LogFile,
		Host:         pc.Host,
		Port:         pc.Port,
		TLS:          "optional",
		SSLMode:      sslmode,
		CAFile:       pc.CAFile,
		DBName:       sandboxDB,
		User:         sandboxUser,
		PasswordFile: filepath.Join(pc.Dir, "password"),
	}
	if mode == pgtest.TLSEnforced {
		c.TLS = "enforced"
	}
	if verify {
		c.SSLRootCert = pc.CAFile
	}
	if strings.HasPrefix(pc.SocketDir, pc.Dir+string(filepath.Separator)) {
		c.SocketDir = pc.SocketDir // else pgtest's short temporary one, which Stop removes
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = pc.Exec(ctx, "", "CHECKPOINT")
	if stopErr := pc.Stop(); err == nil {
		err = stopErr
	}
	if err != nil {
		return nil, "", fmt.Errorf("cluster %s: %w", name, err)
	}
	if err := os.WriteFile(c.PasswordFile, []byte(password+"\n"), 0o600); err != nil {
		return nil, "", err
	}
	if err := sandboxAppendFile(filepath.Join(c.DataDir, "postgresql.conf"),
		"\n# cutover sandbox: overrides the settings above.\ninclude_if_exists '"+sandboxConfFile+"'\n"); err != nil {
		return nil, "", err
	}
	return c, pc.BinDir, c.start(pc.BinDir, owner)
}

// conf returns DATA/sandbox.conf. Unlike a test cluster, a sandbox keeps
// data across restarts, so it runs durable.
func (c *sandboxCluster) conf() string {
	lines := [][2]string{
		{"port", strconv.Itoa(c.Port)},
		{"unix_socket_directories", c.SocketDir},
		// The socket lets the "postgres" superuser in without a password:
		// only the server's user (and root) may use it.
		{"unix_socket_permissions", "0700"},
		{"cluster_name", c.ClusterName},
		{"fsync", "on"},
		{"full_page_writes", "on"},
		{"synchronous_commit", "on"},
		{"log_connections", "on"},
	}
	var b strings.Builder
	b.WriteString("# Written by cutover sandbox at each start.\n")
	for _, kv := range lines {
		fmt.Fprintf(&b, "%s = '%s'\n", kv[0], strings.ReplaceAll(kv[1], "'", "''"))
	}
	return b.String()
}

// start starts the cluster with pg_ctl in a session of its own, on its
// recorded port if free, else on another one.
func (c *sandboxCluster) start(binDir string, owner *syscall.Credential) error {
	const attempts = 3
	for attempt := 1; ; attempt++ {
		if attempt > 1 || !sandboxPortFree(c.Host, c.Port) {
			port, err := sandboxFreePort(c.Host)
			if err != nil {
				return err
			}
			c.Port = port
		}
		confPath := filepath.Join(c.DataDir, sandboxConfFile)
		if err := os.WriteFile(confPath, []byte(c.conf()), 0o644); err != nil {
			return err
		}
		if owner != nil {
			if err := os.Chown(confPath, int(owner.Uid), int(owner.Gid)); err != nil {
				return err
			}
		}
		var logStart int64
		if fi, err := os.Stat(c.LogFile); err == nil {
			logStart = fi.Size()
		}
		out, err := c.pgCtl(binDir, owner, "start", "-l", c.LogFile, "-t", "60")
		if err == nil {
			pid, err := sandboxPostmasterPID(c.DataDir)
			if err != nil {
				return fmt.Errorf("cluster %s: %w", c.Name, err)
			}
			c.PID = pid
			return nil
		}
		log := sandboxReadFrom(c.LogFile, logStart)
		if attempt < attempts && strings.Contains(log, "could not bind") {
			continue
		}
		return fmt.Errorf("cluster %s: pg_ctl start: %v: %s\n--- %s ---\n%s", c.Name, err, strings.TrimSpace(out), c.LogFile, sandboxLastLines(log, 20))
	}
}

// stop stops the cluster: pg_ctl stop -m fast (clients are disconnected,
// the server checkpoints), then SIGKILL for anything of it still running.
// It returns an error if a process of the cluster remains.
func (c *sandboxCluster) stop(binDir string, owner *syscall.Credential) error {
	var ctlErr error
	if pid, err := sandboxPostmasterPID(c.DataDir); err == nil && sandboxProcessHas(pid, c.DataDir) {
		if out, err := c.pgCtl(binDir, owner, "stop", "-m", "fast", "-t", "30"); err != nil {
			ctlErr = fmt.Errorf("pg_ctl stop: %v: %s", err, strings.TrimSpace(out))
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := c.processes()
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.Join(ctlErr, fmt.Errorf("cluster %s: processes %v still run", c.Name, left))
		}
		if ctlErr != nil || time.Until(deadline) < 5*time.Second {
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pgCtl runs pg_ctl ACTION -D DATA -w ARGS as the server user, in a new
// session so that a terminal's signals do not reach the server.
func (c *sandboxCluster) pgCtl(binDir string, owner *syscall.Credential, action string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "pg_ctl"), append([]string{action, "-D", c.DataDir, "-w", "-s"}, args...)...)
	cmd.Dir = c.Dir
	cmd.Env = sandboxServerEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: owner}
	// The server inherits no pipe (pg_ctl redirects it to the log), but
	// should a stray process keep one open, stop waiting soon.
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// running reports whether the cluster's postmaster runs.
func (c *sandboxCluster) running() bool {
	pid, err := sandboxPostmasterPID(c.DataDir)
	return err == nil && sandboxProcessHas(pid, c.DataDir)
}

// processes lists the running processes of the cluster: the postmaster
// (its command line names the data directory) and its children (titled
// "postgres: CLUSTER_NAME: …").
func (c *sandboxCluster) processes() []int {
	if c.ClusterName == "" {
		return sandboxProcesses(c.DataDir)
	}
	return sandboxProcesses(c.DataDir, "postgres: "+c.ClusterName+":")
}

// sandboxProcesses lists the processes whose command line contains any of
// the given strings.
func sandboxProcesses(match ...string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		for _, m := range match {
			if m != "" && bytes.Contains(b, []byte(m)) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// sandboxProcessHas reports whether pid runs with s in its command line (without
// /proc: whether it runs at all).
func sandboxProcessHas(pid int, s string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	return bytes.Contains(b, []byte(s))
}

// sandboxPostmasterPID reads the first line of DATA/postmaster.pid.
func sandboxPostmasterPID(dataDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s/postmaster.pid: bad pid %q", dataDir, first)
	}
	return pid, nil
}

// sandboxOwner is the identity the server programs run under: nil for the
// current user, or the unprivileged "postgres" user when running as root
// (as pgtest does, since PostgreSQL refuses to run as root).
func sandboxOwner() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and PostgreSQL refuses root, but there is no \"postgres\" user: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil || uid == 0 {
		return nil, fmt.Errorf("user \"postgres\" has unusable ids uid=%s gid=%s", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// sandboxServerEnv is the server programs' environment: without libpq and locale
// variables, which could redirect them.
func sandboxServerEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "LC_") || k == "LANG" || k == "LANGUAGE" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// sandboxEnv prints the sandbox's variables as export lines.
func (s stdio) sandboxEnv(dir string) error {
	st, err := readSandboxState(dir)
	if err != nil {
		return err
	}
	if st == nil {
		return fmt.Errorf("no sandbox in %s; start one with: cutover sandbox up --dir %s", dir, dir)
	}
	vars, err := sandboxVars(dir, st)
	if err != nil {
		return err
	}
	for _, c := range st.Clusters {
		if !c.running() {
			fmt.Fprintf(s.err, "cutover sandbox env: cluster %s is down; start it with: cutover sandbox up --dir %s\n", c.Name, dir)
		}
	}
	fmt.Fprintf(s.out, "# cutover sandbox in %s: %s\n", dir, sandboxSummary(st))
	for _, kv := range vars {
		fmt.Fprintf(s.out, "export %s=%s\n", kv[0], sandboxShellQuote(kv[1]))
	}
	return nil
}

// sandboxDown stops the clusters, and with purge deletes what the sandbox
// created in dir.
func (s stdio) sandboxDown(dir string, purge bool) error {
	_, stateErr := os.Stat(filepath.Join(dir, sandboxStateFile))
	partial := sandboxShapedClusters(dir)
	if errors.Is(stateErr, fs.ErrNotExist) && len(partial) == 0 {
		fmt.Fprintf(s.out, "no sandbox in %s: nothing to stop\n", dir)
		return nil
	}
	st, unlock, err := lockedSandboxState(dir)
	if err != nil {
		return err
	}
	defer unlock()
	if st == nil {
		// An up that was killed half-way: stop what it may have started.
		st = &sandboxState{Version: 1}
		st.BinDir, _ = pgtest.BinDir()
		for _, name := range partial {
			d := filepath.Join(dir, name)
			st.Clusters = append(st.Clusters, sandboxCluster{Name: name, Dir: d, DataDir: filepath.Join(d, "data"), Host: "127.0.0.1"})
		}
	}
	owner, err := sandboxOwner()
	if err != nil {
		return err
	}
	var stopped []string
	var errs []error
	for i := range st.Clusters {
		c := &st.Clusters[i]
		if !c.running() && len(c.processes()) == 0 {
			continue
		}
		if err := c.stop(st.BinDir, owner); err != nil {
			errs = append(errs, err)
			continue
		}
		if c.Port > 0 {
			stopped = append(stopped, fmt.Sprintf("%s (%s:%d)", c.Name, c.Host, c.Port))
		} else {
			stopped = append(stopped, c.Name)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if len(stopped) == 0 {
		fmt.Fprintf(s.out, "sandbox in %s is not up: nothing to stop\n", dir)
	} else {
		fmt.Fprintf(s.out, "stopped %s\n", strings.Join(stopped, " and "))
	}
	if !purge {
		fmt.Fprintf(s.out, "data kept in %s: cutover sandbox up starts it again, down --purge deletes it\n", dir)
		return nil
	}
	for _, name := range sandboxEntries {
		if name == sandboxLockFile || !sandboxOwns(dir, name) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	unlock()
	os.Remove(filepath.Join(dir, sandboxLockFile))
	if err := os.Remove(dir); err != nil {
		fmt.Fprintf(s.out, "deleted the sandbox; kept %s, which holds other files\n", dir)
		return nil
	}
	fmt.Fprintf(s.out, "deleted %s\n", dir)
	return nil
}

// checkNewSandboxDir refuses to create a sandbox in a directory that holds
// anything: the sandbox writes a .gitignore there, and down --purge
// deletes the directory.
func checkNewSandboxDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(sandboxShapedClusters(dir)) > 0 {
		return fmt.Errorf("%s holds a partial sandbox (no %s); remove it with: cutover sandbox down --purge --dir %s",
			dir, sandboxStateFile, sandboxShellQuote(dir))
	}
	for _, e := range entries {
		if e.Name() != sandboxLockFile {
			return fmt.Errorf("%s is not empty (it holds %s); a new sandbox needs an empty or new directory", dir, e.Name())
		}
	}
	return nil
}

// sandboxShapedClusters lists the cluster directories in dir that look
// like the sandbox's: a data directory and certificates.
func sandboxShapedClusters(dir string) []string {
	var names []string
	for _, spec := range sandboxSpecs {
		if sandboxOwns(dir, spec.name) {
			names = append(names, spec.name)
		}
	}
	return names
}

// sandboxOwns reports whether the entry name of dir is one the sandbox
// created, by its content: down --purge deletes nothing else.
func sandboxOwns(dir, name string) bool {
	path := filepath.Join(dir, name)
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	switch name {
	case "old", "new":
		return exists(filepath.Join(path, "data", "PG_VERSION")) && exists(filepath.Join(path, "certs", "ca.crt"))
	case sandboxStateFile:
		return exists(path)
	case sandboxEnvFile:
		b, err := os.ReadFile(path)
		return err == nil && strings.HasPrefix(string(b), "# cutover sandbox in ")
	case ".gitignore":
		b, err := os.ReadFile(path)
		return err == nil && string(b) == sandboxGitignore
	case sandboxLockFile:
		return exists(path)
	}
	return false
}

// describeSandbox prints what runs, without passwords.
func (s stdio) describeSandbox(dir string, st *sandboxState, headline string) {
	fmt.Fprintln(s.out, headline)
	for _, c := range st.Clusters {
		tls := "TLS optional, plaintext accepted"
		if c.TLS == "enforced" {
			tls = "TLS enforced, plaintext refused"
		}
		fmt.Fprintf(s.out, "  %-4s %s:%-5d  %s; database %s owned by role %s (sslmode=%s)\n",
			c.Name, c.Host, c.Port, tls, c.DBName, c.User, c.SSLMode)
		if c.SSLRootCert != "" {
			fmt.Fprintf(s.out, "       CA %s\n", c.SSLRootCert)
		}
		fmt.Fprintf(s.out, "       log %s\n", c.LogFile)
		if c.SocketDir != "" {
			fmt.Fprintf(s.out, "       superuser: psql -h %s -p %d -U postgres\n", sandboxShellQuote(c.SocketDir), c.Port)
		}
	}
	fmt.Fprintf(s.out, "connection settings, passwords included, are in %s (mode 0600); for a shell:\n", filepath.Join(dir, sandboxEnvFile))
	fmt.Fprintf(s.out, "  eval \"$(cutover sandbox env --dir %s)\"\n", sandboxShellQuote(dir))
	fmt.Fprintf(s.out, "stop with: cutover sandbox down --dir %s\n", sandboxShellQuote(dir))
}

// sandboxSummary is a one-line description of the clusters and whether
// they run.
func sandboxSummary(st *sandboxState) string {
	var parts []string
	for _, c := range st.Clusters {
		state := "up"
		if !c.running() {
			state = "down"
		}
		parts = append(parts, fmt.Sprintf("%s %s:%d (%s)", c.Name, c.Host, c.Port, state))
	}
	return strings.Join(parts, ", ")
}

// sandboxVars returns the sandbox's environment variables, in order.
func sandboxVars(dir string, st *sandboxState) ([][2]string, error) {
	vars := [][2]string{{"SANDBOX_DIR", dir}}
	for _, name := range []string{"new", "old"} {
		var c *sandboxCluster
		for i := range st.Clusters {
			if st.Clusters[i].Name == name {
				c = &st.Clusters[i]
			}
		}
		if c == nil {
			return nil, fmt.Errorf("%s names no %s cluster", filepath.Join(dir, sandboxStateFile), name)
		}
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", name, err)
		}
		password := strings.TrimSpace(string(b))
		prefix := ""
		if name == "old" {
			prefix = "OLD_"
		}
		vars = append(vars,
			[2]string{prefix + "DATABASE_URL", c.url(password)},
			[2]string{prefix + "DB_NAME", c.DBName},
			[2]string{prefix + "DB_USER", c.User},
			[2]string{prefix + "DB_PASSWORD", password},
			[2]string{prefix + "DB_HOST", c.Host},
			[2]string{prefix + "DB_PORT", strconv.Itoa(c.Port)},
			[2]string{prefix + "DB_SSLMODE", c.SSLMode},
		)
		if c.SSLRootCert != "" {
			vars = append(vars, [2]string{prefix + "DB_SSLROOTCERT", c.SSLRootCert})
		}
	}
	return vars, nil
}

// url is the cluster's postgres:// URL as the app uses it.
func (c *sandboxCluster) url(password string) string {
	u := "postgres://" + sandboxURIEscape(c.User) + ":" + sandboxURIEscape(password) + "@" +
		net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) + "/" + sandboxURIEscape(c.DBName) + "?sslmode=" + sandboxURIEscape(c.SSLMode)
	if c.SSLRootCert != "" {
		u += "&sslrootcert=" + sandboxURIEscape(c.SSLRootCert)
	}
	return u
}

// sandboxURIEscape percent-encodes every byte but RFC 3986's unreserved
// characters, which libpq, pgx and Python's urllib all decode alike (none
// of them may read a "+" as a space).
func sandboxURIEscape(s string) string {
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

// writeSandboxFiles writes DIR/sandbox.env (0600) and DIR/state.json.
func writeSandboxFiles(dir string, st *sandboxState) error {
	vars, err := sandboxVars(dir, st)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# cutover sandbox in %s, written by cutover sandbox up. Holds passwords.\n", dir)
	b.WriteString("# DATABASE_URL, DB_*: the new cluster (TLS enforced, verify-full).\n")
	b.WriteString("# OLD_DATABASE_URL, OLD_DB_*: the old cluster (plaintext accepted).\n")
	fmt.Fprintf(&b, "# In a shell: set -a; . %s; set +a\n", sandboxShellQuote(filepath.Join(dir, sandboxEnvFile)))
	for _, kv := range vars {
		fmt.Fprintf(&b, "%s=%s\n", kv[0], sandboxShellQuote(kv[1]))
	}
	if err := sandboxWriteFile(filepath.Join(dir, sandboxEnvFile), []byte(b.String()), 0o600); err != nil {
		return err
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return sandboxWriteFile(filepath.Join(dir, sandboxStateFile), append(data, '\n'), 0o644)
}

// lockedSandboxState locks the sandbox in dir against other sandbox
// commands and reads its state (nil: none yet). The caller calls unlock.
func lockedSandboxState(dir string) (st *sandboxState, unlock func(), err error) {
	if unlock, err = lockSandbox(dir); err != nil {
		return nil, nil, err
	}
	if st, err = readSandboxState(dir); err != nil {
		unlock()
		return nil, nil, err
	}
	return st, unlock, nil
}

// readSandboxState reads DIR/state.json; nil without error means there is
// no sandbox in dir.
func readSandboxState(dir string) (*sandboxState, error) {
	b, err := os.ReadFile(filepath.Join(dir, sandboxStateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st sandboxState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, sandboxStateFile), err)
	}
	if st.Version != 1 {
		return nil, fmt.Errorf("%s: unknown version %d", filepath.Join(dir, sandboxStateFile), st.Version)
	}
	return &st, nil
}

// lockSandbox takes an exclusive lock on DIR/.lock, so that two commands
// never change one sandbox at once. unlock may be called more than once.
func lockSandbox(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, sandboxLockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another cutover sandbox command is working on %s", dir)
	}
	var once sync.Once
	return func() { once.Do(func() { f.Close() }) }, nil
}

// sandboxWriteFile replaces path with data through a temporary file.
func sandboxWriteFile(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Chmod(tmp, perm); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// sandboxAppendFile appends s to the existing file at path.
func sandboxAppendFile(path, s string) error {
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

// sandboxReadFrom returns the content of path from offset on.
func sandboxReadFrom(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || offset > int64(len(b)) {
		return ""
	}
	return string(b[offset:])
}

// sandboxLastLines returns the last n lines of s.
func sandboxLastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// sandboxPortFree reports whether a TCP port on host can be bound now.
func sandboxPortFree(host string, port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// sandboxFreePort picks a free TCP port on host.
func sandboxFreePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// newSandboxPassword returns a random password of 26 base32 characters
// (130 bits), which needs no quoting in URLs, shells or env files.
func newSandboxPassword() string {
	return rand.Text()
}

// sandboxShellQuote quotes s for a POSIX shell (and for env-file readers that
// strip single quotes, such as systemd and python-dotenv).
func sandboxShellQuote(s string) string {
	if s != "" && strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_./:@%+=,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
