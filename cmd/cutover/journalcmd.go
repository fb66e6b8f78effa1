package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/pgcutover/cutover/engine"
	"github.com/pgcutover/cutover/engine/journal"
)

// journalUsage is the synopsis of "cutover journal".
const journalUsage = "Usage: cutover journal list | show RUN | verify [RUN | --all] | diff RUN RUN [--output text|json] | report RUN [--format json|junit|html]\n"

func (s stdio) journal(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(s.err, journalUsage)
		return engine.ExitUsage
	}
	// Each subcommand has its own flags; --journal-dir is common to all.
	sub := args[0]
	fs := newFlags("journal")
	dir := fs.String("journal-dir", journal.DefaultDir(), "where run journals are")
	switch sub {
	case "list":
		pos, err := parseInterspersed(fs, args[1:])
		if err == nil && len(pos) > 0 {
			err = errors.New("list takes no arguments")
		}
		if err != nil {
			return s.usageError("journal list", fs, err)
		}
		return s.journalList(*dir)
	case "show":
		pos, err := parseInterspersed(fs, args[1:])
		if err == nil && len(pos) != 1 {
			err = errors.New("name one run (id, id prefix or file)")
		}
		if err != nil {
			return s.usageError("journal show RUN", fs, err)
		}
		return s.journalShow(*dir, pos[0])
	case "report":
		format := fs.String("format", reportJSON, "json, junit or html")
		outFile := fs.String("output", "", "write to FILE instead of stdout")
		pos, err := parseInterspersed(fs, args[1:])
		if err == nil && len(pos) != 1 {
			err = errors.New("name one run (id, id prefix or file)")
		}
		if err != nil {
			return s.usageError("journal report RUN [--format json|junit|html] [--output FILE]", fs, err)
		}
		return s.journalReport(*dir, pos[0], *format, *outFile)
	case "diff":
		output := fs.String("output", "text", "text or json")
		timings := fs.Bool("timings", false, "also compare outputs that are timings (names ending in _ms)")
		pos, err := parseInterspersed(fs, args[1:])
		if err == nil && len(pos) != 2 {
			err = fmt.Errorf("name two runs (id, id prefix or file), the older first; got %d", len(pos))
		}
		if err == nil && *output != "text" && *output != "json" {
			err = fmt.Errorf("--output is text or json, not %q", *output)
		}
		if err != nil {
			return s.usageError("journal diff RUN RUN [--output text|json]", fs, err)
		}
		return s.journalDiff(*dir, pos[0], pos[1], *output, *timings)
	case "verify":
		all := fs.Bool("all", false, "verify every run in the journal directory")
		pos, err := parseInterspersed(fs, args[1:])
		if err != nil {
			return s.usageError("journal verify [RUN | --all]", fs, err)
		}
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
	case "-h", "--help", "help":
		fmt.Fprint(s.out, journalUsage)
		return 0
	}
	fmt.Fprintf(s.err, "cutover journal: unknown subcommand %q (list, show, verify, diff, report)\n", sub)
	return engine.ExitUsage
}

func (s stdio) journalVerify(dir, arg string) int {
	path, err := journal.Resolve(dir, arg)
	if err != nil {
		fmt.Fprintf(s.err, "cutover journal verify: %v\n", err)
		return 1
	}
	rep, err := journal.VerifyKey(path, journalKey())
	if err != nil {
		fmt.Fprintf(s.err, "cutover journal verify: %v\n", err)
		return 1
	}
	torn := ""
	if rep.Torn != nil {
		torn = fmt.Sprintf("; torn last line %d (%d bytes) ignored: the writer stopped mid-record", rep.Torn.Line, rep.Torn.Bytes)
	}
	macs := ""
	switch {
	case rep.MACChecked:
		macs = ", every record's HMAC matches the key"
	case rep.MACs > 0:
		macs = fmt.Sprintf(", %d records carry an HMAC (not checked: set %s to check them)", rep.MACs, journalKeyEnv)
	}
	if rep.OK {
		fmt.Fprintf(s.out, "%s: ok, %d records, hash chain intact%s, head %s%s\n", path, rep.Records, macs, short(rep.Head), torn)
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
	resumed          int // resume records: the runner died and a resume went on
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
	fmt.Fprintf(s.out, "%-28s %-32s %-20s %-9s %-28s %s\n", "RUN", "PLAN", "STARTED", "DURATION", "STATUS", "DRY RUN")
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
		if sm.resumed > 0 {
			status += " (resumed)"
		}
		fmt.Fprintf(s.out, "%-28s %-32s %-20s %-9s %-28s %v\n", id, fmt.Sprintf("%s@%d", sm.plan, sm.version), sm.start.Local().Format("2006-01-02 15:04:05"), dur, status, sm.dryRun)
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
		case engine.RecResume:
			sm.resumed++
			sm.status, sm.end, sm.exit = "", time.Time{}, nil
		}
	}
	return sm
}

// painter colours text for a terminal, or leaves it plain.
type painter bool

