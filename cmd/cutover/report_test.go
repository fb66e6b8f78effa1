package main

import (
	"testing"

	"github.com/pgcutover/cutover/engine"
)

// TestJUnitCounts checks how step statuses map to JUnit failures and
// skips, and that rollback steps follow the main steps.
func TestJUnitCounts(t *testing.T) {
	exit := 1
	rep := runReport{
		RunID:    "r1",
		Plan:     reportPlan{Name: "p", Version: 2},
		Status:   engine.StatusRolledBack,
		ExitCode: &exit,
		Steps: []reportStep{
			{Step: "a", Type: "run-command", Phase: "main", Status: engine.StepSucceeded},
			{Step: "b", Type: "run-command", Phase: "main", Status: engine.StepSkipped},
			{Step: "c", Type: "assert", Phase: "main", Status: engine.StepUndecided},
			{Step: "d", Type: "run-command", Phase: "main", Status: engine.StepWouldRun},
			{Step: "e", Type: "run-command", Phase: "main", Status: engine.StepFailed, Error: "boom", DurationMS: 1500},
		},
		Rollback: []reportStep{
			{Step: "a.rollback[0]", Type: "run-command", Phase: "rollback", Status: engine.StepSucceeded},
		},
	}
	s := rep.junit().Suites[0]
	if s.Name != "p@2" || s.Tests != 6 || s.Failures != 1 || s.Skipped != 3 {
		t.Fatalf("suite %s: tests %d failures %d skipped %d, want p@2: 6 1 3", s.Name, s.Tests, s.Failures, s.Skipped)
	}
	if got := s.Cases[4]; got.Failure == nil || got.Failure.Message != "boom" || got.Time != "1.500" {
		t.Errorf("failed case = %+v, want failure boom in 1.500s", got)
	}
	if got := s.Cases[5].Name; got != "rollback/a.rollback[0] (run-command)" {
		t.Errorf("last case %q, want the rollback step", got)
	}
}

// TestCheckReportFormat accepts json and junit only.
func TestCheckReportFormat(t *testing.T) {
	for _, f := range []string{"json", "junit"} {
		if err := checkReportFormat("--format", f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	for _, f := range []string{"", "xml", "JSON"} {
		if checkReportFormat("--format", f) == nil {
			t.Errorf("%q accepted", f)
		}
	}
}
