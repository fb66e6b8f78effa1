package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgcutover/cutover/engine/internal/proc"
	"github.com/pgcutover/cutover/engine/journal"
	"github.com/pgcutover/cutover/schema"
	"github.com/pgcutover/cutover/steps"
)

// RunState is what a journal says about a run: enough to resume it.
type RunState struct {
	Path    string
	RunID   string
	Plan    PlanInfo
	Cwd     string
	Host    string
	PID     int // the runner's pid (of the last run.start or resume)
	DryRun  bool
	Started time.Time
	// Params as journaled, numbers kept as json.Number.
	Params map[string]any
	// End is the last run.end, nil if the runner died before writing one.
	End *Record
	// Torn is the torn last line a crash left, if any.
	Torn *journal.Torn
	// Steps holds the last step.end of every main step, by label.
	Steps map[string]*Record
	// Rollbacks holds, by "rollback_of/label", the rollback steps that
	// ended, with their last status.
	Rollbacks map[string]string
	// InDoubt is the start record of a mutating step the runner started and
	// never ended; InDoubtPID its child process, if it had one.
	InDoubt    *Record
	InDoubtPID int
	// InDoubtOutputs are the outputs the in-doubt step announced before
	// its effect (steps.Call.Announce); nil if it announced none.
	InDoubtOutputs map[string]any
	// Unended lists every mutating step started and never ended; more than
	// one means the journal is not one a runner writes.
	Unended []string
	// Committed is the label of the last commit point passed, "" if none.
	Committed string
	// RollbackBegin is the last rollback.begin, nil if no rollback started.
	RollbackBegin *Record
	// Verified is the chain (and MAC) check of the journal.
	Verified journal.Report
}

// ReadRun reads and verifies a run's journal. key, if not nil, is the
// journal's HMAC key: every record's MAC must then match.
func ReadRun(path string, key []byte) (*RunState, error) {
	rep, err := journal.VerifyKey(path, key)
	if err != nil {
		return nil, err
	}
	recs, torn, err := journal.Read(path)
	if err != nil {
		return nil, err
	}
	st := &RunState{Path: path, Torn: torn, Verified: rep, Steps: map[string]*Record{}, Rollbacks: map[string]string{}}
	open := map[string]*Record{} // step.start without its end, by phase/of/label
	pids := map[string]int{}
	announced := map[string]map[string]any{}
	key3 := func(r *Record) string { return r.Phase + "/" + r.RollbackOf + "/" + r.Step }
	for _, raw := range recs {
		var rec Record
		dec := json.NewDecoder(bytes.NewReader(raw.Raw))
		dec.UseNumber()
		if err := dec.Decode(&rec); err != nil {
			return nil, fmt.Errorf("%s: line %d: %v", path, raw.Line, err)
		}
		switch rec.Type {
		case RecRunStart:
			st.RunID, st.Cwd, st.Host, st.PID, st.Params = rec.RunID, rec.Cwd, rec.Host, rec.PID, rec.Params
			if rec.Plan != nil {
				st.Plan = *rec.Plan
			}
			st.DryRun = rec.DryRun != nil && *rec.DryRun
			st.Started, _ = time.Parse(time.RFC3339Nano, rec.Time)
		case RecResume:
			st.Host, st.PID, st.End = rec.Host, rec.PID, nil
		case RecStepStart:
			r := rec
			open[key3(&r)] = &r
			delete(pids, key3(&r))
			delete(announced, key3(&r))
		case RecStepProcess:
			pids[key3(&rec)] = rec.PID
		case RecStepAnnounce:
			if announced[key3(&rec)] == nil {
				announced[key3(&rec)] = map[string]any{}
			}
			for k, v := range rec.Outputs {
				announced[key3(&rec)][k] = v
			}
		case RecStepEnd:
			r := rec
			delete(open, key3(&r))
			switch r.Phase {
			case "main":
				st.Steps[r.Step] = &r
			case "rollback":
				st.Rollbacks[r.RollbackOf+"/"+r.Step] = r.Status
			}
		case RecCommit:
			st.Committed = rec.Step
		case RecRollbackBegin:
			r := rec
			st.RollbackBegin = &r
		case RecRunEnd:
			r := rec
			st.End = &r
		}
	}
	if st.RunID == "" {
		return nil, fmt.Errorf("%s: no run.start record", path)
	}
	for k, r := range open {
		if !r.Mutates {
			continue
		}
		st.Unended = append(st.Unended, r.Step)
		st.InDoubt, st.InDoubtPID, st.InDoubtOutputs = r, pids[k], announced[k]
	}
	return st, nil
}

