package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"

	"github.com/pgcutover/cutover/engine/journal"
	"github.com/pgcutover/cutover/engine/lease"
	"github.com/pgcutover/cutover/schema"
	"github.com/pgcutover/cutover/steps"
	"github.com/pgcutover/cutover/steps/redact"
)

// DefaultTimeout applies to a step when neither it nor the plan's defaults
// set one.
const DefaultTimeout = 10 * time.Minute

// Options configure one run.
type Options struct {
	Params     map[string]any // bound with Plan.BindParams
	DryRun     bool
	JournalDir string
	Operator   string
	Host       string
	Version    string // engine version, journaled
	// Out receives child processes' live output, already masked.
	Out io.Writer
	// Observe sees every record once it is journaled (progress output).
	Observe func(*Record)
	// Abort is cancelled by a second signal: rollback stops too. The ctx
	// given to Run is cancelled by the first signal: the running step stops
	// and the plan rolls back.
	Abort     context.Context
	LookupEnv func(string) (string, bool)
	// Mask, if set, is used instead of a fresh set (tests plant canaries).
	Mask *redact.Set
	// Argv is the command line, journaled in run.start.
	Argv []string
	// Approve answers approval steps (--approve, or a question on the
	// terminal). Nil: approval steps fail, for want of a way to ask.
	Approve steps.ApproveFunc
	// JournalKey, if set, MACs every journal record (see journal.Writer.SetKey).
	JournalKey []byte
	// NoLock skips the journal directory's lease and the targets' advisory
	// locks (dry runs never take them).
	NoLock bool
	// Lease tunes the lease's heartbeat and staleness (zero: the defaults).
	Lease lease.Options
}

func (o *Options) lookupEnv(k string) (string, bool) {
	if o.LookupEnv != nil {
		return o.LookupEnv(k)
	}
	return os.LookupEnv(k)
}

// Result is how a run ended.
type Result struct {
	RunID    string
	Journal  string
	Status   string
	ExitCode int
	// Err summarises what went wrong, secrets masked; nil on success.
	Err error
	// Head is the sha256 of the journal's last line (see journal.Report.Head).
	Head string
}

type runner struct {
	prog    *Program
	opts    Options
	mask    *redact.Set
	journal *journal.Writer
	runID   string
	vars    map[string]any
	act     *activation
	status  map[string]string
	secrets map[string]secretValue
	targets *steps.Targets
	preview map[*Step][]string // dry run: what a failure at each step would roll back
	started time.Time
	locked  map[string]bool // targets this run holds the advisory lock of; nil: no locking
	lease   *lease.Lease    // the plan's lease; nil in a dry run
	// journalErr is the first failure to write the journal.
	journalErr error
}

// Run executes a compiled plan. It never panics on plan content; every
// failure ends in a status and an exit code (DESIGN §4).
func Run(ctx context.Context, prog *Program, opts Options) *Result {
	start := time.Now().UTC()
	r := newRunner(prog, opts, journal.NewRunID(start), start)
	res := &Result{RunID: r.runID}
	l, err := r.acquireLease()
	if err != nil {
		return notLocked(res, err)
	}
	if l != nil {
		defer l.Release()
	}
	w, err := journal.Create(opts.JournalDir, r.runID, r.mask.Bytes)
	if err != nil {
		return noJournal(res, err)
	}
	defer w.Close()
	r.setJournal(w)
	res.Journal = w.Path()

	p := prog.Plan
	cwd, _ := os.Getwd()
	dry := opts.DryRun
	rs := &Record{Type: RecRunStart, RunID: r.runID, Plan: &PlanInfo{Name: p.Name, Version: p.Version, File: p.File, SHA256: p.SHA256},
		Params: jsonParams(opts.Params), Operator: r.opts.Operator, Host: r.opts.Host, Engine: opts.Version, DryRun: &dry,
		Argv: maskStrings(r.mask, opts.Argv), Cwd: cwd, PID: os.Getpid()}
	if opts.JournalKey != nil {
		rs.MAC = MACAlgorithm
	}
	r.emit(rs, true)
	if r.journalErr != nil {
		return noJournal(res, r.journalErr)
	}
	r.prepare(ctx)
	defer r.targets.Close()
	if err := r.lockTargets(ctx, l); err != nil {
		return r.cannotStart(res, err)
	}
	for _, s := range prog.Steps {
		if s.Decl.ID != "" {
			r.setStatus(s, StepNotRun)
		}
	}
	status, summary := r.main(ctx, 0, nil, -1)
	return r.finish(status, summary, res)
}

