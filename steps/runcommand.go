package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pgcutover/cutover/schema"
)

// tailBytes is how much of each output stream a run-command keeps.
const tailBytes = 4096

func init() {
	Register(&Type{
		Name:    "run-command",
		Summary: "Run a program (no shell unless asked) with secrets in its environment; kill its whole process group on timeout.",
		Doc: "The program in `argv` runs directly, without a shell, unless `shell: true` (then `argv` is one script for `/bin/sh -c`). " +
			"Secrets reach it only through `env` (`{secret: name}`), never through argv, where `ps` would show them. " +
			"Its output streams live, masked, and the last 4 KiB of stdout and stderr become outputs. " +
			"On timeout or interrupt the process group gets SIGTERM, then SIGKILL after `grace`. " +
			"An exit code outside `expect_exit` fails the step.",
		Inputs: []schema.Field{
			{Name: "argv", Kind: schema.StringList, Required: true, Doc: "program and arguments"},
			{Name: "dry_run_argv", Kind: schema.StringList, Doc: "read-only variant run instead in a dry run (e.g. manage.py migrate --plan --check)"},
			{Name: "shell", Kind: schema.Bool, Default: false, Doc: "run the single argv item as a /bin/sh -c script"},
			{Name: "env", Kind: schema.StringMap, Secret: true, Doc: "extra environment variables for the program"},
			{Name: "inherit_env", Kind: schema.Bool, Default: true, Doc: "pass cutover's own environment to the program"},
			{Name: "dir", Kind: schema.String, Doc: "working directory"},
			{Name: "timeout", Kind: schema.Duration, Doc: "kill the process group after this long (the step's timeout also applies)"},
			{Name: "grace", Kind: schema.Duration, Default: 10 * time.Second, Doc: "time between SIGTERM and SIGKILL"},
			{Name: "expect_exit", Kind: schema.IntList, Default: []int64{0}, Doc: "exit codes that count as success"},
			{Name: "dry_run_expect_exit", Kind: schema.IntList, Doc: "exit codes of dry_run_argv that count as success (default: expect_exit); e.g. [0, 1] for migrate --plan --check, which exits 1 when migrations are pending"},
			{Name: "read_only", Kind: schema.Bool, Default: false, Literal: true, Doc: "the program changes nothing, so it also runs in a dry run"},
		},
		Outputs: []schema.Output{
			{Name: "exit_code", Kind: schema.Int, Doc: "the program's exit code (-1 if killed by a signal)"},
			{Name: "stdout_tail", Kind: schema.String, Doc: "last 4 KiB of stdout, secrets masked"},
			{Name: "stderr_tail", Kind: schema.String, Doc: "last 4 KiB of stderr, secrets masked"},
			{Name: "duration_ms", Kind: schema.Int, Doc: "wall time of the program"},
		},
		Mutates: func(in schema.Inputs) bool {
			ro := in["read_only"]
			return ro == nil || !ro.Bool
		},
		DryRun:  "mutating unless read_only: true; runs dry_run_argv instead when set, otherwise does nothing",
		Example: "- id: migrate\n  type: run-command\n  with:\n    argv: [python3, manage.py, migrate, --noinput]\n    dry_run_argv: [python3, manage.py, migrate, --plan, --check]\n    env: {DATABASE_URL: {secret: new_url}}\n    timeout: 10m\n",
		Impl:    runCommand{},
	})
}

type runCommand struct{}

func (runCommand) Run(ctx context.Context, c *Call) (Outputs, error) {
	return execute(ctx, c, c.Args.Strings("argv"), c.Args.Ints("expect_exit"))
}

func (runCommand) DryRun(ctx context.Context, c *Call) (Outputs, bool, error) {
	argv := c.Args.Strings("dry_run_argv")
	if len(argv) == 0 {
		return nil, false, nil
	}
	expect := c.Args.Ints("expect_exit")
	if c.Args.Has("dry_run_expect_exit") {
		expect = c.Args.Ints("dry_run_expect_exit")
	}
	out, err := execute(ctx, c, argv, expect)
	return out, true, err
}

