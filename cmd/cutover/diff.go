package main

import (
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgcutover/cutover/engine"
	"github.com/pgcutover/cutover/engine/journal"
)

// "cutover journal diff A B" compares two runs of a plan, typically two
// scheduled dry runs: the plan, the params, the run status, and per step
// (matched by phase and label) the status, the error and the outputs.
//
// Exit codes, as diff(1): 0 the runs are equivalent (and both hash chains
// are intact), 1 differences were found or a chain is broken, 2 a usage
// error or a run that cannot be found or read.

// Kinds of step change in a diff.
const (
	changeNewFailure = "new-failure" // failed in B, not in A
	changeFixed      = "fixed"       // failed in A, ran without failing in B
	changeStatus     = "status"      // another status change
	changeChanged    = "changed"     // same status; error or outputs differ
	changeOnlyInA    = "only-in-a"
	changeOnlyInB    = "only-in-b"
)

// runDiff is the result of comparing run A with run B.
type runDiff struct {
	A diffRun `json:"a"`
	B diffRun `json:"b"`
	// SamePlan is false when the runs are of plans with different names.
	SamePlan bool `json:"same_plan"`
	// PlanChanges describe a different version or file hash.
	PlanChanges []string      `json:"plan_changes"`
	Params      []valueChange `json:"params"`
	// Status is the run status change (exit codes are in A and B), or nil.
	Status      *textChange `json:"status"`
	Steps       []stepDiff  `json:"steps"`
	NewFailures []string    `json:"new_failures"`
	Fixed       []string    `json:"fixed"`
	OnlyInA     []string    `json:"only_in_a"`
	OnlyInB     []string    `json:"only_in_b"`
	// Equivalent reports no differences and two intact hash chains.
	Equivalent bool `json:"equivalent"`
}

// diffRun identifies one side of a diff.
type diffRun struct {
	RunID         string     `json:"run_id"`
	Journal       string     `json:"journal"`
	Plan          reportPlan `json:"plan"`
	Status        string     `json:"status"`
	ExitCode      *int       `json:"exit_code"`
	DryRun        bool       `json:"dry_run"`
	Started       string     `json:"started"`
	ChainOK       bool       `json:"chain_ok"`
	ChainProblems []string   `json:"chain_problems,omitempty"`
	Head          string     `json:"head"`
}

// textChange is a value that differs between A and B.
type textChange struct {
	A string `json:"a"`
	B string `json:"b"`
}

// valueChange is a named value that differs: a param or a step output.
// A missing value is null. Delta is B − A when both are numbers.
type valueChange struct {
	Name  string   `json:"name"`
	A     any      `json:"a"`
	B     any      `json:"b"`
	Delta *float64 `json:"delta,omitempty"`
}

// stepDiff is one step that differs. StatusA or StatusB is "" when the
// step is not in that run at all.
type stepDiff struct {
	Step       string        `json:"step"`
	Phase      string        `json:"phase"`
	RollbackOf string        `json:"rollback_of,omitempty"`
	StatusA    string        `json:"status_a"`
	StatusB    string        `json:"status_b"`
	Change     string        `json:"change"`
	Error      *textChange   `json:"error,omitempty"`
	Outputs    []valueChange `json:"outputs,omitempty"`
}

// diffEntry is one step of a run as a diff sees it.
type diffEntry struct {
	key  string
	step reportStep
}

// diffEntries lists a run's steps in order: main steps, those never
// reached, rollback steps, finally steps.
func diffEntries(rep runReport) []diffEntry {
	var main, fin, rb []diffEntry
	add := func(list *[]diffEntry, st reportStep) {
		*list = append(*list, diffEntry{key: st.Phase + "/" + st.Step, step: st})
	}
	for _, st := range rep.Steps {
		if st.Phase == "finally" {
			add(&fin, st)
		} else {
			add(&main, st)
		}
	}
	for _, name := range rep.NotRun {
		add(&main, reportStep{Step: name, Phase: "main", Status: engine.StepNotRun})
	}
	for _, st := range rep.Rollback {
		add(&rb, st)
	}
	out := append(append(main, rb...), fin...)
	// A step that ended twice (a resumed run, say) counts as its last end.
	seen := map[string]int{}
	var uniq []diffEntry
	for _, e := range out {
		if i, ok := seen[e.key]; ok {
			uniq[i] = e
			continue
		}
		seen[e.key] = len(uniq)
		uniq = append(uniq, e)
	}
	return uniq
}

