package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/pgcutover/cutover/engine"
	"github.com/pgcutover/cutover/engine/journal"
	"github.com/pgcutover/cutover/schema"
	"github.com/pgcutover/cutover/steps"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

func engineVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

const usage = `cutover runs database cutover plans: validated, journaled, rolled back on failure.

Usage:
  cutover validate PLAN...                 check plans, expressions included; exit 2 on any problem
  cutover run PLAN [--dry-run] [--param name=value]... [--journal-dir DIR]
                   [--approve ID]... [--approver NAME]
  cutover resume RUN [--retry-in-doubt]    after a crash: roll back (or retry idempotent steps)
  cutover journal list|show RUN|verify [RUN | --all]   list runs, a run's timeline, check hash chains
  cutover journal diff RUN RUN [--output text|json]    what changed between two runs (exit 1 if anything did)
  cutover journal report RUN [--format json|junit|html] [--output FILE]
  cutover steps [TYPE]                     list step types, or describe one
  cutover schema                           print the plan JSON Schema
  cutover sandbox up|env|down [--dir DIR]  local old and new PostgreSQL clusters to rehearse on
  cutover init [--project DIR] [flags]     write a commented plan for a Django project, to review
  cutover version

Exit codes: 0 succeeded (or a clean dry run); 1 failed and rolled back (or a dry run
found a failing check); 2 usage error or invalid plan; 3 needs a human (rollback-failed,
failed-after-commit, aborted, in-doubt); 4 could not start (journal not writable).
`

// io bundles the streams a command writes to.
type stdio struct {
	in       io.Reader
	out, err io.Writer
	sig      <-chan os.Signal
}

// run is the whole CLI; main only exits with its result.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, sig <-chan os.Signal) int {
	s := stdio{in: stdin, out: stdout, err: stderr, sig: sig}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return engine.ExitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "validate":
		return s.validate(rest)
	case "run":
		return s.run(ctx, rest)
	case "resume":
		return s.resume(ctx, rest)
	case "journal":
		return s.journal(rest)
	case "steps":
		return s.steps(rest)
	case "sandbox":
		return s.sandbox(rest)
	case "init":
		return s.initPlan(rest)
	case "schema":
		stdout.Write(steps.JSONSchema())
		return 0
	case "version", "--version":
		fmt.Fprintf(stdout, "cutover %s (plan format %s)\n", engineVersion(), schema.APIVersion)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "cutover: unknown command %q%s\n\n%s", cmd, schema.Suggest(cmd, []string{"validate", "run", "resume", "journal", "steps", "schema", "version", "init"}), usage)
	return engine.ExitUsage
}

// usageError prints a problem with the command line and returns exit 2.
func (s stdio) usageError(cmd string, fs *flag.FlagSet, err error) int {
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(s.out, "Usage: cutover %s\n\nFlags:\n%s", cmd, flagUsage(fs))
		return 0
	}
	fmt.Fprintf(s.err, "cutover %s: %v\n\nUsage: cutover %s\n\nFlags:\n%s", strings.Fields(cmd)[0], err, cmd, flagUsage(fs))
	return engine.ExitUsage
}

func (s stdio) validate(args []string) int {
	fs := newFlags("validate")
	output := fs.String("output", "text", "text or json")
	files, err := parseInterspersed(fs, args)
	if err == nil && len(files) == 0 {
		err = errors.New("name at least one plan file")
	}
	if err == nil && *output != "text" && *output != "json" {
		err = fmt.Errorf("--output is text or json, not %q", *output)
	}
	if err != nil {
		return s.usageError("validate PLAN...", fs, err)
	}
	type fileResult struct {
		File        string             `json:"file"`
		Valid       bool               `json:"valid"`
		Plan        string             `json:"plan,omitempty"`
		Version     int                `json:"version,omitempty"`
		Steps       int                `json:"steps,omitempty"`
		Diagnostics schema.Diagnostics `json:"diagnostics,omitempty"`
	}
	var results []fileResult
	bad := false
	for _, f := range files {
		prog, ds := engine.Load(f)
		r := fileResult{File: f, Valid: len(ds) == 0, Diagnostics: ds}
		if prog != nil {
			r.Plan, r.Version, r.Steps = prog.Plan.Name, prog.Plan.Version, len(prog.Steps)
		}
		if len(ds) > 0 {
			bad = true
		}
		results = append(results, r)
	}
	if *output == "json" {
		enc := json.NewEncoder(s.out)
		enc.SetIndent("", "  ")
		enc.Encode(results)
	} else {
		for _, r := range results {
			if r.Valid {
				fmt.Fprintf(s.out, "%s: ok (%s@%d, %s)\n", r.File, r.Plan, r.Version, plural(r.Steps, "step"))
				continue
			}
			fmt.Fprint(s.err, r.Diagnostics.Format())
			fmt.Fprintf(s.err, "%s: %s\n", r.File, plural(len(r.Diagnostics), "problem"))
		}
	}
	if bad {
		return engine.ExitUsage
	}
	return 0
}

