package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/pgcutover/cutover/engine/lease"
	"github.com/pgcutover/cutover/schema"
	"github.com/pgcutover/cutover/steps"
)

// LockTargets lists, sorted, the targets that the plan's mutating steps
// (rollback and finally steps included) name: a real run holds a
// PostgreSQL advisory lock on each, so that two runs never change one
// database at once. A run-command that changes a database it reaches by
// other means (a DATABASE_URL in its env) is not seen here; the journal
// directory's lease still keeps two runs of the same plan apart.
func (p *Program) LockTargets() []string {
	set := map[string]bool{}
	var visit func(ss []*Step)
	visit = func(ss []*Step) {
		for _, s := range ss {
			if s.Mutates {
				for _, t := range s.targets() {
					set[t] = true
				}
			}
			visit(s.Rollback)
		}
	}
	visit(p.Steps)
	visit(p.Finally)
	out := make([]string, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// acquireLease takes the journal directory's lease for the plan. Dry runs
// take none: they change nothing, and a scheduled dry run must never keep
// the real run from starting.
func (r *runner) acquireLease() (*lease.Lease, error) {
	if r.opts.DryRun || r.opts.NoLock {
		return nil, nil
	}
	p := r.prog.Plan
	l, err := lease.Acquire(r.opts.JournalDir, p.Name, lease.Holder{
		RunID: r.runID, Operator: r.opts.Operator, Host: r.opts.Host,
		Plan: fmt.Sprintf("%s@%d", p.Name, p.Version),
	}, r.opts.Lease)
	var held *lease.HeldError
	if err != nil && !errors.As(err, &held) {
		err = fmt.Errorf("cannot write the journal directory: %w", err)
	}
	return l, err
}

// lockHolder is the application_name the run's locking sessions carry.
func (r *runner) lockHolder() string { return "cutover run " + r.runID }

// lockTargets takes the lease's journal record and, for a real run, the
// advisory lock of every target a mutating step names. A lock another run
// holds means the run cannot start. A target that cannot be reached yet
// (its credentials are made by an earlier step, as in a rotation) is locked
// before the first mutating step that names it instead.
func (r *runner) lockTargets(ctx context.Context, l *lease.Lease) error {
	r.lease = l
	if l != nil && l.TookOver != nil {
		r.emit(&Record{Type: RecLock, Message: l.TookOver.String()}, false)
	}
	if r.opts.DryRun || r.opts.NoLock {
		return nil
	}
	r.locked = map[string]bool{}
	var held, later []string
	for _, name := range r.prog.LockTargets() {
		err := r.lockOne(ctx, name)
		var lh *steps.LockHeldError
		switch {
		case errors.As(err, &lh):
			err = fmt.Errorf("cannot lock target %s: %w", name, err)
			r.emit(&Record{Type: RecLock, Error: r.mask.String(err.Error())}, true)
			return err
		case err != nil:
			later = append(later, name)
		default:
			held = append(held, name)
		}
	}
	msg := "lease " + r.prog.Plan.Name + " held"
	if len(held) > 0 {
		msg += "; advisory lock held on " + strings.Join(held, ", ")
	}
	if len(later) > 0 {
		msg += "; not reachable yet, locked before the first mutating step that names it: " + strings.Join(later, ", ")
	}
	r.emit(&Record{Type: RecLock, Message: msg}, false)
	return nil
}

// lockOne locks a target's database for this run (Targets.Lock knows when
// two targets of the plan are one database).
func (r *runner) lockOne(ctx context.Context, name string) error {
	if r.locked[name] {
		return nil
	}
	err := r.targets.Lock(ctx, name, r.lockHolder())
	if err == nil {
		r.locked[name] = true
	}
	return err
}

// lockFor locks, before a mutating step of a real run, the targets it
// names that are not locked yet.
func (r *runner) lockFor(ctx context.Context, s *Step) error {
	if r.locked == nil || !s.Mutates {
		return nil
	}
	if r.lease.Lost() {
		// Another host judged this run dead and took the plan over: no
		// more changes from here.
		return steps.Permanent(fmt.Errorf("not started: %w", r.lease.Err()))
	}
	for _, t := range s.targets() {
		if err := r.lockOne(ctx, t); err != nil {
			return steps.Permanent(fmt.Errorf("cannot lock target %s: %w", t, err))
		}
	}
	return nil
}

// targets lists the targets a step's inputs name (target references are
// always literal).
func (s *Step) targets() []string {
	var out []string
	for _, f := range s.Type.Inputs {
		if v := s.Decl.With[f.Name]; f.Ref == schema.RefTarget && v != nil && v.Tmpl != nil {
			out = append(out, v.Tmpl.Raw)
		}
	}
	return out
}

// cannotStart ends a run that could not take its locks: nothing ran.
func (r *runner) cannotStart(res *Result, err error) *Result {
	code := ExitCannotStart
	r.emit(&Record{Type: RecRunEnd, Status: StatusCouldNotStart, ExitCode: &code, Message: r.mask.String(err.Error())}, true)
	res.Status, res.ExitCode, res.Err, res.Head = StatusCouldNotStart, code, fmt.Errorf("%s; nothing ran", r.mask.String(err.Error())), r.journal.Head()
	return res
}
