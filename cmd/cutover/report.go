package main

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/pgcutover/cutover/engine"
	"github.com/pgcutover/cutover/engine/journal"
)

// Report formats accepted by "journal report --format" and
// "run --report-format".
const (
	reportJSON  = "json"
	reportJUnit = "junit"
)

// checkReportFormat reports whether format is a known report format.
func checkReportFormat(flagName, format string) error {
	if format != reportJSON && format != reportJUnit {
		return fmt.Errorf("%s is json or junit, not %q", flagName, format)
	}
	return nil
}

// runReport is the JSON report of one run, built from its journal for
// schedulers and CI systems that collect results.
type runReport struct {
	RunID      string       `json:"run_id"`
	Plan       reportPlan   `json:"plan"`
	DryRun     bool         `json:"dry_run"`
	Started    string       `json:"started"`
	Ended      string       `json:"ended"`
	DurationMS float64      `json:"duration_ms"`
	Status     string       `json:"status"`
	ExitCode   *int         `json:"exit_code"`
	ChainOK    bool         `json:"chain_ok"`
	Steps      []reportStep `json:"steps"`
	Rollback   []reportStep `json:"rollback"`
}

// reportPlan identifies the plan in a report.
type reportPlan struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
	SHA256  string `json:"sha256"`
}

// reportStep is one step.end record in a report.
type reportStep struct {
	Step       string         `json:"step"`
	Type       string         `json:"type"`
	Phase      string         `json:"phase"`
	Status     string         `json:"status"`
	Attempts   int            `json:"attempts"`
	DurationMS float64        `json:"duration_ms"`
	Error      string         `json:"error"`
	Guard      *engine.Check  `json:"guard"`
	Asserts    []engine.Check `json:"asserts"`
}

// buildReport reads the journal at path and summarises it as a report. A
// broken hash chain does not stop the report; it sets ChainOK to false.
func buildReport(path string) (runReport, error) {
	recs, _, err := journal.Read(path)
	if err != nil {
		return runReport{}, err
	}
	ver, err := journal.Verify(path)
	if err != nil {
		return runReport{}, err
	}
	sm := summarise(recs)
	rep := runReport{
		RunID:    sm.id,
		Plan:     reportPlan{Name: sm.plan, Version: sm.version},
		DryRun:   sm.dryRun,
		Status:   sm.status,
		ExitCode: sm.exit,
		ChainOK:  ver.OK,
		Steps:    []reportStep{},
		Rollback: []reportStep{},
	}
	if !sm.start.IsZero() {
		rep.Started = sm.start.UTC().Format(time.RFC3339Nano)
	}
	if !sm.end.IsZero() {
		rep.Ended = sm.end.UTC().Format(time.RFC3339Nano)
		rep.DurationMS = float64(sm.end.Sub(sm.start).Microseconds()) / 1000
	}
	for _, rec := range recs {
		r, err := decode(rec)
		if err != nil {
			continue
		}
		switch r.Type {
		case engine.RecRunStart:
			if r.Plan != nil {
				rep.Plan.SHA256 = r.Plan.SHA256
			}
		case engine.RecStepEnd:
			st := reportStep{
				Step:       r.Step,
				Type:       r.StepType,
				Phase:      r.Phase,
				Status:     r.Status,
				Attempts:   r.Attempt,
				DurationMS: r.DurationMS,
				Error:      r.Error,
				Guard:      r.Guard,
				Asserts:    r.Asserts,
			}
			if st.Phase == "" {
				st.Phase = "main"
			}
			if st.Asserts == nil {
				st.Asserts = []engine.Check{}
			}
			if st.Phase == "rollback" {
				rep.Rollback = append(rep.Rollback, st)
			} else {
				rep.Steps = append(rep.Steps, st)
			}
		}
	}
	return rep, nil
}

