package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgcutover/cutover/engine"
)

// The HTML report is one self-contained file: inline CSS, no script, no
// reference to anything outside it, and a Content-Security-Policy that
// forbids loading anything should a value ever slip through. Everything
// from the journal goes through html/template's contextual escaping.

// htmlPage is what the HTML template renders.
type htmlPage struct {
	Title       string
	RunID       string
	Status      string
	StatusClass string
	ExitCode    string
	Message     string
	DryRun      bool
	Operator    string
	Host        string
	Engine      string
	Started     string
	Duration    string
	Journal     string
	Records     int
	PlanSHA256  string
	Params      []htmlKV
	ChainOK     bool
	Problems    []string
	Head        string
	Torn        bool
	Commit      string
	Failed      []string
	InDoubt     []string
	Rows        []htmlStep
	NotRun      []string
	Rollback    *reportRollback
	RollbackRow []htmlStep
	Events      []htmlEvent
	Scale       []string
}

// htmlStep is one row of the timeline and the step table.
type htmlStep struct {
	Label      string
	Step       string
	Phase      string
	Type       string
	Status     string
	Class      string
	Attempts   int
	Duration   string
	Left       string
	Width      string
	Bar        bool
	Guard      *engine.Check
	Asserts    []htmlCheck
	Error      string
	Outputs    []htmlKV
	RollbackOf string
	Failed     bool
	// Cause marks the step whose failure decided the run.
	Cause bool
}

// htmlCheck is a guard or assert result.
type htmlCheck struct {
	Expr, Result, Values, Error string
	Class                       string
}

// htmlKV is one named value.
type htmlKV struct{ Key, Value string }

// htmlEvent is a journal record other than a step end.
type htmlEvent struct{ At, Type, Text string }

// statusClass maps a step or run status to a CSS class: ok, fail, warn
// (needs a human) or idle (did not run).
func statusClass(status string) string {
	switch status {
	case engine.StepSucceeded, engine.StepDryRun:
		return "ok"
	case engine.StepFailed, engine.StatusRolledBack:
		return "fail"
	case engine.StatusRollbackFailed, engine.StatusFailedAfterCommit, engine.StatusAborted, engine.StatusInDoubt, "":
		return "warn"
	}
	return "idle"
}

// stepLabel is how a step is named in the report and in journal show.
func stepLabel(phase, step string) string {
	switch phase {
	case "rollback":
		return "↺ " + step
	case "finally":
		return "finally " + step
	}
	return step
}

// renderValue renders an output value on one line: strings quoted, lists
// and maps as compact JSON, at most 2000 characters.
func renderValue(v any) string {
	switch v.(type) {
	case map[string]any, []any:
		if b, err := json.Marshal(v); err == nil {
			return clip(string(b), 2000)
		}
	}
	return clip(engine.FormatValue(v), 2000)
}

// pct formats a percentage for a CSS length.
func pct(f float64) string {
	return strconv.FormatFloat(f, 'f', 2, 64)
}

// htmlRow converts a report step to a timeline row on a run of total ms.
func htmlRow(st reportStep, total float64, cause string) htmlStep {
	row := htmlStep{
		Label:      stepLabel(st.Phase, st.Step),
		Step:       st.Step,
		Phase:      st.Phase,
		Type:       st.Type,
		Status:     st.Status,
		Class:      statusClass(st.Status),
		Attempts:   st.Attempts,
		Guard:      st.Guard,
		Error:      st.Error,
		RollbackOf: st.RollbackOf,
		Failed:     st.Status == engine.StepFailed,
		Cause:      st.Status == engine.StepFailed && st.Phase == "main" && st.Step == cause,
	}
	if st.DurationMS > 0 {
		row.Duration = formatMS(st.DurationMS)
	}
	if total > 0 {
		left := min(100, max(0, st.StartMS/total*100))
		width := max(0.5, (st.EndMS-st.StartMS)/total*100)
		if left+width > 100 {
			left = max(0, 100-width)
		}
		row.Left, row.Width, row.Bar = pct(left), pct(min(width, 100)), true
	}
	for _, a := range st.Asserts {
		c := htmlCheck{Expr: a.Expr, Result: a.Result, Error: a.Error, Class: checkClass(a.Result)}
		if a.Result != "true" && len(a.Values) > 0 {
			c.Values = strings.TrimPrefix(valuesSuffix(a.Values), " with ")
		}
		row.Asserts = append(row.Asserts, c)
	}
	for _, k := range sortedKeys(st.Outputs) {
		row.Outputs = append(row.Outputs, htmlKV{k, renderValue(st.Outputs[k])})
	}
	return row
}

