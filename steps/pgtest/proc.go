package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// template is an initialised data directory that clusters copy instead of
// running initdb each time: initdb takes about a second, a copy a tenth of
// that.
type template struct {
	dataDir string
	version int
	took    time.Duration // how long initdb ran
	reaper  *reaper       // removes the template when the process exits
}

// templates caches one template per binary directory for the life of the
// process.
var templates = struct {
	sync.Mutex
	byBin map[string]*template
}{byBin: map[string]*template{}}

// getTemplate returns the template for bin, running initdb the first time.
func getTemplate(bin string, owner runAs) (*template, error) {
	templates.Lock()
	defer templates.Unlock()
	if t := templates.byBin[bin]; t != nil {
		return t, nil
	}
	base, err := os.MkdirTemp(tempBase(), "pgtest-template-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(base, 0o755); err != nil {
		os.RemoveAll(base)
		return nil, err
	}
	r, err := startReaper("", "", base)
	if err != nil {
		os.RemoveAll(base)
		return nil, err
	}
	t := &template{dataDir: filepath.Join(base, "data"), reaper: r}
	start := time.Now()
	err = runInitdb(bin, owner, t.dataDir)
	t.took = time.Since(start)
	if err == nil {
		t.version, err = readVersion(t.dataDir)
	}
	if err != nil {
		os.RemoveAll(base)
		r.release()
		return nil, err
	}
	templates.byBin[bin] = t
	return t, nil
}

// runInitdb creates a data directory with the bootstrap superuser
// "postgres", trust authentication on the local socket, and no fsync.
func runInitdb(bin string, owner runAs, dataDir string) error {
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		return err
	}
	if err := owner.chown(dataDir); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := owner.command(ctx, filepath.Dir(dataDir), filepath.Join(bin, "initdb"),
		"-D", dataDir, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256",
		"-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, tail(string(out), 30))
	}
	return nil
}

// readVersion reads the major version from PG_VERSION.
func readVersion(dataDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "PG_VERSION"))
	if err != nil {
		return 0, err
	}
	major, _, _ := strings.Cut(strings.TrimSpace(string(b)), ".") // "15", or "9.6" before 10
	v, err := strconv.Atoi(major)
	if err != nil {
		return 0, fmt.Errorf("PG_VERSION %q: %v", b, err)
	}
	return v, nil
}

// copyTree copies the directory src to dst, which must not exist, keeping
// permissions and (when running as root) ownership. Runs of zero bytes are
// left as holes, which makes the mostly empty first WAL segment cheap.
func copyTree(src, dst string) error {
	root := os.Geteuid() == 0
	buf := make([]byte, 64<<10)
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch mode := info.Mode(); {
		case mode.IsDir():
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
			if err := os.Chmod(target, mode.Perm()); err != nil {
				return err
			}
		case mode&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		case mode.IsRegular():
			if err := copyFile(path, target, mode.Perm(), info.Size(), buf); err != nil {
				return err
			}
		default:
			return fmt.Errorf("copy %s: unsupported file type %v", path, mode.Type())
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && root {
			return os.Lchown(target, int(st.Uid), int(st.Gid))
		}
		return nil
	})
}