// noJournal is the result of a run whose journal cannot be written.
func noJournal(res *Result, err error) *Result {
	res.Status, res.ExitCode, res.Err = StatusCouldNotStart, ExitCannotStart, fmt.Errorf("cannot write the journal: %w", err)
	return res
}

// notLocked is the result of a run that cannot take its lease.
func notLocked(res *Result, err error) *Result {
	res.Status, res.ExitCode, res.Err = StatusCouldNotStart, ExitCannotStart, fmt.Errorf("%w; nothing ran", err)
	return res
}

// setJournal gives the runner its journal, MACed when there is a key.
func (r *runner) setJournal(w *journal.Writer) {
	if r.opts.JournalKey != nil {
		w.SetKey(r.opts.JournalKey)
	}
	r.journal = w
}

// MACAlgorithm names, in run.start, how the journal's records are MACed.
const MACAlgorithm = "hmac-sha256"

// newRunner sets up a runner; the caller gives it a journal.
func newRunner(prog *Program, opts Options, runID string, start time.Time) *runner {
	if opts.Abort == nil {
		opts.Abort = context.Background()
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	mask := opts.Mask
	if mask == nil {
		mask = redact.New()
	}
	if opts.Operator == "" {
		opts.Operator = Operator()
	}
	if opts.Host == "" {
		opts.Host, _ = os.Hostname()
	}
	if len(opts.JournalKey) > 0 {
		mask.Add("CUTOVER_JOURNAL_KEY", string(opts.JournalKey))
	}
	r := &runner{
		prog: prog, opts: opts, mask: mask,
		runID:   runID,
		started: start,
		vars:    map[string]any{},
		status:  map[string]string{},
		secrets: map[string]secretValue{},
		preview: map[*Step][]string{},
	}
	r.act = &activation{vars: r.vars}
	return r
}

// prepare reads the secrets, resolves the targets and sets the variables
// every expression may read. The caller closes r.targets.
func (r *runner) prepare(ctx context.Context) {
	p := r.prog.Plan
	if len(p.Secrets) > 0 {
		r.emit(&Record{Type: RecSecrets, Secrets: r.readSecrets(ctx)}, false)
	}
	r.targets = steps.ResolveTargets(p.Targets, steps.TargetSource{
		Secret: r.secret, LookupEnv: r.opts.lookupEnv, Register: r.mask.Add,
	})
	for name, v := range r.opts.Params {
		r.vars["params."+name] = v
	}
	r.vars["run.id"], r.vars["run.dry_run"], r.vars["run.started_at"], r.vars["run.status"] = r.runID, r.opts.DryRun, r.started, "running"
	r.vars["plan.name"], r.vars["plan.version"] = p.Name, int64(p.Version)
	r.targetVars(r.vars)
}

// finish runs the finally steps and journals the end of the run.
func (r *runner) finish(status string, summary error, res *Result) *Result {
	r.vars["run.status"] = status
	for _, s := range r.prog.Finally {
		if r.opts.Abort.Err() != nil {
			break
		}
		st, _, err := r.step(r.opts.Abort, s, "finally", "")
		if st == StepFailed && summary == nil {
			summary = fmt.Errorf("finally step %s failed: %v", s.Label(), err)
		}
	}
	if r.journalErr != nil && status == StatusSucceeded {
		status = StatusInDoubt
		summary = fmt.Errorf("the journal could not be written completely: %v", r.journalErr)
	}
	code := ExitCode(status)
	end := &Record{Type: RecRunEnd, Status: status, ExitCode: &code}
	for _, s := range r.prog.Steps {
		if r.status[s.Decl.ID] == StepNotRun {
			end.NotRun = append(end.NotRun, s.Label())
		}
	}
	if summary != nil {
		end.Message = r.mask.String(summary.Error())
	}
	r.emit(end, true)
	res.Status, res.ExitCode, res.Head = status, code, r.journal.Head()
	if summary != nil {
		res.Err = errors.New(r.mask.String(summary.Error()))
	}
	return res
}

// main runs the main steps and, on failure, the rollback saga.
//
// A run starts at step 0 with nothing done and no commit point passed
// (committed -1); a resumed run starts where the journal says it stopped.
func (r *runner) main(ctx context.Context, from int, done []*Step, committed int) (string, error) {
	var failed *Step
	var failErr error
	dryFailures := 0
	for _, s := range r.prog.Steps[from:] {
		if ctx.Err() != nil {
			failErr = fmt.Errorf("%s before step %s", interruption(ctx), s.Label())
			break
		}
		if r.opts.DryRun {
			r.preview[s] = rollbackPreview(s, done, committed)
		}
		st, _, err := r.step(ctx, s, "main", "")
		switch st {
		case StepSucceeded, StepDryRun, StepWouldRun, StepUndecided:
			done = append(done, s)
			if s.Decl.Commit && (st == StepSucceeded || r.opts.DryRun) {
				committed = s.Index
				if !r.opts.DryRun {
					r.emit(&Record{Type: RecCommit, Step: s.Label(), Message: "commit point passed: a later failure will not undo this step or any before it"}, true)
				}
			}
		case StepFailed:
			if r.opts.DryRun {
				dryFailures++
				if failErr == nil {
					failErr = fmt.Errorf("step %s failed: %v", s.Label(), err)
				}
				continue
			}
			failed, failErr = s, fmt.Errorf("step %s failed: %v", s.Label(), err)
		}
		if failed != nil {
			break
		}
	}
	if r.opts.DryRun {
		if dryFailures > 0 {
			if dryFailures > 1 {
				failErr = fmt.Errorf("%v (and %d more failing steps)", failErr, dryFailures-1)
			}
			return StatusFailed, failErr
		}
		return StatusSucceeded, nil
	}
	if failed == nil && failErr == nil {
		return StatusSucceeded, nil
	}
	return r.saga(failed, failErr, sagaPlan(failed, done, committed, r.status), done, committed, nil)
}

// sagaPlan lists the steps whose rollback blocks a failure runs, in order:
// the failed step's own first (it may be half applied), then completed
// steps after the commit point, in reverse.
func sagaPlan(failed *Step, done []*Step, committed int, status map[string]string) []*Step {
	var plan []*Step
	if failed != nil && len(failed.Rollback) > 0 {
		plan = append(plan, failed)
	}
	for i := len(done) - 1; i >= 0; i-- {
		s := done[i]
		if s.Index > committed && len(s.Rollback) > 0 && status[s.Decl.ID] == StepSucceeded {
			plan = append(plan, s)
		}
	}
	return plan
}

// saga journals the rollback plan and runs it. Rollback steps for which
// skip returns true already succeeded (a resumed rollback) and are not run
// again.
func (r *runner) saga(failed *Step, failErr error, plan, done []*Step, committed int, skip func(rb *Step, of string) bool) (string, error) {
	var pending, kept []string
	for _, s := range plan {
		pending = append(pending, s.Label())
	}
	for i := len(done) - 1; i >= 0; i-- {
		if s := done[i]; s.Index <= committed && len(s.Rollback) > 0 {
			kept = append(kept, s.Label())
		}
	}
	msg := "rolling back"
	if len(plan) == 0 {
		msg = "nothing to roll back"
	}
	if committed >= 0 {
		msg += fmt.Sprintf("; steps up to the commit point %s stay as they are", r.prog.Steps[committed].Label())
	}
	begin := &Record{Type: RecRollbackBegin, Message: msg, Pending: pending, Kept: kept, Error: r.mask.String(failErr.Error())}
	if failed != nil {
		begin.Step = failed.Label()
	}
	r.emit(begin, true)

	errs := &multierror.Error{ErrorFormat: joinErrors}
	var undone []string // rollback steps an abort kept from running (or finishing)
	for _, s := range plan {
		for _, rb := range s.Rollback {
			if r.opts.Abort.Err() != nil {
				undone = append(undone, rb.Label())
				continue
			}
			if skip != nil && skip(rb, s.Label()) {
				continue
			}
			st, _, err := r.step(r.opts.Abort, rb, "rollback", s.Label())
			if r.opts.Abort.Err() != nil && st != StepSucceeded {
				undone = append(undone, rb.Label())
				continue
			}
			if st == StepFailed {
				errs = multierror.Append(errs, fmt.Errorf("rollback %s of %s: %v", rb.Label(), s.Label(), err))
			}
		}
	}
	switch {
	case len(undone) > 0:
		return StatusAborted, fmt.Errorf("%v; aborted during rollback: not rolled back: %s; `cutover resume %s` finishes the rollback", failErr, strings.Join(undone, ", "), r.runID)
	case committed >= 0:
		e := fmt.Errorf("%v after the commit point %s: recovery is now a human decision; the journal says exactly what ran where", failErr, r.prog.Steps[committed].Label())
		if errs.ErrorOrNil() != nil {
			e = fmt.Errorf("%v; %v", e, errs)
		}
		return StatusFailedAfterCommit, e
	case errs.ErrorOrNil() != nil:
		return StatusRollbackFailed, fmt.Errorf("%v; %d rollback step(s) failed: %v", failErr, len(errs.Errors), errs)
	}
	return StatusRolledBack, failErr
}

// rollbackPreview records, for a dry run, what a failure of s would undo.
func rollbackPreview(s *Step, done []*Step, committed int) []string {
	var out []string
	add := func(x *Step) {
		for _, rb := range x.Rollback {
			out = append(out, rb.Label()+" ("+rb.Decl.Type+")")
		}
	}
	add(s)
	for i := len(done) - 1; i >= 0; i-- {
		if done[i].Index > committed {
			add(done[i])
		}
	}
	return out
}

func (r *runner) setStatus(s *Step, st string) {
	if s.Decl.ID == "" || s.Decl.Section != schema.SectionSteps {
		return
	}
	r.status[s.Decl.ID] = st
	r.vars["steps."+s.Decl.ID+".status"] = st
}

// step runs one step (main, rollback or finally) with its guard, inputs,
// retries, timeout and asserts, journaling each phase.
func (r *runner) step(ctx context.Context, s *Step, phase, of string) (string, steps.Outputs, error) {
	base := Record{Step: s.Label(), StepType: s.Decl.Type, Phase: phase, RollbackOf: of, Mutates: s.Mutates}
	if phase == "main" && r.opts.DryRun {
		base.RollbackPlan = r.preview[s]
	}
	end := func(status string, out steps.Outputs, err error, rec Record) (string, steps.Outputs, error) {
		rec.Type, rec.Status = RecStepEnd, status
		if err != nil {
			rec.Error = r.mask.String(err.Error())
		}
		if out != nil {
			rec.Outputs = r.maskOutputs(out)
		}
		// Not fsynced: the next intent record or run.end flushes it, and a
		// power loss before then leaves the step in doubt, never falsely done.
		r.emit(&rec, false)
		r.setStatus(s, status)
		return status, out, err
	}

	if s.When != nil {
		g := r.evalBool(ctx, s.When, r.act, false)
		base.Guard = &g
		switch g.Result {
		case "false":
			return end(StepSkipped, nil, nil, base)
		case "unknown":
			return end(StepUndecided, nil, nil, base)
		case "error":
			return end(StepFailed, nil, errors.New(g.Error), base)
		}
	}

	args, err := r.args(ctx, s)
	if err != nil {
		var unk errUnknown
		if errors.As(err, &unk) {
			return end(StepUndecided, nil, err, base)
		}
		return end(StepFailed, nil, err, base)
	}
	base.Inputs = r.display(s, args)

	call := &steps.Call{
		StepID: s.Label(), Args: args, DryRun: r.opts.DryRun, Out: r.opts.Out,
		Mask:    r.mask.String,
		Targets: r.targets,
		Secret:  r.secretInfo,
		Approve: r.opts.Approve,
		Started: func(pid int) {
			// Which process to look for if the runner dies mid-step.
			r.emit(&Record{Type: RecStepProcess, Step: s.Label(), StepType: s.Decl.Type, Phase: phase, RollbackOf: of, PID: pid}, false)
		},
		Announce: func(out steps.Outputs) error {
			// Durable before the step's effect, like the intent record.
			return r.emit(&Record{Type: RecStepAnnounce, Step: s.Label(), Phase: phase, RollbackOf: of, Outputs: r.maskOutputs(out)}, true)
		},
		MaskWriter: func(w io.Writer) (io.Writer, func() error) {
			mw := r.mask.Writer(w)
			return mw, mw.Flush
		},
	}

	if r.opts.DryRun && s.Mutates {
		// A mutating step's read-only variant (run-command's dry_run_argv,
		// switch-config's preview), if it has one for these inputs.
		dr, ok := s.Type.Impl.(steps.DryRunner)
		if !ok {
			return end(StepWouldRun, nil, nil, base)
		}
		t0 := time.Now()
		actx, cancel := context.WithTimeout(ctx, r.timeout(s))
		out, ran, err := dr.DryRun(actx, call)
		cancel()
		if !ran {
			return end(StepWouldRun, nil, nil, base)
		}
		base.DurationMS = ms(time.Since(t0))
		switch {
		case err != nil:
			return end(StepFailed, out, err, base)
		}
		return end(StepDryRun, out, nil, base)
	}

	if err := r.lockFor(ctx, s); err != nil {
		return end(StepFailed, nil, err, base)
	}

	retry := r.prog.Plan.Defaults.Retry
	if s.Decl.Retry != nil {
		retry = *s.Decl.Retry
	}
	backoff := retry.Backoff
	var out steps.Outputs
	t0 := time.Now()
	inputs := base.Inputs
	base.Inputs = nil // journaled once, in the start record
	for attempt := 1; ; attempt++ {
		start := base
		start.Type, start.Attempt, start.Inputs = RecStepStart, attempt, inputs
		// The intent record: durable before a mutating step has any effect.
		if err := r.emit(&start, s.Mutates); err != nil && s.Mutates {
			base.Attempt = attempt
			return end(StepFailed, nil, fmt.Errorf("not started: the intent record could not be written: %v", err), base)
		}
		actx, cancel := context.WithTimeout(ctx, r.timeout(s))
		out, err = s.Type.Impl.Run(actx, call)
		timedOut := actx.Err() != nil && ctx.Err() == nil
		cancel()
		if err != nil && timedOut && !strings.Contains(err.Error(), "timed out") {
			err = fmt.Errorf("timed out after %s: %w", r.timeout(s), err)
		}
		base.Asserts = nil
		if err == nil && len(s.Asserts) > 0 {
			base.Asserts, err = r.asserts(ctx, s, out)
		}
		base.Attempt = attempt
		if err == nil {
			base.DurationMS = ms(time.Since(t0))
			r.setOutputs(s, out)
			return end(StepSucceeded, out, nil, base)
		}
		if ctx.Err() != nil && !strings.Contains(err.Error(), "interrupted") {
			err = fmt.Errorf("%s: %w", interruption(ctx), err)
		}
		if attempt >= retry.Attempts || ctx.Err() != nil || steps.IsPermanent(err) {
			break
		}
		retryRec := base
		retryRec.Type, retryRec.Attempt, retryRec.Asserts = RecStepRetry, attempt, nil
		retryRec.Error, retryRec.RetryIn = r.mask.String(err.Error()), backoff.String()
		r.emit(&retryRec, false)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff *= 2
		if retry.MaxBackoff > 0 && backoff > retry.MaxBackoff {
			backoff = retry.MaxBackoff
		}
	}
	base.DurationMS = ms(time.Since(t0))
	if out != nil {
		r.setOutputs(s, out)
	}
	return end(StepFailed, out, err, base)
}

func (r *runner) timeout(s *Step) time.Duration {
	switch {
	case s.Decl.Timeout > 0:
		return s.Decl.Timeout
	case r.prog.Plan.Defaults.Timeout > 0:
		return r.prog.Plan.Defaults.Timeout
	}
	return DefaultTimeout
}

// asserts evaluates a step's asserts with its own outputs in scope.
func (r *runner) asserts(ctx context.Context, s *Step, out steps.Outputs) ([]Check, error) {
	own := map[string]any{}
	for k, v := range out {
		own["outputs."+k] = v
	}
	if rows, ok := out["rows"]; ok {
		own["rows"] = rows
	}
	if s.Decl.ID != "" && s.Decl.Section == schema.SectionSteps {
		for k, v := range out {
			own["steps."+s.Decl.ID+".outputs."+k] = v
		}
		own["steps."+s.Decl.ID+".status"] = StepSucceeded
	}
	act := &activation{vars: own, parent: r.act}
	var checks []Check
	var failed []string
	for _, a := range s.Asserts {
		c := r.evalBool(ctx, a, act, true)
		checks = append(checks, c)
		switch c.Result {
		case "false":
			failed = append(failed, fmt.Sprintf("assert `%s` is false%s", c.Expr, valuesText(c.Values)))
		case "error":
			failed = append(failed, fmt.Sprintf("assert `%s`: %s", c.Expr, c.Error))
		}
	}
	if len(failed) > 0 {
		if msg := s.Decl.With["message"]; msg != nil && msg.Tmpl != nil {
			if m, err := r.render(ctx, msg.Tmpl, act); err == nil && m != "" {
				failed = append([]string{m}, failed...)
			}
		}
		return checks, errors.New(strings.Join(failed, "; "))
	}
	return checks, nil
}

func valuesText(v map[string]any) string {
	if len(v) == 0 {
		return ""
	}
	parts := make([]string, 0, len(v))
	for _, k := range sortedKeys(v) {
		parts = append(parts, k+"="+FormatValue(v[k]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// FormatValue renders a value an expression read: strings quoted, so that
// a trailing newline or an empty string is visible.
func FormatValue(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case []string:
		q := make([]string, len(x))
		for i, s := range x {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	return fmt.Sprint(v)
}

func maskStrings(m *redact.Set, in []string) []string {
	if len(in) == 0 {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = m.String(s)
	}
	return out
}

// joinErrors renders aggregated rollback errors on one line.
func joinErrors(errs []error) string {
	parts := make([]string, len(errs))
	for i, e := range errs {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

// interruption says why the run's context ended (the signal, when the CLI
// names it).
func interruption(ctx context.Context) string {
	if c := context.Cause(ctx); c != nil && c != context.Canceled {
		return "interrupted (" + c.Error() + ")"
	}
	return "interrupted"
}

func (r *runner) setOutputs(s *Step, out steps.Outputs) {
	if s.Decl.ID == "" || s.Decl.Section != schema.SectionSteps {
		return
	}
	pre := "steps." + s.Decl.ID + ".outputs."
	for _, o := range s.Type.Outputs {
		if v, ok := out[o.Name]; ok {
			r.vars[pre+o.Name] = v
		}
	}
}

// args resolves every input the plan set.
func (r *runner) args(ctx context.Context, s *Step) (steps.Args, error) {
	a := steps.Args{Values: make(map[string]any, len(s.Decl.With)), Fields: s.Type.Inputs}
	for _, f := range s.Type.Inputs {
		v := s.Decl.With[f.Name]
		if v == nil {
			continue
		}
		val, err := r.resolve(ctx, v, r.act)
		if err != nil {
			return a, fmt.Errorf("with.%s: %w", f.Name, err)
		}
		a.Values[f.Name] = val
	}
	return a, nil
}

// display is what the journal records of a step's inputs: secrets by name.
func (r *runner) display(s *Step, a steps.Args) map[string]any {
	if len(a.Values) == 0 {
		return nil
	}
	out := make(map[string]any, len(a.Values))
	for name, val := range a.Values {
		v := s.Decl.With[name]
		switch {
		case v.Secret != "":
			out[name] = "[secret:" + v.Secret + "]"
		case len(v.Map) > 0:
			m := map[string]any{}
			vals, _ := val.(map[string]string)
			for _, e := range v.Map {
				if e.Val.Secret != "" {
					m[e.Key] = "[secret:" + e.Val.Secret + "]"
				} else {
					m[e.Key] = r.mask.String(vals[e.Key])
				}
			}
			out[name] = m
		default:
			out[name] = r.maskValue(val)
		}
	}
	return out
}

func (r *runner) maskValue(v any) any {
	switch x := v.(type) {
	case time.Duration:
		return x.String()
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	}
	return r.mask.Value(v)
}

func (r *runner) maskOutputs(out steps.Outputs) map[string]any {
	m := make(map[string]any, len(out))
	for k, v := range out {
		m[k] = r.maskValue(v)
	}
	return m
}

// emit journals a record (fsynced when sync) and shows it to the observer.
func (r *runner) emit(rec *Record, sync bool) error {
	rec.Time = time.Now().UTC().Format(time.RFC3339Nano)
	err := r.journal.Append(rec, sync)
	if err != nil && r.journalErr == nil {
		r.journalErr = err
	}
	if r.opts.Observe != nil {
		r.opts.Observe(rec)
	}
	return err
}

func jsonParams(p map[string]any) map[string]any {
	out := make(map[string]any, len(p))
	for k, v := range p {
		if d, ok := v.(time.Duration); ok {
			out[k] = d.String()
		} else {
			out[k] = v
		}
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Operator is who runs cutover, as journaled when Options.Operator is
// empty: the OS user, else $USER, else "".
func Operator() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}
