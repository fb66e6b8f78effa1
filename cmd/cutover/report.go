package main

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgcutover/cutover/engine"
	"github.com/pgcutover/cutover/engine/journal"
)

// Report formats accepted by "journal report --format" and
// "run --report-format".
const (
	reportJSON  = "json"
	reportJUnit = "junit"
	reportHTML  = "html"
)

// checkReportFormat reports whether format is a known report format.
func checkReportFormat(flagName, format string) error {
	if format != reportJSON && format != reportJUnit && format != reportHTML {
		return fmt.Errorf("%s is json, junit or html, not %q", flagName, format)
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

	Operator string         `json:"operator,omitempty"`
	Host     string         `json:"host,omitempty"`
	Engine   string         `json:"engine,omitempty"`
	Params   map[string]any `json:"params,omitempty"`
	// Message is run.end's explanation of a status other than succeeded.
	Message string `json:"message,omitempty"`
	// Head is the sha256 of the journal's last complete line.
	Head string `json:"head,omitempty"`
	// ChainProblems are the breaks in the hash chain, by line.
	ChainProblems []string `json:"chain_problems,omitempty"`
	// Commit is the commit point the run passed, if any.
	Commit string `json:"commit,omitempty"`
	// RollbackBegin is the rollback.begin record, if the run rolled back.
	RollbackBegin *reportRollback `json:"rollback_begin,omitempty"`
	// NotRun are the main steps never reached.
	NotRun []string `json:"not_run,omitempty"`
	// Torn reports a torn last line, ignored.
	Torn bool `json:"torn,omitempty"`
	// InDoubt are the steps that started and never ended: the runner
	// stopped during them, and what they did is unknown.
	InDoubt []reportStep `json:"in_doubt,omitempty"`

	// Journal is the journal file the report was built from.
	Journal string `json:"-"`
	// Records is the number of complete records in the journal.
	Records int `json:"-"`
	// Events are the records that are not step ends (retries, the commit,
	// rollback.begin, record types this version does not know), in order,
	// for the HTML report.
	Events []reportEvent `json:"-"`
}

// reportRollback is the rollback.begin record in a report.
type reportRollback struct {
	// After is the failed step that started the rollback.
	After   string   `json:"after,omitempty"`
	Message string   `json:"message"`
	Pending []string `json:"pending"`
	Kept    []string `json:"kept,omitempty"`
}

// reportEvent is a journal record other than a step end, rendered as text.
type reportEvent struct {
	AtMS float64
	Type string
	Text string
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
	RollbackOf string         `json:"rollback_of,omitempty"`
	Outputs    map[string]any `json:"outputs,omitempty"`

	// StartMS and EndMS place the step on the run's timeline: milliseconds
	// from the run's start to its first attempt's start and to its end.
	StartMS float64 `json:"-"`
	EndMS   float64 `json:"-"`
}

// buildReport reads the journal at path and summarises it as a report. A
// broken hash chain does not stop the report; it sets ChainOK to false.
// Records of types this version does not know become Events.
func buildReport(path string) (runReport, error) {
	recs, torn, err := journal.Read(path)
	if err != nil {
		return runReport{}, err
	}
	ver, err := journal.VerifyKey(path, journalKey()) // as journal verify does
	if err != nil {
		return runReport{}, err
	}
	sm := summarise(recs)
	rep := runReport{
		RunID:         sm.id,
		Plan:          reportPlan{Name: sm.plan, Version: sm.version},
		DryRun:        sm.dryRun,
		Status:        sm.status,
		ExitCode:      sm.exit,
		ChainOK:       ver.OK,
		Steps:         []reportStep{},
		Rollback:      []reportStep{},
		Head:          ver.Head,
		ChainProblems: ver.Problems,
		Torn:          torn != nil,
		Journal:       path,
		Records:       ver.Records,
	}
	if !sm.start.IsZero() {
		rep.Started = sm.start.UTC().Format(time.RFC3339Nano)
	}
	if !sm.end.IsZero() {
		rep.Ended = sm.end.UTC().Format(time.RFC3339Nano)
		rep.DurationMS = msBetween(sm.start, sm.end)
	}
	// started holds the time of each step's first step.start not yet
	// matched by its step.end.
	started := map[string]time.Time{}
	var startOrder []engine.Record
	attempts := map[string]int{}
	var last time.Time
	for _, rec := range recs {
		r, err := decode(rec)
		if err != nil {
			rep.Events = append(rep.Events, reportEvent{Type: rec.Type, Text: "undecodable record: " + err.Error()})
			continue
		}
		t, _ := time.Parse(time.RFC3339Nano, r.Time)
		if t.After(last) {
			last = t
		}
		at := 0.0
		if !sm.start.IsZero() && !t.IsZero() {
			at = msBetween(sm.start, t)
		}
		event := func(text string) {
			rep.Events = append(rep.Events, reportEvent{AtMS: at, Type: r.Type, Text: text})
		}
		switch r.Type {
		case engine.RecRunStart:
			if r.Plan != nil {
				rep.Plan.SHA256 = r.Plan.SHA256
			}
			rep.Operator, rep.Host, rep.Engine, rep.Params = r.Operator, r.Host, r.Engine, r.Params
		case engine.RecSecrets:
			for _, sc := range r.Secrets {
				state := "read"
				if !sc.OK {
					state = "NOT AVAILABLE: " + sc.Error
				}
				event(fmt.Sprintf("secret %s (%s %s) %s", sc.Name, sc.From, sc.Source, state))
			}
		case engine.RecStepStart:
			key := r.Phase + "/" + r.Step
			attempts[key] = r.Attempt
			if _, ok := started[key]; !ok {
				started[key] = t
				startOrder = append(startOrder, r)
			}
		case engine.RecStepProcess:
			// Not needed in a report: the step's end follows.
		case engine.RecStepRetry:
			event(fmt.Sprintf("retry %s: attempt %d failed: %s (next in %s)", r.Step, r.Attempt, r.Error, r.RetryIn))
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
				RollbackOf: r.RollbackOf,
				Outputs:    r.Outputs,
				EndMS:      at,
				StartMS:    max(0, at-r.DurationMS),
			}
			key := r.Phase + "/" + r.Step
			if t0, ok := started[key]; ok && !sm.start.IsZero() {
				st.StartMS = msBetween(sm.start, t0)
				delete(started, key)
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
		case engine.RecCommit:
			rep.Commit = r.Step
			event(fmt.Sprintf("commit point %s: %s", r.Step, r.Message))
		case engine.RecRollbackBegin:
			rep.RollbackBegin = &reportRollback{After: r.Step, Message: r.Message, Pending: r.Pending, Kept: r.Kept}
			if rep.RollbackBegin.Pending == nil {
				rep.RollbackBegin.Pending = []string{}
			}
			event(fmt.Sprintf("rollback after %s: %s", orDash(r.Step), r.Message))
		case engine.RecRunEnd:
			rep.Message, rep.NotRun = r.Message, r.NotRun
		default:
			event(genericText(rec))
		}
	}
	if rep.Ended == "" && !sm.start.IsZero() && last.After(sm.start) {
		// No run.end: the timeline spans what the journal holds.
		rep.DurationMS = msBetween(sm.start, last)
	}
	for _, r := range startOrder {
		key := r.Phase + "/" + r.Step
		t0, ok := started[key]
		if !ok || sm.start.IsZero() {
			continue
		}
		delete(started, key)
		st := reportStep{Step: r.Step, Type: r.StepType, Phase: r.Phase, Status: engine.StatusInDoubt, Attempts: attempts[key],
			Error: "started and never ended: the runner stopped during this step", RollbackOf: r.RollbackOf,
			Asserts: []engine.Check{}, StartMS: msBetween(sm.start, t0), EndMS: rep.DurationMS}
		if st.Phase == "" {
			st.Phase = "main"
		}
		rep.InDoubt = append(rep.InDoubt, st)
	}
	return rep, nil
}

// msBetween is the time from a to b in milliseconds, to the microsecond.
func msBetween(a, b time.Time) float64 {
	return float64(b.Sub(a).Microseconds()) / 1000
}

// genericText renders a record of a type this version does not know: its
// message if it has one, else its fields other than the chain's and the
// common ones, as compact JSON.
func genericText(rec journal.Record) string {
	var msg string
	if json.Unmarshal(rec.Fields["message"], &msg) == nil && msg != "" {
		return msg
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(rec.Fields)) {
		switch k {
		case "seq", "prev", "type", "time", "mac":
			continue
		}
		parts = append(parts, k+"="+string(rec.Fields[k]))
	}
	return clip(strings.Join(parts, " "), 200)
}

// clip shortens s to at most n runes, marking the cut.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
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
	for _, st := range slices.Concat(rep.Steps, rep.Rollback, rep.InDoubt) {
		tc := junitCase{
			Classname: rep.Plan.Name,
			Name:      fmt.Sprintf("%s/%s (%s)", st.Phase, st.Step, st.Type),
			Time:      seconds(st.DurationMS),
		}
		switch st.Status {
		case engine.StepFailed, engine.StatusInDoubt:
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
	if format == reportHTML {
		return writeHTMLReport(w, rep)
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
