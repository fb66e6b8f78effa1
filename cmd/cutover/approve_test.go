package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgcutover/cutover/steps"
)

// question records what an approval writes and tells when the question
// has been asked, so that a test answers only then, as a person would.
type question struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	asked chan struct{}
}

func newQuestion() *question { return &question{asked: make(chan struct{}, 10)} }

func (q *question) Write(b []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	// Counted over everything written: a terminal's output comes in
	// arbitrary pieces.
	const mark = "anything else refuses: "
	before := strings.Count(q.buf.String(), mark)
	q.buf.Write(b)
	for range strings.Count(q.buf.String(), mark) - before {
		q.asked <- struct{}{}
	}
	return len(b), nil
}

func (q *question) String() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.buf.String()
}

// terminal is an approvals that believes it has a terminal: answers come
// from the returned pipe writer.
func terminal(t *testing.T, pre ...string) (*approvals, *io.PipeWriter, *question, *int) {
	t.Helper()
	r, w := io.Pipe()
	t.Cleanup(func() { w.Close() }) // ends the reading goroutine
	q := newQuestion()
	a := newApprovals(pre, "alice", r, q)
	a.tty = true
	paused := 0
	a.pause = func() { paused++ }
	return a, w, q, &paused
}

// answerWhenAsked types line once the question shows.
func answerWhenAsked(t *testing.T, w io.Writer, q *question, line string) {
	go func() {
		select {
		case <-q.asked:
			io.WriteString(w, line)
		case <-time.After(10 * time.Second):
		}
	}()
}

var gate = steps.ApprovalRequest{StepID: "gate", Message: "Switch production?\nThe old database stays read-only."}

func TestApprovalsPromptAnswers(t *testing.T) {
	for _, tc := range []struct {
		typed    string
		approved bool
	}{
		{"yes\n", true},
		{"  Yes \r\n", true},
		{"no\n", false},
		{"y\n", false},
		{"yes please\n", false},
		{"\n", false},
	} {
		t.Run(strings.TrimSpace(tc.typed), func(t *testing.T) {
			a, w, q, paused := terminal(t)
			answerWhenAsked(t, w, q, tc.typed)
			got, err := a.approve(context.Background(), gate)
			if err != nil {
				t.Fatal(err)
			}
			want := steps.Approval{Approved: tc.approved, Approver: "alice", How: steps.ApprovedByPrompt}
			if got != want {
				t.Errorf("approval = %+v, want %+v", got, want)
			}
			if *paused != 1 {
				t.Errorf("the progress line was paused %d times", *paused)
			}
			wantQ := "  approval gate (answering as alice):\n    Switch production?\n    The old database stays read-only.\n" +
				"  Approve step gate? Type \"yes\" to approve, anything else refuses: "
			if q.String() != wantQ {
				t.Errorf("question:\n%q\nwant\n%q", q.String(), wantQ)
			}
		})
	}
}

func TestApprovalsEndOfInputRefuses(t *testing.T) {
	a, w, q, _ := terminal(t)
	go func() {
		<-q.asked
		io.WriteString(w, "ye") // then Ctrl-D
		w.Close()
	}()
	got, err := a.approve(context.Background(), gate)
	if err != nil || got.Approved {
		t.Fatalf("approval = %+v, %v; end of input must refuse", got, err)
	}
	if !strings.HasSuffix(q.String(), "refuses: \n") {
		t.Errorf("no newline after an answer cut short: %q", q.String())
	}
	// The reader is done: a second question is refused at once.
	got, err = a.approve(context.Background(), gate)
	if err != nil || got.Approved {
		t.Fatalf("after end of input: %+v, %v", got, err)
	}
	if _, open := <-a.lines.lines; open {
		t.Error("the reading goroutine did not end with its input")
	}
}