// ResumeError is why a run cannot be resumed; Code is the exit code.
type ResumeError struct {
	Code int
	Msg  string
}

func (e *ResumeError) Error() string { return e.Msg }

// CanResume says whether the run st describes can be resumed with prog (the
// plan file it ran, loaded again). It refuses a plan whose sha256 changed, a
// journal whose chain is broken, a dry run, a run that ended, and a run
// whose in-doubt child still runs on this host. A runner that still lives
// holds the plan's lease: Resume finds that out.
func CanResume(st *RunState, prog *Program, retryInDoubt bool) error {
	if !st.Verified.OK {
		return &ResumeError{ExitUsage, fmt.Sprintf("the journal does not verify (%s): resume trusts it to say what ran, so it refuses", strings.Join(st.Verified.Problems, "; "))}
	}
	if len(st.Unended) > 1 {
		return &ResumeError{ExitUsage, fmt.Sprintf("the journal shows %d steps in doubt at once (%s): a runner starts one at a time, so it refuses", len(st.Unended), strings.Join(st.Unended, ", "))}
	}
	if st.DryRun {
		return &ResumeError{ExitUsage, "run " + st.RunID + " was a dry run: it changed nothing, there is nothing to resume; run the plan again"}
	}
	if st.End != nil && st.End.Status != StatusAborted && st.End.Status != StatusInDoubt && st.End.Status != StatusCouldNotStart {
		return &ResumeError{ExitUsage, fmt.Sprintf("run %s ended %s: there is nothing to resume", st.RunID, st.End.Status)}
	}
	if st.End != nil && st.End.Status == StatusCouldNotStart && len(st.Steps) == 0 && st.InDoubt == nil && st.RollbackBegin == nil {
		return &ResumeError{ExitUsage, fmt.Sprintf("run %s could not start (%s): no step ran, there is nothing to resume", st.RunID, st.End.Message)}
	}
	if prog.Plan.SHA256 != st.Plan.SHA256 {
		return &ResumeError{ExitUsage, fmt.Sprintf("plan file %s changed since run %s started (sha256 %s, journal says %s): resume runs the plan the journal describes or nothing; restore that version of the file",
			prog.Plan.File, st.RunID, short(prog.Plan.SHA256), short(st.Plan.SHA256))}
	}
	host, _ := os.Hostname()
	if st.InDoubt != nil && st.InDoubtPID > 0 && st.Host == host && proc.GroupAlive(st.InDoubtPID) {
		return &ResumeError{ExitCannotStart, fmt.Sprintf("step %s is in doubt and its process group %d is still running: wait for it to end or stop it (kill -TERM -- -%d), then resume", st.InDoubt.Step, st.InDoubtPID, st.InDoubtPID)}
	}
	if retryInDoubt && st.InDoubt != nil && st.InDoubt.Phase == "main" {
		s := prog.step(st.InDoubt.Step)
		if s == nil || !s.Decl.Idempotent {
			return &ResumeError{ExitUsage, fmt.Sprintf("step %s is in doubt and not declared `idempotent: true`, so it is not retried; resume without --retry-in-doubt rolls it back", st.InDoubt.Step)}
		}
	}
	return nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// step returns the main step with this label (main steps are labelled by
// their id).
func (p *Program) step(label string) *Step { return p.byID[label] }

// PlanPath is where the plan file of a run is: as journaled, relative to
// the runner's working directory.
func (st *RunState) PlanPath() string {
	if filepath.IsAbs(st.Plan.File) || st.Cwd == "" {
		return st.Plan.File
	}
	return filepath.Join(st.Cwd, st.Plan.File)
}

// ParamStrings returns the journaled params as the strings BindParams takes.
func (st *RunState) ParamStrings() map[string]string {
	out := map[string]string{}
	for k, v := range st.Params {
		switch x := v.(type) {
		case string:
			out[k] = x
		default:
			out[k] = fmt.Sprint(x)
		}
	}
	return out
}

// Resume continues a run whose runner died (or was aborted), appending to
// its journal. By default it rolls back: the in-doubt step's rollback
// first, then the completed steps after the last commit point, newest
// first; a rollback the crash interrupted continues where it stopped,
// re-running the rollback step that was in doubt. With retryInDoubt, an
// in-doubt step declared idempotent runs again and the plan goes on from
// there. opts.Params are the run's params, bound again; st comes from
// ReadRun and must pass CanResume.
func Resume(ctx context.Context, prog *Program, st *RunState, opts Options, retryInDoubt bool) *Result {
	res := &Result{RunID: st.RunID, Journal: st.Path}
	if err := CanResume(st, prog, retryInDoubt); err != nil {
		var re *ResumeError
		errors.As(err, &re)
		res.Status, res.ExitCode, res.Err = StatusCouldNotStart, re.Code, err
		return res
	}
	// The lease lives beside the journal being resumed.
	opts.JournalDir = filepath.Dir(st.Path)
	r := newRunner(prog, opts, st.RunID, st.Started)
	l, err := r.acquireLease()
	if err != nil {
		return notLocked(res, err)
	}
	if l != nil {
		defer l.Release()
	}
	w, torn, err := journal.Open(st.Path, r.mask.Bytes)
	if err != nil {
		return noJournal(res, err)
	}
	defer w.Close()
	r.setJournal(w)

	mode := "rollback"
	if retryInDoubt {
		mode = "retry-in-doubt"
	}
	rec := &Record{Type: RecResume, RunID: st.RunID, Mode: mode, Operator: r.opts.Operator, Host: r.opts.Host, PID: os.Getpid(),
		Engine: opts.Version, Argv: maskStrings(r.mask, opts.Argv)}
	if torn != nil {
		rec.TornBytes = torn.Bytes
	}
	if st.InDoubt != nil {
		rec.InDoubt = st.InDoubt.Step
	}
	rec.Message = resumeMessage(st, mode)
	r.emit(rec, true)
	if r.journalErr != nil {
		return noJournal(res, r.journalErr)
	}
	var inDoubt *Step // the main step in doubt
	noEffect := false // it had not reached its effect
	if d := st.InDoubt; d != nil {
		if d.Phase == "main" {
			inDoubt = prog.step(d.Step)
			noEffect = inDoubt != nil && inDoubt.Type.AnnouncesEffect && st.InDoubtOutputs == nil
		}
		// Every start gets an end: the crashed runner's attempt is closed
		// as in doubt before anything else happens.
		end := &Record{Type: RecStepEnd, Step: d.Step, StepType: d.StepType, Phase: d.Phase, RollbackOf: d.RollbackOf, Mutates: d.Mutates,
			Attempt: d.Attempt, Status: StepInDoubt, Error: "the runner stopped while this step ran: its effect is unknown"}
		if noEffect {
			end.Error = "the runner stopped before this step announced its effect, so it changed nothing: its rollback is not run"
		}
		r.emit(end, true)
	}
	r.prepare(ctx)
	defer r.targets.Close()
	if err := r.lockTargets(ctx, l); err != nil {
		return r.cannotStart(res, err)
	}

	// What the journal says ran.
	var done []*Step
	committed := -1
	from := len(prog.Steps)
	var failed *Step
	var failErr error
	for _, s := range prog.Steps {
		end := st.Steps[s.Label()]
		if s.Decl.ID != "" {
			r.setStatus(s, StepNotRun)
		}
		if end == nil {
			if from == len(prog.Steps) {
				from = s.Index
			}
			continue
		}
		r.setStatus(s, end.Status)
		if end.Status == StepSucceeded {
			r.setOutputs(s, restoreOutputs(s, end.Outputs))
			done = append(done, s)
		}
		if end.Status == StepFailed && failed == nil {
			failed, failErr = s, fmt.Errorf("step %s failed: %s", s.Label(), end.Error)
		}
		if s.Label() == st.Committed || s.Decl.Commit && end.Status == StepSucceeded {
			// A commit step that ended well is a commit point passed, even
			// if the runner died before journaling the commit record.
			committed = s.Index
		}
	}
	if inDoubt != nil {
		r.setStatus(inDoubt, StepInDoubt)
		if st.InDoubtOutputs != nil {
			r.setOutputs(inDoubt, restoreOutputs(inDoubt, st.InDoubtOutputs))
		}
	}

	var status string
	var summary error
	switch {
	case st.RollbackBegin != nil:
		// The rollback had begun: it goes on in the order it was planned,
		// skipping the rollback steps that already succeeded.
		var plan []*Step
		for _, l := range st.RollbackBegin.Pending {
			if s := prog.step(l); s != nil {
				plan = append(plan, s)
			}
		}
		var f *Step
		if st.RollbackBegin.Step != "" {
			f = prog.step(st.RollbackBegin.Step)
		}
		status, summary = r.saga(f, fmt.Errorf("resumed an interrupted rollback: %s", st.RollbackBegin.Error), plan, done, committed,
			func(rb *Step, of string) bool { return st.Rollbacks[of+"/"+rb.Label()] == StepSucceeded })
	case failed == nil && inDoubt == nil && from == len(prog.Steps):
		// Every step had ended well: only the end of the run was lost.
		status = StatusSucceeded
	case failed == nil && retryInDoubt:
		status, summary = r.main(ctx, from, done, committed)
	default:
		f, e := failed, failErr
		if f == nil {
			f = inDoubt
			if f != nil {
				e = fmt.Errorf("step %s was in doubt after the runner stopped; resumed to roll back", f.Label())
			} else {
				e = errors.New("the runner stopped between steps; resumed to roll back")
			}
			if f != nil && (f.Index <= committed || noEffect) {
				f = nil
			}
		}
		status, summary = r.saga(f, e, sagaPlan(f, done, committed, r.status), done, committed, nil)
	}
	return r.finish(status, summary, res)
}

// resumeMessage says, for the journal and the operator, what resume does.
func resumeMessage(st *RunState, mode string) string {
	var b strings.Builder
	if st.End != nil {
		fmt.Fprintf(&b, "run ended %s; ", st.End.Status)
	} else {
		b.WriteString("the runner stopped without ending the run; ")
	}
	if st.InDoubt != nil {
		fmt.Fprintf(&b, "step %s (%s) was in doubt; ", st.InDoubt.Step, st.InDoubt.Phase)
	}
	switch {
	case st.RollbackBegin != nil:
		b.WriteString("continuing the rollback that had begun")
	case mode == "retry-in-doubt":
		b.WriteString("retrying and going on")
	default:
		b.WriteString("rolling back")
	}
	return b.String()
}

// restoreOutputs turns journaled outputs back into the values a step's
// declared output types say, so that expressions read them as they would
// have in the run.
func restoreOutputs(s *Step, m map[string]any) steps.Outputs {
	out := steps.Outputs{}
	for _, o := range s.Type.Outputs {
		v, ok := m[o.Name]
		if !ok {
			continue
		}
		if x, ok := convertOutput(o.Kind, v); ok {
			out[o.Name] = x
		}
	}
	return out
}

func convertOutput(k schema.Kind, v any) (any, bool) {
	switch k {
	case schema.String:
		s, ok := v.(string)
		return s, ok
	case schema.Bool:
		b, ok := v.(bool)
		return b, ok
	case schema.Int:
		if n, ok := v.(json.Number); ok {
			i, err := n.Int64()
			return i, err == nil
		}
	case schema.Double:
		if n, ok := v.(json.Number); ok {
			f, err := n.Float64()
			return f, err == nil
		}
	case schema.Duration:
		if s, ok := v.(string); ok {
			d, err := time.ParseDuration(s)
			return d, err == nil
		}
	case schema.Timestamp:
		if s, ok := v.(string); ok {
			t, err := time.Parse(time.RFC3339Nano, s)
			return t, err == nil
		}
	case schema.StringList:
		l, ok := v.([]any)
		if !ok {
			return nil, false
		}
		out := make([]string, 0, len(l))
		for _, e := range l {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	case schema.IntList:
		l, ok := v.([]any)
		if !ok {
			return nil, false
		}
		out := make([]int64, 0, len(l))
		for _, e := range l {
			n, ok := e.(json.Number)
			if !ok {
				return nil, false
			}
			i, err := n.Int64()
			if err != nil {
				return nil, false
			}
			out = append(out, i)
		}
		return out, true
	case schema.StringMap:
		mm, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		out := map[string]string{}
		for k, e := range mm {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out[k] = s
		}
		return out, true
	case schema.Rows:
		l, ok := v.([]any)
		if !ok {
			return nil, false
		}
		out := make([]map[string]any, 0, len(l))
		for _, e := range l {
			row, ok := e.(map[string]any)
			if !ok {
				return nil, false
			}
			out = append(out, plainJSON(row).(map[string]any))
		}
		return out, true
	case schema.Dyn:
		return plainJSON(v), true
	}
	return nil, false
}

// plainJSON replaces the json.Numbers in a decoded value with int64 or
// float64.
func plainJSON(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = plainJSON(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = plainJSON(e)
		}
		return out
	}
	return v
}