// copyFile copies one regular file, seeking over all-zero blocks.
func copyFile(src, dst string, perm fs.FileMode, size int64, buf []byte) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	for {
		n, rerr := io.ReadFull(in, buf)
		if n > 0 {
			chunk := buf[:n]
			if allZero(chunk) {
				if _, err := out.Seek(int64(n), io.SeekCurrent); err != nil {
					return err
				}
			} else if _, err := out.Write(chunk); err != nil {
				return err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if err := out.Truncate(size); err != nil {
		return err
	}
	return out.Chmod(perm)
}

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// reaperScript runs beside each cluster, reading its standard input, a pipe
// from this process. "stop" means the cluster was stopped normally. End of
// file means this process died without stopping it (a crash, a test timeout,
// a kill): the script then shuts the postmaster of data dir $1 down (SIGQUIT,
// then SIGKILL), kills leftover processes titled "postgres: $2:", and
// removes the directories in the remaining arguments.
const reaperScript = `trap '' INT HUP
read -r cmd
[ "$cmd" = stop ] && exit 0
data=$1; name=$2; shift 2
alive() { [ -n "$data" ] && grep -qaF -- "$data" "/proc/$1/cmdline" 2>/dev/null; }
pid=
if [ -n "$data" ] && [ -r "$data/postmaster.pid" ]; then read -r pid < "$data/postmaster.pid"; fi
case "$pid" in ''|*[!0-9]*) pid= ;; esac
if [ -n "$pid" ] && alive "$pid"; then
	kill -QUIT "$pid" 2>/dev/null
	i=0
	while [ $i -lt 100 ] && alive "$pid"; do sleep 0.05; i=$((i+1)); done
	if alive "$pid"; then kill -KILL "$pid" 2>/dev/null; sleep 0.2; fi
fi
if [ -n "$name" ]; then
	for f in /proc/[0-9]*/cmdline; do
		if grep -qaF -- "postgres: $name:" "$f" 2>/dev/null; then p=${f#/proc/}; kill -KILL "${p%/cmdline}" 2>/dev/null; fi
	done
fi
[ $# -gt 0 ] && rm -rf -- "$@"
exit 0
`

// reaper is a small shell process that cleans up after this process if it
// dies while a cluster runs.
type reaper struct {
	cmd  *exec.Cmd
	pipe io.WriteCloser
}

// startReaper starts the reaper for the postmaster of dataDir ("" for none),
// the server processes titled with name ("" for none), and the directories
// to remove. It runs in its own process group so that a terminal's Ctrl-C
// does not kill it before it has cleaned up.
func startReaper(dataDir, name string, remove ...string) (*reaper, error) {
	cmd := exec.Command("/bin/sh", append([]string{"-c", reaperScript, "pgtest-reaper", dataDir, name}, remove...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pipe, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start cleanup process: %w", err)
	}
	r := &reaper{cmd: cmd, pipe: pipe}
	liveReapers.Lock()
	liveReapers.m[r] = true
	liveReapers.Unlock()
	return r, nil
}

// liveReapers keeps every reaper's pipe reachable until release: were it
// garbage-collected, the reaper would see end of file and tear its cluster
// down while still in use.
var liveReapers = struct {
	sync.Mutex
	m map[*reaper]bool
}{m: map[*reaper]bool{}}

// release tells the reaper everything was cleaned up normally and waits for
// it to exit.
func (r *reaper) release() error {
	defer func() {
		liveReapers.Lock()
		delete(liveReapers.m, r)
		liveReapers.Unlock()
	}()
	_, werr := io.WriteString(r.pipe, "stop\n")
	cerr := r.pipe.Close()
	if err := r.cmd.Wait(); err != nil {
		return fmt.Errorf("cleanup process: %w", err)
	}
	return errors.Join(werr, cerr)
}

// tempBase is where temporary state directories go: $PGTEST_TMPDIR if set;
// else, unless $TMPDIR is set, /dev/shm when it is a tmpfs with at least
// 1 GiB free, since creating the thousand files of a data directory costs
// several times more on a disk file system; else os.TempDir().
var tempBase = sync.OnceValue(func() string {
	if d := os.Getenv("PGTEST_TMPDIR"); d != "" {
		return d
	}
	if os.Getenv("TMPDIR") == "" && roomyTmpfs("/dev/shm", 1<<30) {
		return "/dev/shm"
	}
	return os.TempDir()
})

// roomyTmpfs reports whether dir is a writable tmpfs with at least free
// bytes available.
func roomyTmpfs(dir string, free uint64) bool {
	const tmpfsMagic = 0x01021994
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil || int64(st.Type) != tmpfsMagic {
		return false
	}
	if uint64(st.Bavail)*uint64(st.Bsize) < free {
		return false
	}
	return syscall.Access(dir, 0o3) == nil // W_OK|X_OK
}

// ports holds the ports handed to clusters of this process that are still
// running, so that two clusters starting at once never share one.
var ports = struct {
	sync.Mutex
	used map[int]bool
}{used: map[int]bool{}}

// pickPort is reservePort, replaced in tests.
var pickPort = reservePort

// reservePort picks a free loopback TCP port: listen on port 0, close, use.
func reservePort() (int, error) {
	ports.Lock()
	defer ports.Unlock()
	for range 50 {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !ports.used[port] {
			ports.used[port] = true
			return port, nil
		}
	}
	return 0, errors.New("no free loopback port")
}

// releasePort returns port to the pool.
func releasePort(port int) {
	ports.Lock()
	delete(ports.used, port)
	ports.Unlock()
}

// processAlive reports whether pid runs with arg in its command line. A
// zombie has an empty command line and does not count.
func processAlive(pid int, arg string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false
		}
		// No /proc: fall back to a signal probe.
		return syscall.Kill(pid, 0) == nil
	}
	return bytes.Contains(b, []byte(arg))
}

// processesMatching lists the pids whose command line contains s.
func processesMatching(s string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(b, []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// ensureTraversable makes sure the server user can reach dir. Directories
// under the temporary directory that this user owns (such as the 0700
// parents of testing's TempDir) get the search bit for others; anywhere else
// an unreachable directory is an error.
func ensureTraversable(dir string, owner runAs) error {
	if owner.cred == nil {
		return nil
	}
	var tmps []string
	for _, t := range []string{os.TempDir(), tempBase()} {
		if r, err := filepath.EvalSymlinks(t); err == nil {
			t = r
		}
		tmps = append(tmps, filepath.Clean(t))
	}
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		var bit os.FileMode = 0o001
		switch {
		case int(st.Uid) == owner.uid:
			bit = 0o100
		case int(st.Gid) == owner.gid:
			bit = 0o010
		}
		if fi.Mode().Perm()&bit == 0 {
			under := false
			for _, t := range tmps {
				under = under || strings.HasPrefix(d, t+string(filepath.Separator))
			}
			if !under || int(st.Uid) != os.Geteuid() || bit != 0o001 {
				return fmt.Errorf("the server runs as uid %d, which cannot enter %s (mode %v); "+
					"use a directory under %s, or make it searchable (chmod o+x)", owner.uid, d, fi.Mode().Perm(), tmps[0])
			}
			if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
				return err
			}
		}
		if parent := filepath.Dir(d); parent == d {
			return nil
		}
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	if n <= 0 || s == "" {
		return s
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