// newPainter colours only a terminal, and never when NO_COLOR is set or
// TERM is dumb, like the run progress.
func newPainter(w io.Writer) painter {
	_, noColor := os.LookupEnv("NO_COLOR")
	return painter(isTerminal(w) && !noColor && os.Getenv("TERM") != "dumb")
}

func (p painter) paint(code, s string) string {
	if !p {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// statusColor is the colour of a step or run status.
func statusColor(status string) string {
	switch status {
	case engine.StepSucceeded, engine.StepDryRun:
		return green
	case engine.StepFailed, engine.StatusRolledBack, engine.StatusRollbackFailed, engine.StatusFailedAfterCommit, engine.StatusAborted, engine.StatusInDoubt:
		return red
	case engine.StepWouldRun:
		return cyan
	}
	return yellow
}

// showIndent indents the detail lines under a timeline entry.
const showIndent = "             "

// journalShow implements "cutover journal show RUN": the run as a timeline
// for a post-incident review. Every record is shown in order; records of a
// type this version does not know are shown as time, type and message.
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
	p := newPainter(s.out)
	var start time.Time
	var end *engine.Record
	var endAt time.Time
	var failed []engine.Record
	commit := ""
	rollbacks, rollbacksOK := 0, 0
	open := map[string]engine.Record{}
	var openOrder []string
	for _, rec := range recs {
		r, err := decode(rec)
		if err != nil {
			fmt.Fprintf(s.out, "line %d: %s record: %v\n", rec.Line, orDash(rec.Type), err)
			continue
		}
		t, _ := time.Parse(time.RFC3339Nano, r.Time)
		if start.IsZero() {
			start = t
		}
		at := fmt.Sprintf("+%8.3fs", t.Sub(start).Seconds())
		switch r.Type {
		case engine.RecRunStart:
			plan := engine.PlanInfo{Name: "?"}
			if r.Plan != nil {
				plan = *r.Plan
			}
			fmt.Fprintf(s.out, "run %s  plan %s@%d  sha256 %s\n", r.RunID, plan.Name, plan.Version, short(plan.SHA256))
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
					state = p.paint(yellow, "NOT AVAILABLE: "+sc.Error)
				}
				fmt.Fprintf(s.out, "%s  secret %s (%s %s) %s\n", at, sc.Name, sc.From, sc.Source, state)
			}
		case engine.RecStepStart:
			key := r.Phase + "/" + r.Step
			if _, ok := open[key]; !ok {
				openOrder = append(openOrder, key)
			}
			open[key] = r
			if r.Mutates {
				fmt.Fprintf(s.out, "%s  start %s %s (%s) attempt %d, intent recorded\n", at, phaseLabel(r.Phase), r.Step, r.StepType, r.Attempt)
			}
		case engine.RecStepProcess:
			fmt.Fprintf(s.out, "%s  %s %s started process %d\n", at, phaseLabel(r.Phase), r.Step, r.PID)
		case engine.RecStepRetry:
			fmt.Fprintf(s.out, "%s  %s %s: attempt %d failed: %s (next in %s)\n", at, p.paint(yellow, "retry"), r.Step, r.Attempt, r.Error, r.RetryIn)
		case engine.RecStepEnd:
			delete(open, r.Phase+"/"+r.Step)
			if r.Phase == "rollback" {
				rollbacks++
				if r.Status != engine.StepFailed {
					rollbacksOK++
				}
			}
			s.showStepEnd(p, at, r)
			if r.Status == engine.StepFailed {
				failed = append(failed, r)
			}
		case engine.RecCommit:
			commit = r.Step
			fmt.Fprintf(s.out, "%s  %s %s: %s\n", at, p.paint(bold, "COMMIT"), r.Step, r.Message)
		case engine.RecRollbackBegin:
			fmt.Fprintf(s.out, "%s  %s after %s: %s\n", at, p.paint(yellow, "ROLLBACK"), orDash(r.Step), r.Message)
			if len(r.Pending) > 0 {
				fmt.Fprintf(s.out, "%sundoing (in order): %s\n", showIndent, strings.Join(r.Pending, ", "))
			}
			if len(r.Kept) > 0 {
				fmt.Fprintf(s.out, "%skept (before the commit point): %s\n", showIndent, strings.Join(r.Kept, ", "))
			}
		case engine.RecRunEnd:
			end, endAt = &r, t
			fmt.Fprintf(s.out, "%s  run ended %s", at, p.paint(statusColor(r.Status), strings.ToUpper(r.Status)))
			if r.ExitCode != nil {
				fmt.Fprintf(s.out, " (exit %d)", *r.ExitCode)
			}
			if r.Message != "" {
				fmt.Fprintf(s.out, ": %s", r.Message)
			}
			fmt.Fprintln(s.out)
			if len(r.NotRun) > 0 {
				fmt.Fprintf(s.out, "%snever reached: %s\n", showIndent, strings.Join(r.NotRun, ", "))
			}
		case engine.RecStepAnnounce:
			fmt.Fprintf(s.out, "%s  %s %s announced before its effect%s\n", at, phaseLabel(r.Phase), r.Step, valuesSuffix(r.Outputs))
		case engine.RecLock:
			if r.Error != "" {
				fmt.Fprintf(s.out, "%s  %s %s\n", at, p.paint(red, "LOCK"), r.Error)
			} else {
				fmt.Fprintf(s.out, "%s  lock  %s\n", at, r.Message)
			}
		case engine.RecResume:
			fmt.Fprintf(s.out, "%s  %s by %s on %s (pid %d, %s): %s\n", at, p.paint(bold, "RESUMED"), orDash(r.Operator), orDash(r.Host), r.PID, r.Mode, r.Message)
			if r.TornBytes > 0 {
				fmt.Fprintf(s.out, "%sa torn last line of %d bytes was cut off first\n", showIndent, r.TornBytes)
			}
		default:
			// A record type this version does not know: time, type, message.
			fmt.Fprintf(s.out, "%s  %s  %s\n", at, orDash(rec.Type), genericText(rec))
		}
	}
	for _, key := range openOrder {
		if r, ok := open[key]; ok {
			fmt.Fprintf(s.out, "%s: %s %s (%s) started and never ended\n", p.paint(red, "IN DOUBT"), phaseLabel(r.Phase), r.Step, r.StepType)
		}
	}
	if end == nil {
		fmt.Fprintln(s.out, "no run.end record: the run was killed or is still running")
	}
	if torn != nil {
		fmt.Fprintf(s.out, "torn last line %d (%d bytes): the writer stopped mid-record\n", torn.Line, torn.Bytes)
	}
	if end != nil {
		s.showOutcome(p, end, endAt.Sub(start), failed, commit, rollbacks, rollbacksOK)
	}
	return 0
}