// mergeOrder is B's step keys in order, with A's steps that B lacks
// inserted after the step that precedes them in A.
func mergeOrder(a, b []diffEntry) []string {
	var order []string
	in := map[string]bool{}
	for _, e := range b {
		order = append(order, e.key)
		in[e.key] = true
	}
	prev := ""
	for _, e := range a {
		if !in[e.key] {
			i := 0
			if prev != "" {
				i = slices.Index(order, prev) + 1
			}
			order = slices.Insert(order, i, e.key)
			in[e.key] = true
		}
		prev = e.key
	}
	return order
}

// isTiming reports whether an output is a timing, which changes on every
// run and is left out of a diff unless asked for.
func isTiming(name string) bool {
	return strings.HasSuffix(name, "_ms")
}

// compareValues lists the names whose values differ between a and b, in
// name order, with the numeric delta where both are numbers.
func compareValues(a, b map[string]any, skip func(string) bool) []valueChange {
	names := map[string]any{}
	for k := range a {
		names[k] = nil
	}
	for k := range b {
		names[k] = nil
	}
	var out []valueChange
	for _, k := range sortedKeys(names) {
		if skip != nil && skip(k) {
			continue
		}
		va, okA := a[k]
		vb, okB := b[k]
		if okA && okB && reflect.DeepEqual(va, vb) {
			continue
		}
		c := valueChange{Name: k, A: va, B: vb}
		fa, isNumA := va.(float64)
		fb, isNumB := vb.(float64)
		if isNumA && isNumB {
			d := fb - fa
			c.Delta = &d
		}
		out = append(out, c)
	}
	return out
}

// sideOf identifies a run in a diff.
func sideOf(rep runReport) diffRun {
	return diffRun{
		RunID: rep.RunID, Journal: rep.Journal, Plan: rep.Plan, Status: rep.Status, ExitCode: rep.ExitCode,
		DryRun: rep.DryRun, Started: rep.Started, ChainOK: rep.ChainOK, ChainProblems: rep.ChainProblems, Head: rep.Head,
	}
}

// diffRuns compares run a with run b. Outputs whose names end in _ms
// (timings) are compared only with timings set.
func diffRuns(a, b runReport, timings bool) runDiff {
	d := runDiff{
		A: sideOf(a), B: sideOf(b),
		SamePlan:    a.Plan.Name == b.Plan.Name,
		PlanChanges: []string{}, Params: []valueChange{}, Steps: []stepDiff{},
		NewFailures: []string{}, Fixed: []string{}, OnlyInA: []string{}, OnlyInB: []string{},
	}
	if a.Plan.Name != b.Plan.Name {
		d.PlanChanges = append(d.PlanChanges, fmt.Sprintf("name %s → %s", a.Plan.Name, b.Plan.Name))
	}
	if a.Plan.Version != b.Plan.Version {
		d.PlanChanges = append(d.PlanChanges, fmt.Sprintf("version %d → %d", a.Plan.Version, b.Plan.Version))
	}
	if a.Plan.SHA256 != b.Plan.SHA256 {
		c := fmt.Sprintf("sha256 %s → %s", short(a.Plan.SHA256), short(b.Plan.SHA256))
		if a.Plan.Name == b.Plan.Name && a.Plan.Version == b.Plan.Version {
			c += " (the file changed without a version bump)"
		}
		d.PlanChanges = append(d.PlanChanges, c)
	}
	d.Params = append(d.Params, compareValues(a.Params, b.Params, nil)...)
	if a.Status != b.Status || !reflect.DeepEqual(a.ExitCode, b.ExitCode) {
		d.Status = &textChange{A: a.Status, B: b.Status}
	}

	ea, eb := diffEntries(a), diffEntries(b)
	byKey := func(es []diffEntry) map[string]reportStep {
		m := map[string]reportStep{}
		for _, e := range es {
			m[e.key] = e.step
		}
		return m
	}
	ma, mb := byKey(ea), byKey(eb)
	skip := isTiming
	if timings {
		skip = nil
	}
	for _, key := range mergeOrder(ea, eb) {
		sa, inA := ma[key]
		sb, inB := mb[key]
		st := sb
		if !inB {
			st = sa
		}
		sd := stepDiff{Step: st.Step, Phase: st.Phase, RollbackOf: st.RollbackOf}
		label := stepLabel(st.Phase, st.Step)
		if inA {
			sd.StatusA = sa.Status
		}
		if inB {
			sd.StatusB = sb.Status
		}
		if sa.Error != sb.Error && (inA && inB) {
			sd.Error = &textChange{A: sa.Error, B: sb.Error}
		}
		if inA && inB && sa.Outputs != nil && sb.Outputs != nil {
			sd.Outputs = compareValues(sa.Outputs, sb.Outputs, skip)
		}
		failedA, failedB := inA && sa.Status == engine.StepFailed, inB && sb.Status == engine.StepFailed
		switch {
		case failedB && !failedA:
			sd.Change = changeNewFailure
			d.NewFailures = append(d.NewFailures, label)
		case failedA && inB && !failedB && sb.Status != engine.StepNotRun:
			sd.Change = changeFixed
			d.Fixed = append(d.Fixed, label)
		case !inA:
			sd.Change = changeOnlyInB
		case !inB:
			sd.Change = changeOnlyInA
		case sa.Status != sb.Status:
			sd.Change = changeStatus
		case sd.Error != nil || len(sd.Outputs) > 0:
			sd.Change = changeChanged
		default:
			continue
		}
		if !inA {
			d.OnlyInB = append(d.OnlyInB, label)
		}
		if !inB {
			d.OnlyInA = append(d.OnlyInA, label)
		}
		d.Steps = append(d.Steps, sd)
	}
	d.Equivalent = len(d.PlanChanges) == 0 && len(d.Params) == 0 && d.Status == nil && len(d.Steps) == 0 && a.ChainOK && b.ChainOK
	return d
}