func TestApprovalsWaitEndsWithContext(t *testing.T) {
	a, _, q, _ := terminal(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := a.approve(ctx, gate)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if !strings.HasSuffix(q.String(), "refuses: \n") {
		t.Errorf("the unanswered question's line was not ended: %q", q.String())
	}

	ctx, cancel = context.WithCancel(context.Background())
	go func() { <-q.asked; cancel() }()
	if _, err := a.approve(ctx, gate); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestApprovalsLateAnswerIsNotTheNextAnswer(t *testing.T) {
	a, w, q, _ := terminal(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := a.approve(ctx, gate); err == nil {
		t.Fatal("answered without an answer")
	}
	// "yes" typed after the first question gave up, before the next one.
	if _, err := io.WriteString(w, "yes\n"); err != nil {
		t.Fatal(err)
	}
	answerWhenAsked(t, w, q, "no\n")
	got, err := a.approve(context.Background(), gate)
	if err != nil {
		t.Fatal(err)
	}
	if got.Approved {
		t.Error("a yes typed before the question approved it")
	}
}

func TestApprovalsWithoutAsking(t *testing.T) {
	t.Run("pre-approved", func(t *testing.T) {
		a, _, q, paused := terminal(t, "gate")
		for _, dry := range []bool{false, true} {
			req := gate
			req.DryRun = dry
			got, err := a.approve(context.Background(), req)
			want := steps.Approval{Approved: true, Approver: "alice", How: steps.ApprovedByFlag}
			if err != nil || got != want {
				t.Errorf("dry=%v: %+v, %v", dry, got, err)
			}
		}
		if q.String() != "" || *paused != 0 {
			t.Errorf("asked anyway: %q", q.String())
		}
	})
	t.Run("dry run on a terminal", func(t *testing.T) {
		a, _, q, _ := terminal(t)
		req := gate
		req.DryRun = true
		got, err := a.approve(context.Background(), req)
		if want := (steps.Approval{Approver: "alice", How: steps.ApprovedByPrompt}); err != nil || got != want {
			t.Errorf("%+v, %v", got, err)
		}
		if q.String() != "" {
			t.Errorf("a dry run asked: %q", q.String())
		}
	})
	t.Run("not an approver", func(t *testing.T) {
		a, _, q, _ := terminal(t)
		req := gate
		req.Approvers = []string{"bob", "carol"}
		got, err := a.approve(context.Background(), req)
		if err != nil || got.Approved || got.Approver != "alice" {
			t.Errorf("%+v, %v", got, err)
		}
		if q.String() != "" {
			t.Errorf("asked someone whose yes does not count: %q", q.String())
		}
	})
	t.Run("no terminal", func(t *testing.T) {
		a := newApprovals(nil, "", strings.NewReader("yes\n"), io.Discard)
		if a.tty {
			t.Fatal("a strings.Reader is a terminal")
		}
		if a.approver == "" {
			t.Error("no default approver (the operator)")
		}
		_, err := a.approve(context.Background(), gate)
		if err == nil || err.Error() != "approval gate needs --approve gate (no terminal to ask on)" || !steps.IsPermanent(err) {
			t.Errorf("err = %v", err)
		}
		req := gate
		req.DryRun = true
		got, err := a.approve(context.Background(), req)
		if err != nil || got.Approved || got.How != "" {
			t.Errorf("dry run without a terminal: %+v, %v", got, err)
		}
	})
}

func TestIsTTY(t *testing.T) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for name, f := range map[string]any{"/dev/null": devnull, "a pipe": r, "a buffer": &bytes.Buffer{}} {
		if isTerminal(f) {
			t.Errorf("%s is taken for a terminal", name)
		}
	}
	if tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0); err == nil {
		defer tty.Close()
		if !isTerminal(tty) {
			t.Error("/dev/tty is not taken for a terminal")
		}
	}
}

// TestApprovalOnAPseudoTerminal runs the real command on a pseudo-terminal
// (script(1)) and leaves the question unanswered: Ctrl-C interrupts the
// wait and rolls back; the step's timeout ends it.
func TestApprovalOnAPseudoTerminal(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) is needed to run cutover on a pseudo-terminal")
	}
	bin := buildCutover(t)
	plan := `apiVersion: cutover/v1
kind: Plan
name: pty
version: 1
steps:
  - id: prepare
    type: run-command
    with: {argv: ["true"]}
    rollback:
      - type: run-command
        with: {argv: [touch, undone]}
  - id: gate
    type: approval
    timeout: %TIMEOUT%
    with: {message: "Switch production?"}
`
	for _, tc := range []struct {
		name, timeout string
		typed         string // after the question; "" types nothing
		want          []string
	}{
		{"ctrl-c", "1m", "\x03", []string{
			"FAILED    gate", "interrupted (interrupt received) while waiting for approval", "run rolled-back (exit 1)",
		}},
		{"timeout", "1s", "", []string{
			"FAILED    gate", "timed out waiting for approval: no answer within 1s", "run rolled-back (exit 1)",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := strings.Replace(plan, "%TIMEOUT%", tc.timeout, 1)
			if err := os.WriteFile(filepath.Join(dir, "plan.yaml"), []byte(p), 0o600); err != nil {
				t.Fatal(err)
			}
			q := newQuestion()
			cmd := exec.Command(script, "-qfec", "exec "+bin+" run plan.yaml --approver alice --journal-dir journal", os.DevNull)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "NO_COLOR=1")
			cmd.Stdout = q
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			defer stdin.Close()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-q.asked:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("no question within 30s:\n%s", q.String())
			}
			if tc.typed != "" {
				io.WriteString(stdin, tc.typed)
			}
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("cutover did not end:\n%s", q.String())
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Errorf("exit: %v, want 1", err)
			}
			out := q.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "undone")); err != nil {
				t.Errorf("the rollback did not run: %v", err)
			}
		})
	}
}