func execute(ctx context.Context, c *Call, argv []string, expect []int64) (Outputs, error) {
	a := c.Args
	if len(argv) == 0 {
		return nil, Permanent(errors.New("argv is empty"))
	}
	if a.Bool("shell") {
		if len(argv) != 1 {
			return nil, Permanent(errors.New("with shell: true, argv must be a single script"))
		}
		argv = []string{"/bin/sh", "-c", argv[0]}
	}
	if d := a.Duration("timeout"); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	path, err := lookPath(argv[0])
	if err != nil {
		return nil, Permanent(fmt.Errorf("cannot run %s: %w", argv[0], errors.Unwrap(err)))
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Dir = a.String("dir")
	if cmd.Dir != "" {
		if st, err := os.Stat(cmd.Dir); err != nil || !st.IsDir() {
			return nil, Permanent(fmt.Errorf("working directory %s does not exist (relative paths start at %s)", cmd.Dir, cwd()))
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if a.Bool("inherit_env") {
		cmd.Env = os.Environ()
	} else {
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	}
	for k, v := range a.Map("env") {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdout, stderr := &tail{max: tailBytes}, &tail{max: tailBytes}
	masked, flush := c.MaskWriter(c.Out)
	live := &lockedWriter{w: masked}
	cmd.Stdout = &stream{tail: stdout, live: live}
	cmd.Stderr = &stream{tail: stderr, live: live}
	cmd.Stdin = nil

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, Permanent(fmt.Errorf("cannot start %s: %w", argv[0], err))
	}
	pgid := cmd.Process.Pid
	if c.Started != nil {
		c.Started(pgid)
	}
	waitErr := waitGroup(ctx, cmd, a.Duration("grace"))
	_ = flush()
	elapsed := time.Since(start)

	code := cmd.ProcessState.ExitCode()
	out := Outputs{
		"exit_code":   int64(code),
		"stdout_tail": c.Mask(stdout.String()),
		"stderr_tail": c.Mask(stderr.String()),
		"duration_ms": elapsed.Milliseconds(),
	}
	if ctx.Err() != nil {
		reason := "interrupted"
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			reason = "timed out after " + elapsed.Round(time.Millisecond).String()
		}
		return out, fmt.Errorf("%s: %s; process group %d terminated", argv[0], reason, pgid)
	}
	var exitErr *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exitErr) {
		return out, fmt.Errorf("%s: %w", argv[0], waitErr)
	}
	for _, ok := range expect {
		if int64(code) == ok {
			return out, nil
		}
	}
	msg := fmt.Sprintf("%s exited %d", argv[0], code)
	if code == -1 {
		msg = fmt.Sprintf("%s was killed: %s", argv[0], cmd.ProcessState.String())
	}
	if last := lastLine(out["stderr_tail"].(string)); last != "" {
		msg += ": " + last
	} else if last := lastLine(out["stdout_tail"].(string)); last != "" {
		msg += ": " + last
	}
	return out, errors.New(msg)
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n\r\t ")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// tail keeps the last max bytes written to it.
type tail struct {
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string { return strings.ToValidUTF8(string(t.buf), "\uFFFD") }

// lockedWriter serialises the stdout and stderr copiers onto one writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// stream feeds one output stream of a child to its tail and the live
// writer. It implements io.ReaderFrom so that os/exec's copier uses a small
// pooled buffer instead of allocating 32 KiB per stream per step.
type stream struct {
	tail *tail
	live io.Writer
}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 8192); return &b }}

func (s *stream) Write(p []byte) (int, error) {
	s.tail.Write(p)
	return s.live.Write(p)
}

func (s *stream) ReadFrom(r io.Reader) (int64, error) {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	var n int64
	for {
		k, err := r.Read(*bp)
		if k > 0 {
			n += int64(k)
			if _, werr := s.Write((*bp)[:k]); werr != nil {
				return n, werr
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func cwd() string {
	d, err := os.Getwd()
	if err != nil {
		return "the current directory"
	}
	return d
}

// lookPaths caches successful PATH lookups by name and PATH: a plan runs the
// same programs again and again, and each lookup stats every PATH entry.
// Failures are not cached, so a program installed mid-run is found.
var lookPaths sync.Map

func lookPath(name string) (string, error) {
	key := name + "\x00" + os.Getenv("PATH")
	if p, ok := lookPaths.Load(key); ok {
		return p.(string), nil
	}
	p, err := exec.LookPath(name)
	if err == nil && filepath.IsAbs(p) {
		lookPaths.Store(key, p)
	}
	return p, err
}