// statusText is a run status with its exit code.
func statusText(status string, exit *int) string {
	if status == "" {
		status = "no run.end"
	}
	if exit == nil {
		return status
	}
	return fmt.Sprintf("%s (exit %d)", status, *exit)
}

// journalDiff implements "cutover journal diff A B".
func (s stdio) journalDiff(dir, argA, argB, output string, timings bool) int {
	var reps [2]runReport
	for i, arg := range []string{argA, argB} {
		path, err := journal.Resolve(dir, arg)
		if err == nil {
			reps[i], err = buildReport(path)
		}
		if err != nil {
			fmt.Fprintf(s.err, "cutover journal diff: %v\n", err)
			return engine.ExitUsage
		}
	}
	d := diffRuns(reps[0], reps[1], timings)
	if output == "json" {
		if code := s.json(d); code != 0 {
			return engine.ExitUsage
		}
	} else {
		d.writeText(s.out, newPainter(s.out))
	}
	if d.Equivalent {
		return 0
	}
	return 1
}

// formatAny renders a param or output value for the text diff; a missing
// one is "(none)".
func formatAny(v any) string {
	if v == nil {
		return "(none)"
	}
	return clip(renderValue(v), 200)
}

// formatDelta renders B − A with its sign.
func formatDelta(d float64) string {
	return strconv.FormatFloat(d, 'f', -1, 64)
}