// showStepEnd prints one step.end: status, attempts and duration on the
// first line, then the guard, asserts, error and (for a failed step) its
// outputs. A failed step is marked ">>".
func (s stdio) showStepEnd(p painter, at string, r engine.Record) {
	mark := "   "
	if r.Status == engine.StepFailed {
		mark = p.paint(red, " >>")
	}
	fmt.Fprintf(s.out, "%s%s%s %s (%s) %s", at, mark, phaseLabel(r.Phase), r.Step, r.StepType, p.paint(statusColor(r.Status), strings.ToUpper(r.Status)))
	var extra []string
	if r.DurationMS > 0 {
		extra = append(extra, "in "+formatMS(r.DurationMS))
	}
	if r.Attempt > 0 {
		extra = append(extra, plural(r.Attempt, "attempt"))
	}
	if r.RollbackOf != "" {
		extra = append(extra, "rollback of "+r.RollbackOf)
	}
	if len(extra) > 0 {
		fmt.Fprintf(s.out, " %s", strings.Join(extra, ", "))
	}
	fmt.Fprintln(s.out)
	if g := r.Guard; g != nil {
		fmt.Fprintf(s.out, "%swhen `%s` = %s%s\n", showIndent, g.Expr, g.Result, checkError(g))
	}
	for _, a := range r.Asserts {
		fmt.Fprintf(s.out, "%sassert `%s` = %s%s%s\n", showIndent, a.Expr, a.Result, valuesSuffix(a.Values), checkError(&a))
	}
	if r.Error != "" {
		fmt.Fprintf(s.out, "%serror: %s\n", showIndent, p.paint(red, r.Error))
	}
	if r.Status == engine.StepFailed && len(r.Outputs) > 0 {
		var parts []string
		for _, k := range sortedKeys(r.Outputs) {
			parts = append(parts, k+"="+clip(renderValue(r.Outputs[k]), 200))
		}
		fmt.Fprintf(s.out, "%soutputs: %s\n", showIndent, strings.Join(parts, ", "))
	}
}

// checkError renders a guard's or an assert's evaluation error.
func checkError(c *engine.Check) string {
	if c.Error == "" {
		return ""
	}
	return ": " + c.Error
}

// showOutcome ends journal show with what a reviewer looks for first: the
// run's status, the failed steps, how the rollback went.
func (s stdio) showOutcome(p painter, end *engine.Record, took time.Duration, failed []engine.Record, commit string, rollbacks, rollbacksOK int) {
	exit := ""
	if end.ExitCode != nil {
		exit = fmt.Sprintf(" (exit %d)", *end.ExitCode)
	}
	fmt.Fprintf(s.out, "outcome: %s%s after %s\n", p.paint(statusColor(end.Status), strings.ToUpper(end.Status)), exit, took.Round(time.Millisecond))
	for _, r := range failed {
		line := fmt.Sprintf("FAILED: %s %s (%s)", phaseLabel(r.Phase), r.Step, r.StepType)
		if r.Error != "" {
			line += ": " + r.Error
		}
		fmt.Fprintf(s.out, "  %s %s\n", p.paint(red, ">>"), p.paint(red, line))
	}
	if commit != "" {
		fmt.Fprintf(s.out, "  commit point %s passed: nothing up to it is undone\n", commit)
	}
	if rollbacks > 0 {
		fmt.Fprintf(s.out, "  rollback: %d of %s succeeded\n", rollbacksOK, plural(rollbacks, "rollback step"))
	}
	if len(end.NotRun) > 0 {
		fmt.Fprintf(s.out, "  never reached: %s\n", strings.Join(end.NotRun, ", "))
	}
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