// checkClass maps a guard or assert result to a CSS class.
func checkClass(result string) string {
	switch result {
	case "true":
		return "ok"
	case "false", "error":
		return "fail"
	}
	return "idle"
}

// failureCause is the main step whose failure decided the run: the one
// rollback.begin names, else the first failed main step.
func failureCause(rep runReport) string {
	if rep.RollbackBegin != nil && rep.RollbackBegin.After != "" {
		return rep.RollbackBegin.After
	}
	for _, st := range rep.Steps {
		if st.Phase == "main" && st.Status == engine.StepFailed {
			return st.Step
		}
	}
	return ""
}

// htmlPageOf prepares a report for the HTML template.
func htmlPageOf(rep runReport) htmlPage {
	p := htmlPage{
		Title:      fmt.Sprintf("%s@%d", rep.Plan.Name, rep.Plan.Version),
		RunID:      rep.RunID,
		Status:     rep.Status,
		Message:    rep.Message,
		DryRun:     rep.DryRun,
		Operator:   rep.Operator,
		Host:       rep.Host,
		Engine:     rep.Engine,
		Journal:    rep.Journal,
		Records:    rep.Records,
		PlanSHA256: rep.Plan.SHA256,
		ChainOK:    rep.ChainOK,
		Problems:   rep.ChainProblems,
		Head:       rep.Head,
		Torn:       rep.Torn,
		Commit:     rep.Commit,
		NotRun:     rep.NotRun,
		Rollback:   rep.RollbackBegin,
		ExitCode:   "none",
	}
	if p.Status == "" {
		p.Status = "no run.end (killed or still running)"
	}
	p.StatusClass = statusClass(rep.Status)
	if rep.ExitCode != nil {
		p.ExitCode = strconv.Itoa(*rep.ExitCode)
	}
	if t, err := time.Parse(time.RFC3339Nano, rep.Started); err == nil {
		p.Started = t.UTC().Format("2006-01-02 15:04:05.000 UTC")
	}
	p.Duration = formatMS(rep.DurationMS)
	for _, k := range sortedKeys(rep.Params) {
		p.Params = append(p.Params, htmlKV{k, renderValue(rep.Params[k])})
	}
	cause := failureCause(rep)
	all := slices.Concat(rep.Steps, rep.Rollback, rep.InDoubt)
	slices.SortStableFunc(all, func(a, b reportStep) int { return cmp.Compare(a.EndMS, b.EndMS) })
	for _, st := range all {
		row := htmlRow(st, rep.DurationMS, cause)
		p.Rows = append(p.Rows, row)
		if row.Failed {
			p.Failed = append(p.Failed, row.Label)
		}
		if st.Status == engine.StatusInDoubt {
			p.InDoubt = append(p.InDoubt, row.Label)
		}
		if st.Phase == "rollback" {
			p.RollbackRow = append(p.RollbackRow, row)
		}
	}
	for _, e := range rep.Events {
		p.Events = append(p.Events, htmlEvent{At: fmt.Sprintf("+%.3fs", e.AtMS/1000), Type: e.Type, Text: e.Text})
	}
	if rep.DurationMS > 0 {
		for i := range 5 {
			tick := "0"
			if i > 0 {
				tick = formatMS(rep.DurationMS * float64(i) / 4)
			}
			p.Scale = append(p.Scale, tick)
		}
	}
	return p
}