// writeText renders the diff for a terminal or a log.
func (d runDiff) writeText(w io.Writer, p painter) {
	for _, side := range []struct {
		name string
		r    diffRun
	}{{"a", d.A}, {"b", d.B}} {
		r := side.r
		started := r.Started
		if t, err := time.Parse(time.RFC3339Nano, r.Started); err == nil {
			started = t.Local().Format("2006-01-02 15:04:05")
		}
		mode := ""
		if r.DryRun {
			mode = "  dry run"
		}
		fmt.Fprintf(w, "%s: %s  %s@%d  %s  started %s%s\n", side.name, r.RunID, r.Plan.Name, r.Plan.Version, statusText(r.Status, r.ExitCode), started, mode)
	}
	for _, side := range []struct {
		name string
		r    diffRun
	}{{"a", d.A}, {"b", d.B}} {
		if side.r.ChainOK {
			fmt.Fprintf(w, "chain %s: intact, head %s\n", side.name, short(side.r.Head))
			continue
		}
		fmt.Fprintf(w, "%s %s's hash chain is BROKEN (%s): the journal was edited; do not trust this side\n", p.paint(red, "warning:"), side.name, plural(len(side.r.ChainProblems), "problem"))
		for _, pr := range side.r.ChainProblems {
			fmt.Fprintf(w, "  %s\n", pr)
		}
	}
	if d.A.DryRun != d.B.DryRun {
		fmt.Fprintf(w, "%s one run is a dry run and the other is not\n", p.paint(yellow, "warning:"))
	}
	switch {
	case !d.SamePlan:
		fmt.Fprintf(w, "%s different plans (%s); steps are matched by name\n", p.paint(yellow, "warning:"), strings.Join(d.PlanChanges, "; "))
	case len(d.PlanChanges) > 0:
		fmt.Fprintf(w, "plan changed: %s\n", strings.Join(d.PlanChanges, "; "))
	default:
		fmt.Fprintf(w, "plan: same (%s@%d, sha256 %s)\n", d.B.Plan.Name, d.B.Plan.Version, short(d.B.Plan.SHA256))
	}
	if len(d.Params) > 0 {
		fmt.Fprintln(w, "params:")
		for _, c := range d.Params {
			fmt.Fprintf(w, "  %s: %s → %s\n", c.Name, formatAny(c.A), formatAny(c.B))
		}
	}
	if d.Status != nil {
		fmt.Fprintf(w, "status: %s → %s\n", statusText(d.A.Status, d.A.ExitCode), p.paint(statusColor(d.B.Status), statusText(d.B.Status, d.B.ExitCode)))
	} else {
		fmt.Fprintf(w, "status: same (%s)\n", statusText(d.B.Status, d.B.ExitCode))
	}
	if len(d.Steps) == 0 {
		fmt.Fprintln(w, "steps: no differences")
	} else {
		fmt.Fprintln(w, "steps:")
		width := 0
		for _, sd := range d.Steps {
			width = max(width, len([]rune(stepLabel(sd.Phase, sd.Step))))
		}
		for _, sd := range d.Steps {
			label := stepLabel(sd.Phase, sd.Step)
			pad := strings.Repeat(" ", width-len([]rune(label)))
			var what string
			switch {
			case sd.StatusA == "":
				what = "only in b: " + sd.StatusB
			case sd.StatusB == "":
				what = "only in a: " + sd.StatusA
			case sd.StatusA == sd.StatusB:
				what = sd.StatusB
			default:
				what = sd.StatusA + " → " + sd.StatusB
			}
			if sd.RollbackOf != "" {
				what += " (rollback of " + sd.RollbackOf + ")"
			}
			switch sd.Change {
			case changeNewFailure:
				what += "  " + p.paint(red, "NEW FAILURE")
			case changeFixed:
				what += "  " + p.paint(green, "fixed")
			}
			fmt.Fprintf(w, "  %s%s  %s\n", label, pad, what)
			indent := "  " + strings.Repeat(" ", width) + "    "
			if sd.Error != nil {
				fmt.Fprintf(w, "%serror: %s → %s\n", indent, quoteOrNone(sd.Error.A), quoteOrNone(sd.Error.B))
			}
			for _, c := range sd.Outputs {
				line := fmt.Sprintf("%s%s: %s → %s", indent, c.Name, formatAny(c.A), formatAny(c.B))
				if c.Delta != nil {
					sign := ""
					if *c.Delta > 0 {
						sign = "+"
					}
					line += " (" + sign + formatDelta(*c.Delta) + ")"
				}
				fmt.Fprintln(w, line)
			}
		}
	}
	if d.Equivalent {
		fmt.Fprintln(w, "no differences")
		return
	}
	if len(d.PlanChanges) == 0 && len(d.Params) == 0 && d.Status == nil && len(d.Steps) == 0 {
		fmt.Fprintln(w, "no differences between the runs, but a hash chain is broken")
		return
	}
	changed := 0
	for _, sd := range d.Steps {
		if sd.Change == changeStatus || sd.Change == changeChanged {
			changed++
		}
	}
	parts := []string{plural(len(d.NewFailures), "new failure"), fmt.Sprintf("%d fixed", len(d.Fixed)), plural(changed, "other step") + " changed"}
	if len(d.OnlyInA) > 0 {
		parts = append(parts, fmt.Sprintf("%d only in a", len(d.OnlyInA)))
	}
	if len(d.OnlyInB) > 0 {
		parts = append(parts, fmt.Sprintf("%d only in b", len(d.OnlyInB)))
	}
	fmt.Fprintf(w, "differences: %s\n", strings.Join(parts, ", "))
}

// quoteOrNone quotes an error text; an empty one is "(none)".
func quoteOrNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return strconv.Quote(clip(s, 300))
}
