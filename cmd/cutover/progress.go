package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/pgcutover/cutover/engine"
)

// progress renders run records: live, rewritten lines on a terminal; one
// plain line per finished step otherwise.
type progress struct {
	mu     sync.Mutex
	w      io.Writer
	tty    bool
	color  bool
	open   bool // a "running" line without its newline is on screen
	atBOL  bool // child output is at the start of a line
	dryRun bool
	title  string
}

func newProgress(w io.Writer, tty bool) *progress {
	_, noColor := os.LookupEnv("NO_COLOR")
	return &progress{w: w, tty: tty, color: tty && !noColor && os.Getenv("TERM") != "dumb", atBOL: true}
}

const (
	red    = "31"
	green  = "32"
	yellow = "33"
	cyan   = "36"
	bold   = "1"
)

func (p *progress) paint(code, s string) string {
	if !p.color {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// closeLine ends whatever is on the current line: a live "running" line
// is erased, and child output that lacked its final newline gets one.
func (p *progress) closeLine() {
	if p.open {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.open = false
	}
	if !p.atBOL {
		fmt.Fprintln(p.w)
		p.atBOL = true
	}
}

// suspend ends the live "running" line before a question is asked on the
// terminal (an approval), so that the prompt is not drawn over it or erased
// by it; the step's result line follows the answer as usual.
func (p *progress) suspend() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLine()
}

var statusWord = map[string]struct{ word, color string }{
	engine.StepSucceeded: {"ok", green},
	engine.StepFailed:    {"FAILED", red},
	engine.StepSkipped:   {"skipped", yellow},
	engine.StepUndecided: {"undecided", yellow},
	engine.StepDryRun:    {"dry-run", cyan},
	engine.StepWouldRun:  {"would-run", cyan},
	engine.StepInDoubt:   {"IN DOUBT", red},
}

func (p *progress) record(r *engine.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch r.Type {
	case engine.RecRunStart:
		p.dryRun = r.DryRun != nil && *r.DryRun
		mode := ""
		if p.dryRun {
			mode = " (dry run: nothing is changed)"
		}
		fmt.Fprintf(p.w, "%s %s@%d run %s%s\n", p.paint(bold, "cutover"), r.Plan.Name, r.Plan.Version, r.RunID, mode)
	case engine.RecResume:
		fmt.Fprintf(p.w, "%s run %s (%s): %s\n", p.paint(bold, "cutover resume"), r.RunID, r.Mode, r.Message)
		if r.TornBytes > 0 {
			fmt.Fprintf(p.w, "  %s a torn last line (%d bytes, a record the crash cut short) was removed from the journal\n", p.paint(yellow, "!"), r.TornBytes)
		}
	case engine.RecLock:
		if strings.HasPrefix(r.Message, "took over") {
			fmt.Fprintf(p.w, "  %s %s\n", p.paint(yellow, "!"), r.Message)
		}
	case engine.RecSecrets:
		for _, s := range r.Secrets {
			if !s.OK {
				fmt.Fprintf(p.w, "  %s secret %s (%s %s): %s\n", p.paint(yellow, "!"), s.Name, s.From, s.Source, s.Error)
			}
		}
	case engine.RecStepStart:
		if p.tty {
			p.closeLine()
			fmt.Fprintf(p.w, "  %s %-20s %s", p.paint(cyan, "…        "), p.label(r), p.paint("2", r.StepType))
			p.open = true
		}
	case engine.RecStepRetry:
		p.closeLine()
		fmt.Fprintf(p.w, "  %-9s %s attempt %d failed: %s; next attempt in %s\n", p.paint(yellow, "retry"), r.Step, r.Attempt, r.Error, r.RetryIn)
	case engine.RecStepEnd:
		p.closeLine()
		p.stepLine(r)
	case engine.RecCommit:
		p.closeLine()
		fmt.Fprintf(p.w, "  %s %s\n", p.paint(bold, "── commit:"), r.Message)
	case engine.RecRollbackBegin:
		p.closeLine()
		line := "  " + p.paint(yellow, "── rollback:") + " " + r.Message
		if len(r.Pending) > 0 {
			line += " (" + strings.Join(r.Pending, ", ") + ")"
		}
		fmt.Fprintln(p.w, line)
	}
}

func (p *progress) label(r *engine.Record) string {
	switch r.Phase {
	case "rollback":
		return "↺ " + r.Step
	case "finally":
		return "finally " + r.Step
	}
	return r.Step
}

func (p *progress) stepLine(r *engine.Record) {
	sw, ok := statusWord[r.Status]
	if !ok {
		sw.word, sw.color = r.Status, bold
	}
	word := fmt.Sprintf("%-9s", sw.word)
	var extra []string
	if r.DurationMS > 0 {
		extra = append(extra, formatMS(r.DurationMS))
	}
	switch r.Status {
	case engine.StepSkipped:
		extra = append(extra, "when `"+r.Guard.Expr+"` is false")
	case engine.StepUndecided:
		if r.Guard != nil && r.Guard.Result == "unknown" {
			extra = append(extra, "when `"+r.Guard.Expr+"` is decided at run time")
		} else if r.Error != "" {
			extra = append(extra, r.Error)
		}
	case engine.StepWouldRun:
		extra = append(extra, "mutating: not run in a dry run")
	case engine.StepDryRun:
		if r.StepType == "approval" {
			extra = append(extra, "not asked in a dry run")
		} else {
			extra = append(extra, "dry-run variant passed")
		}
	}
	line := fmt.Sprintf("  %s %-20s %s", p.paint(sw.color, word), p.label(r), p.paint("2", fmt.Sprintf("%-14s", r.StepType)))
	if len(extra) > 0 {
		line += "  " + strings.Join(extra, "; ")
	}
	fmt.Fprintln(p.w, strings.TrimRight(line, " "))
	for _, a := range r.Asserts {
		if a.Result == "unknown" {
			fmt.Fprintf(p.w, "            assert `%s` is decided at run time\n", a.Expr)
		}
	}
	if r.Status == engine.StepFailed && r.Error != "" {
		for _, para := range strings.Split(r.Error, "\n") {
			for _, line := range strings.Split(para, "; ") {
				if strings.TrimSpace(line) != "" {
					fmt.Fprintf(p.w, "            %s\n", p.paint(red, line))
				}
			}
		}
	}
	if len(r.RollbackPlan) > 0 {
		fmt.Fprintf(p.w, "            if this fails, roll back: %s\n", strings.Join(r.RollbackPlan, ", "))
	}
}

func formatMS(ms float64) string {
	switch {
	case ms < 1:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.0fms", ms)
	}
	return fmt.Sprintf("%.1fs", ms/1000)
}

// childOutput is where steps' live output goes: each line indented under
// the running step.
func (p *progress) childOutput() io.Writer { return childWriter{p} }

type childWriter struct{ p *progress }

func (c childWriter) Write(b []byte) (int, error) {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open {
		fmt.Fprintln(p.w)
		p.open = false
	}
	n := len(b)
	for len(b) > 0 {
		if p.atBOL {
			fmt.Fprint(p.w, p.paint("2", "            │ "))
			p.atBOL = false
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.w.Write(b)
			break
		}
		p.w.Write(b[:i+1])
		b = b[i+1:]
		p.atBOL = true
	}
	return n, nil
}

func (p *progress) finish(res *engine.Result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLine()
	color := green
	if res.ExitCode != 0 {
		color = red
	}
	what := "run"
	if p.dryRun {
		what = "dry run"
	}
	fmt.Fprintf(p.w, "%s %s (exit %d)", what, p.paint(color, res.Status), res.ExitCode)
	if res.Err != nil {
		fmt.Fprintf(p.w, ": %s", res.Err)
	}
	fmt.Fprintln(p.w)
	if res.Journal != "" {
		fmt.Fprintf(p.w, "journal: %s (head %s)\n", res.Journal, short(res.Head))
	}
}
