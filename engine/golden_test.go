package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgcutover/cutover/engine"
	"github.com/pgcutover/cutover/engine/journal"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden journals in testdata/golden")

// The golden journals are the documented journal format: one file per kind
// of run, every record as written, with only the volatile values replaced.
var goldenRuns = []struct {
	name   string
	dry    bool
	params map[string]string
	plan   string
	status string
}{
	{
		name:   "success",
		params: map[string]string{"environment": "staging"},
		status: engine.StatusSucceeded,
		plan: `apiVersion: cutover/v1
kind: Plan
name: golden-success
version: 3
params:
  environment: {type: string, enum: [staging, production], required: true}
  workers: {type: int, default: 4}
secrets:
  token: {from: env, name: GOLDEN_TOKEN}
steps:
  - id: check
    type: run-command
    with:
      argv: [sh, -c, 'echo token $TOKEN']
      env: {TOKEN: {secret: token}}
      read_only: true
    assert: ["outputs.exit_code == 0"]
  - id: prod_only
    type: assert
    when: "params.environment == 'production'"
    assert: ["params.workers > 8"]
  - id: migrate
    type: run-command
    with: {argv: [echo, "migrating ${{ params.environment }} with ${{ params.workers }} workers"]}
    rollback:
      - type: run-command
        with: {argv: [echo, undo migrate]}
  - id: gate
    type: assert
    assert: ["steps.migrate.outputs.exit_code == 0 && steps.prod_only.status == 'skipped'"]
finally:
  - type: run-command
    with: {argv: [echo, "ended ${{ run.status }}"]}
`,
	},
	{
		name:   "rollback",
		status: engine.StatusRolledBack,
		plan: `apiVersion: cutover/v1
kind: Plan
name: golden-rollback
version: 1
steps:
  - id: one
    type: run-command
    with: {argv: [echo, one]}
    rollback:
      - type: run-command
        with: {argv: [echo, undo one]}
  - id: skipped
    type: run-command
    when: "false"
    with: {argv: [echo, skipped]}
    rollback:
      - type: run-command
        with: {argv: [echo, undo skipped]}
  - id: flaky
    type: run-command
    retry: {attempts: 2, backoff: 1ms}
    with: {argv: [sh, -c, 'echo flaky broke >&2; exit 3']}
    rollback:
      - type: run-command
        with: {argv: [echo, undo flaky]}
  - id: never
    type: run-command
    with: {argv: [echo, never]}
finally:
  - type: run-command
    with: {argv: [echo, "ended ${{ run.status }}"]}
`,
	},
	{
		name:   "after-commit",
		status: engine.StatusFailedAfterCommit,
		plan: `apiVersion: cutover/v1
kind: Plan
name: golden-commit
version: 1
steps:
  - id: before
    type: run-command
    with: {argv: [echo, before]}
    rollback:
      - type: run-command
        with: {argv: [echo, undo before]}
  - id: switch
    type: run-command
    commit: true
    with: {argv: [echo, switch]}
    rollback:
      - type: run-command
        with: {argv: [echo, undo switch]}
  - id: between
    type: run-command
    with: {argv: [echo, between]}
    rollback:
      - type: run-command
        with: {argv: [echo, undo between]}
  - id: after
    type: assert
    assert: ["steps.between.outputs.stdout_tail == 'nothing\\n'"]
`,
	},
	{
		name:   "dry-run",
		dry:    true,
		status: engine.StatusSucceeded,
		plan: `apiVersion: cutover/v1
kind: Plan
name: golden-dry
version: 1
steps:
  - id: check
    type: run-command
    with: {argv: [echo, checked], read_only: true}
  - id: migrate
    type: run-command
    with:
      argv: [touch, DIR/marker]
      dry_run_argv: [echo, would migrate]
    rollback:
      - type: run-command
        with: {argv: [echo, undo migrate]}
  - id: switch
    type: run-command
    commit: true
    with: {argv: [touch, DIR/marker]}
    rollback:
      - type: run-command
        with: {argv: [echo, undo switch]}
  - id: after
    type: run-command
    when: "steps.switch.outputs.exit_code == 0"
    with: {argv: [touch, DIR/marker]}
    rollback:
      - type: run-command
        with: {argv: [echo, undo after]}
finally:
  - type: run-command
    with: {argv: [echo, "ended ${{ run.status }}"]}
`,
	},
}

