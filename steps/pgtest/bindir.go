package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNotInstalled is wrapped by the errors of BinDir, New and Available when
// this machine cannot run a PostgreSQL server: the server binaries are
// missing, or the process runs as root and there is no unprivileged
// "postgres" user to run the server as.
var ErrNotInstalled = errors.New("PostgreSQL server not installed")

// installHint says how to get a usable server on the platforms the project
// targets.
const installHint = "install the server (Debian/Ubuntu: apt-get install postgresql), " +
	"or set PGTEST_BINDIR to a directory holding initdb, pg_ctl and postgres"

// serverBinaries are the programs a cluster needs.
var serverBinaries = []string{"initdb", "pg_ctl", "postgres"}

// BinDir returns the directory holding the PostgreSQL server programs
// (initdb, pg_ctl, postgres). It looks, in this order, at $PGTEST_BINDIR, at
// /usr/lib/postgresql/*/bin (newest major version first), at the output of
// `pg_config --bindir`, and at the directory of initdb on $PATH. The error
// wraps ErrNotInstalled and says what to install.
func BinDir() (string, error) {
	if d := os.Getenv("PGTEST_BINDIR"); d != "" {
		if missing := missingBinaries(d); missing != "" {
			return "", fmt.Errorf("%w: PGTEST_BINDIR=%s has no %s; %s", ErrNotInstalled, d, missing, installHint)
		}
		return d, nil
	}
	var tried []string
	try := func(d string) bool {
		if d == "" {
			return false
		}
		tried = append(tried, d)
		return missingBinaries(d) == ""
	}
	for _, d := range debianBinDirs() {
		if try(d) {
			return d, nil
		}
	}
	if pgConfig, err := exec.LookPath("pg_config"); err == nil {
		if out, err := exec.Command(pgConfig, "--bindir").Output(); err == nil {
			if d := strings.TrimSpace(string(out)); try(d) {
				return d, nil
			}
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if d := filepath.Dir(p); try(d) {
			return d, nil
		}
	}
	where := "nothing found"
	if len(tried) > 0 {
		where = "looked in " + strings.Join(tried, ", ")
	}
	return "", fmt.Errorf("%w: no directory with initdb, pg_ctl and postgres (%s; also pg_config --bindir and $PATH); %s",
		ErrNotInstalled, where, installHint)
}

// debianBinDirs lists /usr/lib/postgresql/<version>/bin, newest first.
func debianBinDirs() []string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(d string) []int {
		var v []int
		for _, f := range strings.Split(filepath.Base(filepath.Dir(d)), ".") {
			n, err := strconv.Atoi(f)
			if err != nil {
				return nil
			}
			v = append(v, n)
		}
		return v
	}
	sort.SliceStable(dirs, func(i, j int) bool {
		a, b := version(dirs[i]), version(dirs[j])
		for k := 0; k < len(a) && k < len(b); k++ {
			if a[k] != b[k] {
				return a[k] > b[k]
			}
		}
		return len(a) > len(b)
	})
	return dirs
}

// missingBinaries names the server programs absent from dir, or returns "".
func missingBinaries(dir string) string {
	var missing []string
	for _, name := range serverBinaries {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			missing = append(missing, name)
		}
	}
	return strings.Join(missing, ", ")
}

// Available reports whether New can start a cluster on this machine with the
// binaries BinDir finds: it returns nil, or an error wrapping ErrNotInstalled
// that says what is missing.
func Available() error {
	if _, err := BinDir(); err != nil {
		return err
	}
	_, err := serverUser()
	return err
}

// runAs is the identity the server programs run under. cred is nil when they
// run as the current user.
type runAs struct {
	cred     *syscall.Credential
	uid, gid int
}

// serverUser picks the identity for initdb, pg_ctl and the server: the
// current user, or the unprivileged "postgres" user when running as root
// (initdb and postgres refuse to run as root).
func serverUser() (runAs, error) {
	if os.Geteuid() != 0 {
		return runAs{uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return runAs{}, fmt.Errorf("%w: running as root, and the server refuses root, but there is no unprivileged "+
			"\"postgres\" user to run it as (%v); %s, or run as a non-root user", ErrNotInstalled, err, installHint)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil || uid == 0 {
		return runAs{}, fmt.Errorf("%w: user \"postgres\" has unusable ids uid=%s gid=%s", ErrNotInstalled, u.Uid, u.Gid)
	}
	return runAs{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid: uid, gid: gid}, nil
}

// chown gives path to the server user when the programs run as another user.
func (r runAs) chown(path string) error {
	if r.cred == nil {
		return nil
	}
	return os.Lchown(path, r.uid, r.gid)
}

// command prepares a server program to run as r in dir, with an environment
// cleared of libpq and locale variables so they cannot redirect it.
func (r runAs) command(ctx context.Context, dir, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: r.cred}
	// Output is read through pipes; should a stray child keep one open,
	// stop waiting for it soon after the program itself exits.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// childEnv is the environment of the server programs.
func childEnv() []string {
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