func (s stdio) run(ctx context.Context, args []string) int {
	fs := newFlags("run")
	dry := fs.Bool("dry-run", false, "run read-only steps and the dry-run variants of mutating ones; change nothing")
	params := paramFlag{}
	fs.Var(params, "param", "set a plan param, name=value (repeatable)")
	jdir := fs.String("journal-dir", journal.DefaultDir(), "where run journals are written")
	output := fs.String("output", "text", "text or json")
	report := fs.String("report", "", "after the run, write a report of its journal to FILE")
	reportFormat := fs.String("report-format", reportJSON, "format of --report: json, junit or html")
	approve := approveFlag{}
	fs.Var(&approve, "approve", "pre-approve the approval step with this id: it does not ask (repeatable; ids only, no wildcard)")
	approver := fs.String("approver", "", "the name journaled as the approver by approval steps (default: the operator, the OS user)")
	files, err := parseInterspersed(fs, args)
	if err == nil && len(files) != 1 {
		err = errors.New("name exactly one plan file")
	}
	if err == nil && *output != "text" && *output != "json" {
		err = fmt.Errorf("--output is text or json, not %q", *output)
	}
	if err == nil {
		err = checkReportFormat("--report-format", *reportFormat)
	}
	if err != nil {
		return s.usageError("run PLAN [flags]", fs, err)
	}
	prog, ds := engine.Load(files[0])
	if len(ds) > 0 {
		fmt.Fprint(s.err, ds.Format())
		fmt.Fprintf(s.err, "%s: %s; nothing ran\n", files[0], plural(len(ds), "problem"))
		return engine.ExitUsage
	}
	bound, err := prog.Plan.BindParams(params)
	if err != nil {
		fmt.Fprintf(s.err, "cutover run: %v\nnothing ran\n", err)
		return engine.ExitUsage
	}
	if err := checkApprove(prog, approve); err != nil {
		fmt.Fprintf(s.err, "cutover run: %v\nnothing ran\n", err)
		return engine.ExitUsage
	}

	runCtx, abortCtx, stop := s.signals(ctx)
	defer stop()

	opts := engine.Options{Params: bound, DryRun: *dry, JournalDir: *jdir, Version: engineVersion(), Abort: abortCtx,
		Argv: append([]string{"cutover", "run"}, args...)}
	view := s.attach(&opts, *output, approve, *approver)
	res := engine.Run(runCtx, prog, opts)
	s.runReportFile(res.Journal, *reportFormat, *report)
	return s.ended("run", res, view, map[string]any{"dry_run": *dry})
}

// attach sets where a run shows itself: a live view for text output (and
// the approval questions, which pause it), child output on stderr for
// json; the journal key; and the crash tests' hook.
func (s stdio) attach(opts *engine.Options, output string, approve []string, approver string) *progress {
	opts.JournalKey = journalKey()
	approvals := newApprovals(approve, approver, s.in, s.err)
	opts.Approve = approvals.approve
	var view *progress
	if output == "text" {
		view = newProgress(s.out, isTerminal(s.out))
		approvals.pause = view.suspend
		opts.Observe = view.record
		opts.Out = view.childOutput()
	} else {
		opts.Out = s.err
	}
	opts.Observe = withObserveHook(opts.Observe)
	return view
}