// goldenVolatile lists the values that differ from run to run, and what
// the golden files show instead.
var goldenVolatile = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`"time":"[^"]*"`), `"time":"T"`},
	{regexp.MustCompile(`"run_id":"[^"]*"`), `"run_id":"RUN"`},
	{regexp.MustCompile(`"prev":"[0-9a-f]{64}"`), `"prev":"HASH"`},
	{regexp.MustCompile(`"sha256":"[0-9a-f]{64}"`), `"sha256":"HASH"`},
	{regexp.MustCompile(`"duration_ms":[0-9.eE+-]+`), `"duration_ms":0`},
	{regexp.MustCompile(`"operator":"[^"]*"`), `"operator":"OPERATOR"`},
	{regexp.MustCompile(`"host":"[^"]*"`), `"host":"HOST"`},
	{regexp.MustCompile(`"pid":[0-9]+`), `"pid":1`},
	{regexp.MustCompile(`"cwd":"[^"]*"`), `"cwd":"CWD"`},
	{regexp.MustCompile(`"file":"[^"]*"`), `"file":"PLAN"`},
}

func goldenNormalise(b []byte, dir string) []byte {
	b = bytes.ReplaceAll(b, []byte(dir), []byte("DIR"))
	for _, v := range goldenVolatile {
		b = v.re.ReplaceAll(b, []byte(v.repl))
	}
	return b
}

func TestGoldenJournals(t *testing.T) {
	for _, g := range goldenRuns {
		t.Run(g.name, func(t *testing.T) {
			dir := t.TempDir()
			planFile := filepath.Join(dir, "plan.yaml")
			plan := strings.ReplaceAll(g.plan, "DIR/", dir+"/")
			if err := os.WriteFile(planFile, []byte(plan), 0o600); err != nil {
				t.Fatal(err)
			}
			prog, ds := engine.Load(planFile)
			if len(ds) > 0 {
				t.Fatalf("plan: %s", ds.Format())
			}
			params, err := prog.Plan.BindParams(g.params)
			if err != nil {
				t.Fatal(err)
			}
			jdir := filepath.Join(dir, "journal")
			res := engine.Run(context.Background(), prog, engine.Options{
				Params: params, DryRun: g.dry, JournalDir: jdir,
				Operator: "operator", Host: "host", Version: "test",
				LookupEnv: func(k string) (string, bool) {
					if k == "GOLDEN_TOKEN" {
						return "golden-secret-value", true
					}
					return "", false
				},
			})
			if res.Status != g.status {
				t.Fatalf("status %s, want %s (%v)", res.Status, g.status, res.Err)
			}
			if want := filepath.Join(jdir, res.RunID+journal.Ext); res.Journal != want {
				t.Errorf("journal at %s, want %s", res.Journal, want)
			}
			if _, err := os.Stat(filepath.Join(dir, "marker")); err == nil {
				t.Errorf("a mutating step ran")
			}

			// The real chain, before anything is normalised.
			rep, err := journal.Verify(res.Journal)
			if err != nil || !rep.OK || rep.Torn != nil {
				t.Fatalf("journal does not verify: %v %+v", err, rep)
			}
			raw, err := os.ReadFile(res.Journal)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(raw, []byte("golden-secret-value")) {
				t.Errorf("the secret is in the journal")
			}
			if n := bytes.Count(raw, []byte("\n")); n != rep.Records {
				t.Errorf("%d lines, %d records", n, rep.Records)
			}
			checkVolatile(t, raw, res.RunID)
			got := goldenNormalise(raw, dir)

			golden := filepath.Join("testdata", "golden", g.name+".jsonl")
			if *updateGolden {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("journal differs from %s (run with -update if the change is intended):\n%s", golden, goldenLineDiff(string(want), string(got)))
			}
		})
	}
}

// checkVolatile checks the values normalising hides: every record has a
// UTC time, in order, and run.start names the run.
func checkVolatile(t *testing.T, raw []byte, runID string) {
	t.Helper()
	var last time.Time
	for i, line := range bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n")) {
		var rec engine.Record
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		at, err := time.Parse(time.RFC3339Nano, rec.Time)
		if err != nil || !strings.HasSuffix(rec.Time, "Z") {
			t.Errorf("line %d: time %q is not an RFC 3339 UTC time", i+1, rec.Time)
		}
		if at.Before(last) {
			t.Errorf("line %d: time %s is before the previous record's", i+1, rec.Time)
		}
		last = at
		if rec.Type == engine.RecRunStart && rec.RunID != runID {
			t.Errorf("run.start run_id %q, want %q", rec.RunID, runID)
		}
	}
}

// goldenLineDiff shows the lines that differ between two journals.
func goldenLineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want: %s\n  got:  %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}
