package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/pgcutover/cutover/engine"
	"github.com/pgcutover/cutover/engine/journal"
)

func (s stdio) journal(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(s.err, "Usage: cutover journal list | show RUN | verify [RUN | --all] | report RUN [--format json|junit]\n")
		return engine.ExitUsage
	}
	fs := newFlags("journal")
	dir := fs.String("journal-dir", journal.DefaultDir(), "where run journals are")
	all := fs.Bool("all", false, "verify every run in the journal directory")
	format := fs.String("format", reportJSON, "report: json or junit")
	outFile := fs.String("output", "", "report: write to FILE instead of stdout")
	sub := args[0]
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return s.usageError("journal "+sub, fs, err)
	}
	switch sub {
	case "list":
		return s.journalList(*dir)
	case "show":
		if len(pos) != 1 {
			return s.usageError("journal show RUN", fs, errors.New("name one run (id, id prefix or file)"))
		}
		return s.journalShow(*dir, pos[0])
	case "report":
		if len(pos) != 1 {
			return s.usageError("journal report RUN [--format json|junit] [--output FILE]", fs, errors.New("name one run (id, id prefix or file)"))
		}
		return s.journalReport(*dir, pos[0], *format, *outFile)
	case "verify":
		if *all {
			ids, err := journal.List(*dir)
			if err != nil {
				fmt.Fprintf(s.err, "cutover journal verify: %v\n", err)
				return 1
			}
			pos = ids
		}
		if len(pos) == 0 {
			if *all {
				fmt.Fprintf(s.err, "no runs in %s\n", *dir)
				return 0
			}
			return s.usageError("journal verify [RUN | --all]", fs, errors.New("name a run or pass --all"))
		}
		code := 0
		for _, arg := range pos {
			if c := s.journalVerify(*dir, arg); c != 0 {
				code = c
			}
		}
		return code
	}
	fmt.Fprintf(s.err, "cutover journal: unknown subcommand %q (list, show, verify, report)\n", sub)
	return engine.ExitUsage
}

func (s stdio) journalVerify(dir, arg string) int {
	path, err := journal.Resolve(dir, arg)
	if err != nil {
		fmt.Fprintf(s.err, "cutover journal verify: %v\n", err)
		return 1
	}
	rep, err := journal.Verify(path)
	if err != nil {
		fmt.Fprintf(s.err, "cutover journal verify: %v\n", err)
		return 1
	}
	torn := ""
	if rep.Torn != nil {
		torn = fmt.Sprintf("; torn last line %d (%d bytes) ignored: the writer stopped mid-record", rep.Torn.Line, rep.Torn.Bytes)
	}
	if rep.OK {
		fmt.Fprintf(s.out, "%s: ok, %d records, hash chain intact, head %s%s\n", path, rep.Records, short(rep.Head), torn)
		return 0
	}
	fmt.Fprintf(s.out, "%s: TAMPERED or corrupt (%d records%s)\n", path, rep.Records, torn)
	for _, p := range rep.Problems {
		fmt.Fprintf(s.out, "  %s\n", p)
	}
	return 1
}

// summary is what list and show read from a journal.
type summary struct {
	id, plan, status string
	version          int
	dryRun           bool
	start, end       time.Time
	exit             *int
}

func decode(rec journal.Record) (engine.Record, error) {
	var r engine.Record
	err := json.Unmarshal(rec.Raw, &r)
	return r, err
}

func (s stdio) journalList(dir string) int {
	ids, err := journal.List(dir)
	if err != nil {
		fmt.Fprintf(s.err, "cutover journal list: %v\n", err)
		return 1
	}
	if len(ids) == 0 {
		fmt.Fprintf(s.err, "no runs in %s\n", dir)
		return 0
	}
	fmt.Fprintf(s.out, "%-28s %-32s %-20s %-9s %-20s %s\n", "RUN", "PLAN", "STARTED", "DURATION", "STATUS", "DRY RUN")
	for _, id := range ids {
		path, _ := journal.Resolve(dir, id)
		recs, _, err := journal.Read(path)
		if err != nil {
			fmt.Fprintf(s.out, "%-28s unreadable: %v\n", id, err)
			continue
		}
		sm := summarise(recs)
		dur := "-"
		if !sm.end.IsZero() {
			dur = sm.end.Sub(sm.start).Round(time.Millisecond).String()
		}
		status := sm.status
		if status == "" {
			status = "no end (in doubt?)"
		}
		fmt.Fprintf(s.out, "%-28s %-32s %-20s %-9s %-20s %v\n", id, fmt.Sprintf("%s@%d", sm.plan, sm.version), sm.start.Local().Format("2006-01-02 15:04:05"), dur, status, sm.dryRun)
	}
	return 0
}

func summarise(recs []journal.Record) summary {
	var sm summary
	for _, rec := range recs {
		r, err := decode(rec)
		if err != nil {
			continue
		}
		t, _ := time.Parse(time.RFC3339Nano, r.Time)
		switch r.Type {
		case engine.RecRunStart:
			sm.id, sm.dryRun, sm.start = r.RunID, r.DryRun != nil && *r.DryRun, t
			if r.Plan != nil {
				sm.plan, sm.version = r.Plan.Name, r.Plan.Version
			}
		case engine.RecRunEnd:
			sm.status, sm.end, sm.exit = r.Status, t, r.ExitCode
		}
	}
	return sm
}

