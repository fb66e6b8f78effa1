package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/pgcutover/cutover/engine"
	"github.com/pgcutover/cutover/engine/journal"
)

// journalKeyEnv names the environment variable that holds the journal's
// HMAC key. With it set, run and resume MAC every record and verify checks
// the MACs.
const journalKeyEnv = "CUTOVER_JOURNAL_KEY"

// journalKey returns the journal HMAC key from the environment, nil if unset.
func journalKey() []byte {
	if k := os.Getenv(journalKeyEnv); k != "" {
		return []byte(k)
	}
	return nil
}

func (s stdio) resume(ctx context.Context, args []string) int {
	fs := newFlags("resume")
	retry := fs.Bool("retry-in-doubt", false, "re-run the step a crash left in doubt if it is declared idempotent, and go on; without it, resume rolls back")
	planFile := fs.String("plan", "", "the plan file, if it is no longer where the run found it (its sha256 must still match)")
	jdir := fs.String("journal-dir", journal.DefaultDir(), "where run journals are written")
	output := fs.String("output", "text", "text or json")
	approve := approveFlag{}
	fs.Var(&approve, "approve", "pre-approve the approval step with this id, should the resumed run reach it (repeatable)")
	approver := fs.String("approver", "", "the name journaled as the approver by approval steps (default: the OS user)")
	pos, err := parseInterspersed(fs, args)
	if err == nil && len(pos) != 1 {
		err = errors.New("name exactly one run (its id, an id prefix, or its journal file)")
	}
	if err == nil && *output != "text" && *output != "json" {
		err = fmt.Errorf("--output is text or json, not %q", *output)
	}
	if err != nil {
		return s.usageError("resume RUN [flags]", fs, err)
	}
	path, err := journal.Resolve(*jdir, pos[0])
	if err != nil {
		fmt.Fprintf(s.err, "cutover resume: %v\n", err)
		return engine.ExitUsage
	}
	st, err := engine.ReadRun(path, journalKey())
	if err != nil {
		fmt.Fprintf(s.err, "cutover resume: %v\n", err)
		return engine.ExitUsage
	}
	file := *planFile
	if file == "" {
		file = st.PlanPath()
	}
	prog, ds := engine.Load(file)
	if len(ds) > 0 {
		fmt.Fprint(s.err, ds.Format())
		fmt.Fprintf(s.err, "cutover resume: the plan %s of run %s no longer loads; nothing ran\n", file, st.RunID)
		return engine.ExitUsage
	}
	bound, err := prog.Plan.BindParams(st.ParamStrings())
	if err != nil {
		fmt.Fprintf(s.err, "cutover resume: the journaled params no longer bind: %v; nothing ran\n", err)
		return engine.ExitUsage
	}
	if err := checkApprove(prog, approve); err != nil {
		fmt.Fprintf(s.err, "cutover resume: %v\nnothing ran\n", err)
		return engine.ExitUsage
	}
	if err := engine.CanResume(st, prog, *retry); err != nil {
		fmt.Fprintf(s.err, "cutover resume: %v\nnothing ran\n", err)
		var re *engine.ResumeError
		if errors.As(err, &re) {
			return re.Code
		}
		return engine.ExitUsage
	}

	runCtx, abortCtx, stop := s.signals(ctx)
	defer stop()
	opts := engine.Options{Params: bound, JournalDir: *jdir, Version: engineVersion(), Abort: abortCtx,
		Argv: append([]string{"cutover", "resume"}, args...)}
	view := s.attach(&opts, *output, approve, *approver)
	res := engine.Resume(runCtx, prog, st, opts, *retry)
	return s.ended("resume", res, view, map[string]any{"resumed": true})
}

// observeHook, when set, also sees every record once it is journaled. The
// crash tests set it to kill the process at chosen points of a run.
var observeHook func(*engine.Record)

func withObserveHook(f func(*engine.Record)) func(*engine.Record) {
	if observeHook == nil {
		return f
	}
	return func(r *engine.Record) {
		if f != nil {
			f(r)
		}
		observeHook(r)
	}
}