// writeHTMLReport renders rep as one self-contained HTML page.
func writeHTMLReport(w io.Writer, rep runReport) error {
	return htmlReportTemplate.Execute(w, htmlPageOf(rep))
}

var htmlReportTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="cutover">
<title>{{.Title}} {{.Status}} · {{.RunID}}</title>
<style>
:root { --ok: #1a7f37; --fail: #cf222e; --warn: #8250df; --idle: #9a6700; --line: #d0d7de; --muted: #57606a; --bg-fail: #ffebe9; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1f2328; margin: 0; padding: 24px 32px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 12.5px; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 12px; color: #fff; font-weight: 600; font-size: 13px; vertical-align: middle; }
.badge.ok { background: var(--ok); } .badge.fail { background: var(--fail); } .badge.warn { background: var(--warn); } .badge.idle { background: var(--idle); }
.message { margin: 8px 0 0; padding: 8px 12px; background: var(--bg-fail); border-left: 4px solid var(--fail); white-space: pre-wrap; overflow-wrap: anywhere; }
dl.meta { display: grid; grid-template-columns: max-content 1fr max-content 1fr; gap: 4px 16px; margin: 12px 0 0; }
dl.meta dt { color: var(--muted); } dl.meta dd { margin: 0; overflow-wrap: anywhere; }
.chain-ok { color: var(--ok); font-weight: 600; } .chain-bad { color: var(--fail); font-weight: 700; }
.timeline { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; }
.tl-row { display: grid; grid-template-columns: 220px 90px 1fr; align-items: center; gap: 8px; min-height: 22px; }
.tl-row.failed { background: var(--bg-fail); font-weight: 600; }
.tl-name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.track { position: relative; height: 14px; background: #f6f8fa; border-radius: 3px; }
.bar { position: absolute; top: 0; bottom: 0; border-radius: 3px; min-width: 3px; }
.bar.ok { background: var(--ok); } .bar.fail { background: var(--fail); } .bar.warn { background: var(--warn); } .bar.idle { background: #d4a72c; }
.scale { display: grid; grid-template-columns: 220px 90px 1fr; gap: 8px; color: var(--muted); font-size: 12px; }
.scale .ticks { display: flex; justify-content: space-between; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; white-space: nowrap; }
td.type, td.dur { white-space: nowrap; }
td.outputs { min-width: 200px; max-width: 380px; }
td.error { min-width: 130px; }
.scroll { overflow-x: auto; }
tr.failed td { background: var(--bg-fail); }
tr.failed td:first-child { border-left: 4px solid var(--fail); }
.st { font-weight: 600; } .st.ok { color: var(--ok); } .st.fail { color: var(--fail); } .st.warn { color: var(--warn); } .st.idle { color: var(--idle); }
.marker { color: var(--fail); font-weight: 700; }
.err { color: var(--fail); white-space: pre-wrap; overflow-wrap: anywhere; }
.res.ok { color: var(--ok); } .res.fail { color: var(--fail); font-weight: 600; } .res.idle { color: var(--idle); }
ul.checks { margin: 0; padding: 0; list-style: none; }
dl.kv { margin: 0; display: grid; grid-template-columns: max-content 1fr; gap: 0 8px; }
dl.kv dt { color: var(--muted); } dl.kv dd { margin: 0; white-space: pre-wrap; overflow-wrap: break-word; word-break: break-word; }
.muted { color: var(--muted); }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
</style>
</head>
<body>
<header>
<h1>{{.Title}} <span class="badge {{.StatusClass}}" id="run-status" data-status="{{.Status}}">{{.Status}}</span></h1>
<div class="muted">run <code id="run-id">{{.RunID}}</code>{{if .DryRun}} · <strong>dry run</strong>: nothing was changed{{end}}</div>
{{with .Message}}<div class="message">{{.}}</div>{{end}}
<dl class="meta">
<dt>exit code</dt><dd id="exit-code">{{.ExitCode}}</dd>
<dt>dry run</dt><dd>{{if .DryRun}}yes{{else}}no{{end}}</dd>
<dt>operator</dt><dd>{{.Operator}}</dd>
<dt>host</dt><dd>{{.Host}}</dd>
<dt>started</dt><dd>{{.Started}}</dd>
<dt>duration</dt><dd>{{.Duration}}</dd>
<dt>engine</dt><dd>{{.Engine}}</dd>
<dt>plan sha256</dt><dd><code>{{.PlanSHA256}}</code></dd>
<dt>journal</dt><dd><code>{{.Journal}}</code></dd>
<dt>hash chain</dt><dd id="chain">{{if .ChainOK}}<span class="chain-ok">intact</span>{{else}}<span class="chain-bad">BROKEN: records were edited, removed or reordered</span>{{end}} · {{.Records}} records{{if .Torn}} · torn last line ignored{{end}}<br>head <code>{{.Head}}</code></dd>
{{if .Commit}}<dt>commit point</dt><dd>{{.Commit}} passed</dd>{{end}}
{{if .Params}}<dt>params</dt><dd>{{range $i, $p := .Params}}{{if $i}}, {{end}}<code>{{$p.Key}}={{$p.Value}}</code>{{end}}</dd>{{end}}
</dl>
{{if .Problems}}<ul class="err" id="chain-problems">{{range .Problems}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{if .InDoubt}}<p class="err" id="in-doubt-steps"><span class="marker">IN DOUBT:</span> {{range $i, $f := .InDoubt}}{{if $i}}, {{end}}{{$f}}{{end}} started and never ended; check what they did before anything else</p>{{end}}
{{if .Failed}}<p class="err" id="failed-steps"><span class="marker">FAILED:</span> {{range $i, $f := .Failed}}{{if $i}}, {{end}}{{$f}}{{end}}</p>{{end}}
</header>

<h2>Timeline</h2>
<div class="timeline" id="timeline">
{{if .Scale}}<div class="scale"><span>step</span><span>duration</span><span class="ticks">{{range .Scale}}<span>{{.}}</span>{{end}}</span></div>{{end}}
{{range .Rows}}<div class="tl-row{{if .Failed}} failed{{end}}" data-step="{{.Step}}" data-status="{{.Status}}">
<span class="tl-name" title="{{.Label}} ({{.Type}}) {{.Status}}">{{if .Failed}}<span class="marker">&#9654; </span>{{end}}{{.Label}}</span>
<span class="mono">{{.Duration}}</span>
<span class="track">{{if .Bar}}<span class="bar {{.Class}}" style="left: {{.Left}}%; width: {{.Width}}%"></span>{{end}}</span>
</div>
{{end}}</div>

<h2>Steps</h2>
<div class="scroll"><table id="steps">
<thead><tr><th>step</th><th>type</th><th>status</th><th>attempts</th><th>duration</th><th>guard</th><th>asserts</th><th>error</th><th>outputs</th></tr></thead>
<tbody>
{{range .Rows}}<tr class="step {{.Class}}{{if .Failed}} failed{{end}}" data-step="{{.Step}}" data-phase="{{.Phase}}" data-status="{{.Status}}">
<td>{{if .Failed}}<span class="marker">FAILED </span>{{end}}<strong>{{.Label}}</strong>{{if .Cause}}<br><span class="marker">the run failed here</span>{{end}}{{with .RollbackOf}}<br><span class="muted">rollback of {{.}}</span>{{end}}</td>
<td class="type"><code>{{.Type}}</code></td>
<td><span class="st {{.Class}}">{{.Status}}</span></td>
<td>{{if .Attempts}}{{.Attempts}}{{end}}</td>
<td class="mono dur">{{.Duration}}</td>
<td>{{with .Guard}}<code>{{.Expr}}</code> <span class="res {{if eq .Result "true"}}ok{{else if eq .Result "error"}}fail{{else}}idle{{end}}">{{.Result}}</span>{{with .Error}}<div class="err">{{.}}</div>{{end}}{{end}}</td>
<td>{{if .Asserts}}<ul class="checks">{{range .Asserts}}<li><code>{{.Expr}}</code> <span class="res {{.Class}}">{{.Result}}</span>{{with .Values}} <span class="muted">({{.}})</span>{{end}}{{with .Error}}<div class="err">{{.}}</div>{{end}}</li>{{end}}</ul>{{end}}</td>
<td class="error">{{with .Error}}<div class="err">{{.}}</div>{{end}}</td>
<td class="outputs">{{if .Outputs}}<details{{if .Failed}} open{{end}}><summary>{{len .Outputs}} outputs</summary><dl class="kv">{{range .Outputs}}<dt>{{.Key}}</dt><dd><code>{{.Value}}</code></dd>{{end}}</dl></details>{{end}}</td>
</tr>
{{end}}{{range .NotRun}}<tr class="step idle" data-step="{{.}}" data-phase="main" data-status="not-run"><td><strong>{{.}}</strong></td><td></td><td><span class="st idle">not-run</span></td><td></td><td></td><td></td><td></td><td class="muted">never reached</td><td></td></tr>
{{end}}</tbody>
</table></div>
{{if .NotRun}}<p id="not-run"><strong>Never reached:</strong> {{range $i, $s := .NotRun}}{{if $i}}, {{end}}{{$s}}{{end}}</p>{{end}}

{{if or .Rollback .RollbackRow}}<h2>Rollback</h2>
<div id="rollback">
{{with .Rollback}}<p>After <strong>{{if .After}}{{.After}}{{else}}an interruption{{end}}</strong>: {{.Message}}</p>
<p>Undone, in this order: {{if .Pending}}{{range $i, $s := .Pending}}{{if $i}}, {{end}}<code>{{$s}}</code>{{end}}{{else}}<span class="muted">nothing</span>{{end}}</p>
{{if .Kept}}<p>Kept (before the commit point): {{range $i, $s := .Kept}}{{if $i}}, {{end}}<code>{{$s}}</code>{{end}}</p>{{end}}{{end}}
{{if .RollbackRow}}<table>
<thead><tr><th>rollback step</th><th>rollback of</th><th>status</th><th>attempts</th><th>duration</th><th>error</th></tr></thead>
<tbody>
{{range .RollbackRow}}<tr class="{{if .Failed}}failed{{end}}" data-step="{{.Step}}" data-status="{{.Status}}"><td>{{if .Failed}}<span class="marker">FAILED </span>{{end}}{{.Step}} <code>{{.Type}}</code></td><td>{{.RollbackOf}}</td><td><span class="st {{.Class}}">{{.Status}}</span></td><td>{{if .Attempts}}{{.Attempts}}{{end}}</td><td class="mono">{{.Duration}}</td><td>{{with .Error}}<div class="err">{{.}}</div>{{end}}</td></tr>
{{end}}</tbody>
</table>{{end}}
</div>{{end}}

{{if .Events}}<h2>Journal events</h2>
<table id="events">
<thead><tr><th>at</th><th>type</th><th>what</th></tr></thead>
<tbody>
{{range .Events}}<tr><td class="mono">{{.At}}</td><td><code>{{.Type}}</code></td><td>{{.Text}}</td></tr>
{{end}}</tbody>
</table>{{end}}

<footer>Generated by cutover from the run's journal. Secrets are masked in the journal; every value above is shown as journaled.</footer>
</body>
</html>
`))