func (s stdio) journalShow(dir, arg string) int {
	path, err := journal.Resolve(dir, arg)
	if err != nil {
		fmt.Fprintf(s.err, "cutover journal show: %v\n", err)
		return 1
	}
	recs, torn, err := journal.Read(path)
	if err != nil {
		fmt.Fprintf(s.err, "cutover journal show: %v\n", err)
		return 1
	}
	var start time.Time
	ended := false
	open := map[string]engine.Record{}
	for _, rec := range recs {
		r, err := decode(rec)
		if err != nil {
			fmt.Fprintf(s.out, "line %d: %v\n", rec.Line, err)
			continue
		}
		t, _ := time.Parse(time.RFC3339Nano, r.Time)
		if start.IsZero() {
			start = t
		}
		at := fmt.Sprintf("+%8.3fs", t.Sub(start).Seconds())
		switch r.Type {
		case engine.RecRunStart:
			fmt.Fprintf(s.out, "run %s  plan %s@%d  sha256 %s\n", r.RunID, r.Plan.Name, r.Plan.Version, short(r.Plan.SHA256))
			fmt.Fprintf(s.out, "started %s by %s on %s (pid %d), engine %s, dry run %v\n", t.Local().Format(time.RFC3339), r.Operator, r.Host, r.PID, r.Engine, r.DryRun != nil && *r.DryRun)
			if len(r.Params) > 0 {
				var ps []string
				for _, k := range sortedKeys(r.Params) {
					ps = append(ps, fmt.Sprintf("%s=%v", k, r.Params[k]))
				}
				fmt.Fprintf(s.out, "params: %s\n", strings.Join(ps, " "))
			}
		case engine.RecSecrets:
			for _, sc := range r.Secrets {
				state := "read"
				if !sc.OK {
					state = "NOT AVAILABLE: " + sc.Error
				}
				fmt.Fprintf(s.out, "%s  secret %s (%s %s) %s\n", at, sc.Name, sc.From, sc.Source, state)
			}
		case engine.RecStepStart:
			open[r.Phase+"/"+r.Step] = r
			if r.Mutates {
				fmt.Fprintf(s.out, "%s  start %s %s (%s) attempt %d, intent recorded\n", at, phaseLabel(r.Phase), r.Step, r.StepType, r.Attempt)
			}
		case engine.RecStepProcess:
			fmt.Fprintf(s.out, "%s  %s %s started process %d\n", at, phaseLabel(r.Phase), r.Step, r.PID)
		case engine.RecStepRetry:
			fmt.Fprintf(s.out, "%s  retry %s: attempt %d failed: %s (next in %s)\n", at, r.Step, r.Attempt, r.Error, r.RetryIn)
		case engine.RecStepEnd:
			delete(open, r.Phase+"/"+r.Step)
			mark := "   "
			if r.Status == engine.StepFailed {
				mark = " >>"
			}
			fmt.Fprintf(s.out, "%s%s%s %s (%s) %s", at, mark, phaseLabel(r.Phase), r.Step, r.StepType, strings.ToUpper(r.Status))
			if r.Attempt > 1 {
				fmt.Fprintf(s.out, " after %d attempts", r.Attempt)
			}
			if r.DurationMS > 0 {
				fmt.Fprintf(s.out, " in %s", formatMS(r.DurationMS))
			}
			fmt.Fprintln(s.out)
			if r.Guard != nil {
				fmt.Fprintf(s.out, "             when `%s` = %s\n", r.Guard.Expr, r.Guard.Result)
			}
			for _, a := range r.Asserts {
				fmt.Fprintf(s.out, "             assert `%s` = %s%s\n", a.Expr, a.Result, valuesSuffix(a.Values))
			}
			if r.Error != "" {
				fmt.Fprintf(s.out, "             error: %s\n", r.Error)
			}
		case engine.RecCommit:
			fmt.Fprintf(s.out, "%s  COMMIT %s: %s\n", at, r.Step, r.Message)
		case engine.RecRollbackBegin:
			fmt.Fprintf(s.out, "%s  ROLLBACK after %s: %s\n", at, orDash(r.Step), r.Message)
			if len(r.Pending) > 0 {
				fmt.Fprintf(s.out, "             undoing (in order): %s\n", strings.Join(r.Pending, ", "))
			}
			if len(r.Kept) > 0 {
				fmt.Fprintf(s.out, "             kept (before the commit point): %s\n", strings.Join(r.Kept, ", "))
			}
		case engine.RecRunEnd:
			ended = true
			code := 0
			if r.ExitCode != nil {
				code = *r.ExitCode
			}
			fmt.Fprintf(s.out, "%s  run ended %s (exit %d)", at, strings.ToUpper(r.Status), code)
			if r.Message != "" {
				fmt.Fprintf(s.out, ": %s", r.Message)
			}
			fmt.Fprintln(s.out)
			if len(r.NotRun) > 0 {
				fmt.Fprintf(s.out, "             never reached: %s\n", strings.Join(r.NotRun, ", "))
			}
		}
	}
	for _, r := range open {
		fmt.Fprintf(s.out, "IN DOUBT: %s %s (%s) started and never ended\n", phaseLabel(r.Phase), r.Step, r.StepType)
	}
	if !ended {
		fmt.Fprintln(s.out, "no run.end record: the run was killed or is still running")
	}
	if torn != nil {
		fmt.Fprintf(s.out, "torn last line %d (%d bytes): the writer stopped mid-record\n", torn.Line, torn.Bytes)
	}
	return 0
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func phaseLabel(p string) string {
	switch p {
	case "rollback":
		return "rollback"
	case "finally":
		return "finally"
	}
	return "step"
}

func valuesSuffix(v map[string]any) string {
	if len(v) == 0 {
		return ""
	}
	var parts []string
	for _, k := range sortedKeys(v) {
		parts = append(parts, k+"="+engine.FormatValue(v[k]))
	}
	return " with " + strings.Join(parts, ", ")
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func sortedKeys(m map[string]any) []string {
	return slices.Sorted(maps.Keys(m))
}
