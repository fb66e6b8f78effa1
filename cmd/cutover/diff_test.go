package main

import (
	"slices"
	"testing"

	"github.com/pgcutover/cutover/engine"
)

// exitCode returns a pointer to an exit code, as reports hold them.
func exitCode(n int) *int { return &n }

// TestDiffRuns classifies step changes: a new failure, a fix, a status
// change, changed outputs with a numeric delta (timings left out), steps
// in one run only; and equivalent runs are equivalent.
func TestDiffRuns(t *testing.T) {
	a := runReport{
		Plan: reportPlan{Name: "p", Version: 1, SHA256: "aa"}, Status: engine.StatusSucceeded, ExitCode: exitCode(0), ChainOK: true,
		Params: map[string]any{"env": "staging"},
		Steps: []reportStep{
			{Step: "tls", Phase: "main", Status: engine.StepSucceeded, Outputs: map[string]any{"cert_days_left": 40.0, "connect_ms": 3.0, "version": "TLSv1.3"}},
			{Step: "old", Phase: "main", Status: engine.StepFailed, Error: "boom"},
			{Step: "net", Phase: "main", Status: engine.StepSucceeded},
			{Step: "gone", Phase: "main", Status: engine.StepSucceeded},
			{Step: "finally[0]", Phase: "finally", Status: engine.StepSucceeded},
		},
	}
	b := runReport{
		Plan: reportPlan{Name: "p", Version: 1, SHA256: "aa"}, Status: engine.StatusFailed, ExitCode: exitCode(1), ChainOK: true,
		Params: map[string]any{"env": "staging"},
		Steps: []reportStep{
			{Step: "tls", Phase: "main", Status: engine.StepFailed, Error: "certificate expires in 12 days",
				Outputs: map[string]any{"cert_days_left": 12.0, "connect_ms": 9.0, "version": "TLSv1.3"}},
			{Step: "old", Phase: "main", Status: engine.StepSucceeded},
			{Step: "net", Phase: "main", Status: engine.StepSkipped},
			{Step: "new", Phase: "main", Status: engine.StepSucceeded},
			{Step: "finally[0]", Phase: "finally", Status: engine.StepSucceeded},
		},
	}
	d := diffRuns(a, b, false)
	if d.Equivalent || !d.SamePlan || len(d.PlanChanges) != 0 || len(d.Params) != 0 {
		t.Fatalf("equivalent %v same plan %v plan changes %v params %v", d.Equivalent, d.SamePlan, d.PlanChanges, d.Params)
	}
	if d.Status == nil || d.Status.A != "succeeded" || d.Status.B != "failed" {
		t.Errorf("status change %+v", d.Status)
	}
	if !slices.Equal(d.NewFailures, []string{"tls"}) || !slices.Equal(d.Fixed, []string{"old"}) {
		t.Errorf("new failures %v fixed %v, want [tls] [old]", d.NewFailures, d.Fixed)
	}
	if !slices.Equal(d.OnlyInA, []string{"gone"}) || !slices.Equal(d.OnlyInB, []string{"new"}) {
		t.Errorf("only in a %v only in b %v, want [gone] [new]", d.OnlyInA, d.OnlyInB)
	}
	var order, changes []string
	for _, sd := range d.Steps {
		order = append(order, sd.Step)
		changes = append(changes, sd.Change)
	}
	// B's order, with "gone" after its predecessor in A.
	if want := []string{"tls", "old", "net", "gone", "new"}; !slices.Equal(order, want) {
		t.Errorf("steps %v, want %v", order, want)
	}
	if want := []string{changeNewFailure, changeFixed, changeStatus, changeOnlyInA, changeOnlyInB}; !slices.Equal(changes, want) {
		t.Errorf("changes %v, want %v", changes, want)
	}
	tls := d.Steps[0]
	if len(tls.Outputs) != 1 || tls.Outputs[0].Name != "cert_days_left" || tls.Outputs[0].Delta == nil || *tls.Outputs[0].Delta != -28 {
		t.Errorf("tls outputs %+v, want cert_days_left 40 → 12 (-28) and no timing", tls.Outputs)
	}
	if tls.Error == nil || tls.Error.A != "" || tls.Error.B != "certificate expires in 12 days" {
		t.Errorf("tls error change %+v", tls.Error)
	}
	if d := diffRuns(a, b, true); len(d.Steps[0].Outputs) != 2 {
		t.Errorf("with timings, tls outputs %+v, want cert_days_left and connect_ms", d.Steps[0].Outputs)
	}

	if d := diffRuns(a, a, false); !d.Equivalent || len(d.Steps) != 0 || d.Status != nil {
		t.Errorf("a run against itself: %+v", d)
	}
	broken := a
	broken.ChainOK = false
	if d := diffRuns(a, broken, false); d.Equivalent {
		t.Errorf("a broken chain counts as equivalent")
	}
	other := a
	other.Plan = reportPlan{Name: "p", Version: 1, SHA256: "bb"}
	if d := diffRuns(a, other, false); d.Equivalent || len(d.PlanChanges) != 1 || !d.SamePlan {
		t.Errorf("changed file, same version: %v", d.PlanChanges)
	}
}

// TestDiffNotRun treats steps never reached as not-run, so that a step
// that stopped being reached is a status change, not a step of one run.
func TestDiffNotRun(t *testing.T) {
	a := runReport{Status: engine.StatusSucceeded, ChainOK: true, Steps: []reportStep{
		{Step: "one", Phase: "main", Status: engine.StepSucceeded},
		{Step: "two", Phase: "main", Status: engine.StepSucceeded},
	}}
	b := runReport{Status: engine.StatusRolledBack, ChainOK: true,
		Steps:    []reportStep{{Step: "one", Phase: "main", Status: engine.StepFailed}},
		Rollback: []reportStep{{Step: "one.rollback[0]", Phase: "rollback", RollbackOf: "one", Status: engine.StepSucceeded}},
		NotRun:   []string{"two"},
	}
	d := diffRuns(a, b, false)
	if len(d.Steps) != 3 || d.Steps[1].Step != "two" || d.Steps[1].StatusB != engine.StepNotRun || d.Steps[1].Change != changeStatus {
		t.Fatalf("steps %+v", d.Steps)
	}
	if !slices.Equal(d.OnlyInB, []string{"↺ one.rollback[0]"}) {
		t.Errorf("only in b %v", d.OnlyInB)
	}
}

// TestMergeOrder keeps B's order and puts A's extra steps after their
// predecessor in A.
func TestMergeOrder(t *testing.T) {
	e := func(keys ...string) []diffEntry {
		var out []diffEntry
		for _, k := range keys {
			out = append(out, diffEntry{key: k})
		}
		return out
	}
	for _, c := range []struct{ a, b, want []string }{
		{[]string{"x", "y"}, []string{"x", "y"}, []string{"x", "y"}},
		{[]string{"x", "gone", "y"}, []string{"x", "y"}, []string{"x", "gone", "y"}},
		{[]string{"first", "x"}, []string{"x", "new"}, []string{"first", "x", "new"}},
		{nil, []string{"x"}, []string{"x"}},
		{[]string{"x"}, nil, []string{"x"}},
	} {
		if got := mergeOrder(e(c.a...), e(c.b...)); !slices.Equal(got, c.want) {
			t.Errorf("mergeOrder(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