// ended prints how a run (or a resumed run) ended and returns its exit
// code: the view's last lines, or one JSON object with extra in it.
func (s stdio) ended(cmd string, res *engine.Result, view *progress, extra map[string]any) int {
	if view == nil {
		out := map[string]any{"run_id": res.RunID, "journal": res.Journal, "status": res.Status, "exit_code": res.ExitCode}
		for k, v := range extra {
			out[k] = v
		}
		if res.Err != nil {
			out["error"] = res.Err.Error()
		}
		enc := json.NewEncoder(s.out)
		enc.SetIndent("", "  ")
		enc.Encode(out)
	} else {
		view.finish(res)
	}
	if res.ExitCode == engine.ExitCannotStart && res.Err != nil {
		fmt.Fprintf(s.err, "cutover %s: %v\n", cmd, res.Err)
	}
	return res.ExitCode
}

// signals turns the first SIGINT/SIGTERM into cancelling runCtx (the step
// stops, the plan rolls back) and a second into cancelling abortCtx (the
// rollback stops too). stop releases both.
func (s stdio) signals(ctx context.Context) (runCtx, abortCtx context.Context, stop func()) {
	runCtx, interrupt := context.WithCancelCause(ctx)
	abortCtx, abort := context.WithCancel(context.Background())
	stopSignals := make(chan struct{})
	if s.sig != nil {
		go func() {
			n := 0
			for {
				select {
				case <-stopSignals:
					return
				case sg := <-s.sig:
					n++
					if n == 1 {
						fmt.Fprintf(s.err, "\ncutover: %v: stopping the running step and rolling back (again to abort at once)\n", sg)
						interrupt(fmt.Errorf("%v received", sg))
					} else {
						fmt.Fprintf(s.err, "\ncutover: %v again: aborting now; the journal records what is in doubt\n", sg)
						abort()
					}
				}
			}
		}()
	}

	return runCtx, abortCtx, func() {
		close(stopSignals)
		abort()
		interrupt(nil)
	}
}

func (s stdio) steps(args []string) int {
	fs := newFlags("steps")
	output := fs.String("output", "text", "text, json or markdown")
	pos, err := parseInterspersed(fs, args)
	if err == nil && len(pos) > 1 {
		err = errors.New("name at most one step type")
	}
	if err != nil {
		return s.usageError("steps [TYPE]", fs, err)
	}
	if *output == "markdown" {
		fmt.Fprint(s.out, steps.Markdown())
		return 0
	}
	if len(pos) == 1 {
		t, ok := steps.Lookup(pos[0])
		if !ok {
			names := steps.Types.StepTypeNames()
			hint := schema.Suggest(pos[0], names)
			if hint == "" {
				hint = " (step types: " + strings.Join(names, ", ") + ")"
			}
			fmt.Fprintf(s.err, "cutover steps: no step type %q%s\n", pos[0], hint)
			return engine.ExitUsage
		}
		if *output == "json" {
			return s.json(describeJSON(t))
		}
		fmt.Fprint(s.out, steps.Describe(t))
		return 0
	}
	if *output == "json" {
		var all []any
		for _, t := range steps.All() {
			all = append(all, describeJSON(t))
		}
		return s.json(all)
	}
	for _, t := range steps.All() {
		m := "read-only"
		if t.Mutates(schema.Inputs{}) {
			m = "mutating"
		}
		fmt.Fprintf(s.out, "%-18s %-10s %s\n", t.Name, m, t.Summary)
	}
	return 0
}

func describeJSON(t *steps.Type) map[string]any {
	type field struct {
		Name     string      `json:"name"`
		Kind     schema.Kind `json:"type"`
		Required bool        `json:"required,omitempty"`
		Default  any         `json:"default,omitempty"`
		Secret   bool        `json:"secret_capable,omitempty"`
		Doc      string      `json:"description"`
	}
	var in []field
	for _, f := range t.Inputs {
		in = append(in, field{f.Name, f.Kind, f.Required, f.Default, f.Secret, f.Doc})
	}
	return map[string]any{"type": t.Name, "summary": t.Summary, "mutates": t.Mutates(schema.Inputs{}), "dry_run": t.DryRun, "inputs": in, "outputs": t.Outputs}
}

func (s stdio) json(v any) int {
	enc := json.NewEncoder(s.out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(s.err, "cutover: %v\n", err)
		return 1
	}
	return 0
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// isTerminal reports whether a stream (a reader or a writer) is a terminal:
// a character device is not enough (/dev/null is one).
func isTerminal(stream any) bool {
	f, ok := stream.(*os.File)
	return ok && isTerminalFd(f.Fd())
}