// JUnit XML, as read by Jenkins, GitLab and most CI systems.
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Classname string        `xml:"classname,attr"`
	Name      string        `xml:"name,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

type junitSkipped struct {
	Message string `xml:"message,attr"`
}

// seconds renders milliseconds as JUnit's decimal seconds.
func seconds(ms float64) string {
	return strconv.FormatFloat(ms/1000, 'f', 3, 64)
}

// junit converts a report to JUnit XML: one testsuite for the run, one
// testcase per step.end, main and finally steps first, then rollback steps.
func (rep runReport) junit() junitSuites {
	exit := ""
	if rep.ExitCode != nil {
		exit = strconv.Itoa(*rep.ExitCode)
	}
	suite := junitSuite{
		Name: fmt.Sprintf("%s@%d", rep.Plan.Name, rep.Plan.Version),
		Time: seconds(rep.DurationMS),
		Properties: []junitProperty{
			{Name: "run_id", Value: rep.RunID},
			{Name: "status", Value: rep.Status},
			{Name: "exit_code", Value: exit},
			{Name: "dry_run", Value: strconv.FormatBool(rep.DryRun)},
			{Name: "chain_ok", Value: strconv.FormatBool(rep.ChainOK)},
		},
	}
	if t, err := time.Parse(time.RFC3339Nano, rep.Started); err == nil {
		suite.Timestamp = t.UTC().Format("2006-01-02T15:04:05")
	}
	for _, st := range append(append([]reportStep{}, rep.Steps...), rep.Rollback...) {
		tc := junitCase{
			Classname: rep.Plan.Name,
			Name:      fmt.Sprintf("%s/%s (%s)", st.Phase, st.Step, st.Type),
			Time:      seconds(st.DurationMS),
		}
		switch st.Status {
		case engine.StepFailed:
			msg := st.Error
			if msg == "" {
				msg = "step failed"
			}
			tc.Failure = &junitFailure{Message: msg, Text: msg}
			suite.Failures++
		case engine.StepSkipped, engine.StepUndecided, engine.StepWouldRun, engine.StepNotRun:
			tc.Skipped = &junitSkipped{Message: skipMessage(st)}
			suite.Skipped++
		}
		suite.Cases = append(suite.Cases, tc)
		suite.Tests++
	}
	return junitSuites{Suites: []junitSuite{suite}}
}

// skipMessage explains why a step counts as skipped.
func skipMessage(st reportStep) string {
	switch st.Status {
	case engine.StepSkipped:
		if st.Guard != nil {
			return fmt.Sprintf("skipped: when `%s` is %s", st.Guard.Expr, st.Guard.Result)
		}
		return "skipped"
	case engine.StepUndecided:
		return "undecided: decided at run time"
	case engine.StepWouldRun:
		return "would-run: mutating step not run in a dry run"
	}
	return st.Status
}

// writeReport writes the report of the journal at path in format to w.
func writeReport(w io.Writer, path, format string) error {
	rep, err := buildReport(path)
	if err != nil {
		return err
	}
	if format == reportJUnit {
		if _, err := io.WriteString(w, xml.Header); err != nil {
			return err
		}
		enc := xml.NewEncoder(w)
		enc.Indent("", "  ")
		if err := enc.Encode(rep.junit()); err != nil {
			return err
		}
		_, err = io.WriteString(w, "\n")
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// writeReportFile writes the report of the journal at path to file, or to
// stdout when file is empty or "-".
func (s stdio) writeReportFile(path, format, file string) error {
	if file == "" || file == "-" {
		return writeReport(s.out, path, format)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	err = writeReport(f, path, format)
	return errors.Join(err, f.Close())
}

// journalReport implements "cutover journal report RUN".
func (s stdio) journalReport(dir, arg, format, output string) int {
	if err := checkReportFormat("--format", format); err != nil {
		fmt.Fprintf(s.err, "cutover journal report: %v\n", err)
		return engine.ExitUsage
	}
	path, err := journal.Resolve(dir, arg)
	if err != nil {
		fmt.Fprintf(s.err, "cutover journal report: %v\n", err)
		return 1
	}
	if err := s.writeReportFile(path, format, output); err != nil {
		fmt.Fprintf(s.err, "cutover journal report: %v\n", err)
		return 1
	}
	return 0
}

// runReportFile writes the report that "run --report" asked for. A failure
// to write it is printed but does not change the run's exit code.
func (s stdio) runReportFile(journalPath, format, file string) {
	if file == "" || journalPath == "" {
		return
	}
	if err := s.writeReportFile(journalPath, format, file); err != nil {
		fmt.Fprintf(s.err, "cutover run: report: %v\n", err)
	}
}
