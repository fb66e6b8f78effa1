package schema_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgcutover/cutover/schema"
)

// fakeTypes is a small step registry with inputs of every kind a step may
// declare, including secret-capable and reference fields.
type fakeTypes map[string][]schema.Field

func (f fakeTypes) StepInputs(typ string) ([]schema.Field, bool) {
	fields, ok := f[typ]
	return fields, ok
}

func (f fakeTypes) StepTypeNames() []string { return []string{"exec", "sql"} }

var testTypes = fakeTypes{
	"exec": {
		{Name: "argv", Kind: schema.StringList, Required: true, Doc: "program to run"},
		{Name: "env", Kind: schema.StringMap, Secret: true, Doc: "environment"},
		{Name: "dir", Kind: schema.String, Doc: "working directory"},
		{Name: "count", Kind: schema.Int, Doc: "how many"},
		{Name: "flag", Kind: schema.Bool, Doc: "a switch"},
		{Name: "ratio", Kind: schema.Double, Doc: "a fraction"},
		{Name: "wait", Kind: schema.Duration, Doc: "how long"},
		{Name: "codes", Kind: schema.IntList, Doc: "exit codes"},
		{Name: "mode", Kind: schema.String, Enum: []string{"fast", "slow"}, Doc: "speed"},
		{Name: "raw", Kind: schema.String, Literal: true, Doc: "no templates"},
	},
	"sql": {
		{Name: "target", Kind: schema.String, Ref: schema.RefTarget, Required: true, Doc: "where to connect"},
		{Name: "password", Kind: schema.String, Secret: true, Doc: "password"},
		{Name: "key", Kind: schema.String, Ref: schema.RefSecret, Doc: "a secret's name"},
	},
}

// header is the first four lines of every test plan.
const header = "apiVersion: cutover/v1\nkind: Plan\nname: p\nversion: 1\n"

// oneStep is a valid steps section for plans that test something else.
const oneStep = "steps:\n  - id: a\n    type: exec\n    with: {argv: [x]}\n"

type wantDiag struct {
	line, col int
	msg       string // a substring of the message
}

func decode(t *testing.T, src string) (*schema.Plan, schema.Diagnostics) {
	t.Helper()
	return schema.Decode("plan.yaml", []byte(src), testTypes)
}

func checkDiags(t *testing.T, got schema.Diagnostics, want []wantDiag) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		g, w := got[i], want[i]
		ok = g.Line == w.line && g.Col == w.col && strings.Contains(g.Msg, w.msg)
	}
	if ok {
		for _, d := range got {
			if d.File != "plan.yaml" {
				t.Errorf("diagnostic names file %q, want plan.yaml", d.File)
			}
		}
		return
	}
	var b strings.Builder
	for _, d := range got {
		b.WriteString("\n\t" + d.String())
	}
	var w strings.Builder
	for _, d := range want {
		w.WriteString("\n\t" + d.String())
	}
	t.Errorf("got %d diagnostics:%s\nwant %d:%s", len(got), b.String(), len(want), w.String())
}

func (w wantDiag) String() string {
	return "plan.yaml:" + strconv.Itoa(w.line) + ":" + strconv.Itoa(w.col) + ": …" + w.msg + "…"
}

func TestDecodeDiagnostics(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []wantDiag
	}{
		{
			name: "valid plan",
			src:  header + "description: \"a\tb\"\n" + oneStep,
		},
		{
			name: "unknown top-level key",
			src:  header + "descripton: hi\n" + oneStep,
			want: []wantDiag{{5, 1, `unknown key "descripton" in plan (did you mean "description"?)`}},
		},
		{
			name: "unknown top-level key far from any",
			src:  header + "owner: dba\n" + oneStep,
			want: []wantDiag{{5, 1, `unknown key "owner" in plan (allowed: apiVersion, kind, name, version, description, params, secrets, targets, defaults, steps, finally)`}},
		},
		{
			name: "unknown key in a param",
			src:  header + "params:\n  env: {type: string, requird: true}\n" + oneStep,
			want: []wantDiag{{6, 23, `unknown key "requird" in param env (did you mean "required"?)`}},
		},
		{
			name: "unknown key in a secret",
			src:  header + "secrets:\n  tok: {from: env, nmae: TOKEN}\n" + oneStep,
			want: []wantDiag{
				{6, 8, "secret tok (from: env) needs name"},
				{6, 20, `unknown key "nmae" in secret tok (did you mean "name"?)`},
			},
		},
		{
			name: "unknown key in a target",
			src:  header + "targets:\n  db: {env_prefix: PG, sslmod: require}\n" + oneStep,
			want: []wantDiag{{6, 24, `unknown key "sslmod" in target db (did you mean "sslmode"?)`}},
		},
		{
			name: "unknown key in a step",
			src:  header + oneStep + "    whn: params.x\n",
			want: []wantDiag{{9, 5, `unknown key "whn" in step (did you mean "when"?)`}},
		},
		{
			name: "unknown key in a retry",
			src:  header + oneStep + "    retry: {attempts: 3, backof: 1s}\n",
			want: []wantDiag{{9, 26, `unknown key "backof" in retry (did you mean "backoff"?)`}},
		},
		{
			name: "unknown key in with",
			src:  header + "steps:\n  - id: a\n    type: exec\n    with: {argv: [x], dri: /tmp}\n",
			want: []wantDiag{{8, 23, `unknown key "dri" in with of exec (did you mean "dir"?)`}},
		},
		{
			name: "unknown key in defaults",
			src:  header + "defaults: {timeout: 1m, retries: 3}\n" + oneStep,
			want: []wantDiag{{5, 25, `unknown key "retries" in defaults (allowed: timeout, retry)`}},
		},
		{
			name: "string where an integer is expected",
			src:  "apiVersion: cutover/v1\nkind: Plan\nname: p\nversion: \"3\"\n" + oneStep,
			want: []wantDiag{{4, 10, `version must be an integer; found the string "3"`}},
		},
		{
			name: "string where an integer input is expected",
			src:  header + "steps:\n  - id: a\n    type: exec\n    with: {argv: [x], count: \"5\"}\n",
			want: []wantDiag{{8, 30, `with.count must be an integer; found the string "5"`}},
		},
		{
			name: "bool where a string is expected",
			src:  header + "description: true\n" + oneStep,
			want: []wantDiag{{5, 14, "description must be a string; found a boolean (true) (quote it if you mean the text)"}},
		},
		{
			name: "bool where a string input is expected",
			src:  header + "steps:\n  - id: a\n    type: exec\n    with: {argv: [x, false]}\n",
			want: []wantDiag{{8, 22, "with.argv[1] must be a string; found a boolean (false) (quote it if you mean the text)"}},
		},
		{
			name: "list where a mapping is expected",
			src:  header + "defaults: [timeout]\n" + oneStep,
			want: []wantDiag{{5, 11, "defaults must be a mapping; found a list"}},
		},
		{
			name: "list where with is expected",
			src:  header + "steps:\n  - id: a\n    type: exec\n    with: [argv]\n",
			want: []wantDiag{
				{8, 11, "with of exec must be a mapping; found a list"},
				{8, 11, "step a (exec) needs with.argv: program to run"},
			},
		},
		{
			name: "list where params are expected",
			src:  header + "params: [env]\n" + oneStep,
			want: []wantDiag{{5, 9, "params must be a mapping of names; found a list"}},
		},
		{
			name: "mapping where steps are expected",
			src:  header + "steps: {a: 1}\n",
			want: []wantDiag{{5, 8, "steps must be a list of steps; found a mapping"}},
		},
		{
			name: "wrong input kinds",
			src: header + "steps:\n  - id: a\n    type: exec\n    with:\n      argv: [x]\n" +
				"      flag: \"yes\"\n" + // line 10
				"      ratio: abc\n" +
				"      wait: 10\n" +
				"      codes: [0, x]\n" +
				"      env: [A]\n" +
				"      mode: fats\n", // line 15
			want: []wantDiag{
				{10, 13, `with.flag must be true or false; found the string "yes"`},
				{11, 14, `with.ratio must be a number; found the string "abc"`},
				{12, 13, "with.wait must be a duration such as 30s or 10m; found an integer (10)"},
				{13, 18, `with.codes[1] must be an integer; found the string "x"`},
				{14, 12, "with.env must be a mapping of names; found a list"},
				{15, 13, `with.mode is "fats"; want one of fast, slow (did you mean "fast"?)`},
			},
		},
		{
			name: "null input",
			src:  header + "steps:\n  - id: a\n    type: exec\n    with: {argv: [x], dir: }\n",
			want: []wantDiag{{8, 28, "with.dir must be a string; found nothing (null)"}},
		},
		{
			name: "duplicate top-level key",
			src:  header + "name: q\n" + oneStep,
			want: []wantDiag{{5, 1, `key "name" is set twice in plan (first at line 3)`}},
		},
		{
			name: "duplicate key in with",
			src:  header + "steps:\n  - id: a\n    type: exec\n    with: {argv: [x], argv: [y]}\n",
			want: []wantDiag{{8, 23, `key "argv" is set twice in with of exec (first at line 8)`}},
		},
		{
			name: "duplicate param",
			src:  header + "params:\n  env: {}\n  env: {type: int}\n" + oneStep,
			want: []wantDiag{{7, 3, `"env" is declared twice in params (first at line 6)`}},
		},
		{
			name: "duplicate step id",
			src:  header + oneStep + "  - id: a\n    type: exec\n    with: {argv: [y]}\n",
			want: []wantDiag{{9, 9, `step id "a" is already used at line 6`}},
		},
		{
			name: "step id with a dash",
			src:  header + "steps:\n  - id: my-step\n    type: exec\n    with: {argv: [x]}\n",
			want: []wantDiag{{6, 9, `step id "my-step" must match [a-z][a-z0-9_]* so that CEL can name it (steps.my_step)`}},
		},
		{
			name: "step id starting with a digit",
			src:  header + "steps:\n  - id: 1abc\n    type: exec\n    with: {argv: [x]}\n",
			want: []wantDiag{{6, 9, `step id "1abc" must match [a-z][a-z0-9_]*`}},
		},
		{
			name: "step id that is a reserved word",
			src:  header + "steps:\n  - id: in\n    type: exec\n    with: {argv: [x]}\n",
			want: []wantDiag{{6, 9, `step id "in" is a reserved word in expressions; choose another`}},
		},
		{
			name: "step without an id",
			src:  header + "steps:\n  - type: exec\n    with: {argv: [x]}\n",
			want: []wantDiag{{6, 5, "step needs an id"}},
		},
		{
			name: "unknown step type",
			src:  header + "steps:\n  - id: a\n    type: exe\n    with: {argv: [x]}\n",
			want: []wantDiag{{7, 11, `unknown step type "exe" (did you mean "exec"?); run ` + "`cutover steps`" + ` for the list`}},
		},
		{
			name: "step without a type",
			src:  header + "steps:\n  - id: a\n    with: {argv: [x]}\n",
			want: []wantDiag{{6, 5, "step a needs a type"}},
		},
		{
			name: "missing required input",
			src:  header + "steps:\n  - id: a\n    type: exec\n",
			want: []wantDiag{{6, 5, "step a (exec) needs with.argv: program to run"}},
		},
		{
			name: "undefined secret and target references",
			src: header + "secrets:\n  token: {from: env, name: TOKEN}\ntargets:\n  db: {env_prefix: PG}\n" +
				"steps:\n  - id: a\n    type: sql\n    with:\n" +
				"      target: dbb\n" + // line 13
				"      password: {secret: tokn}\n" +
				"      key: nope\n" +
				"  - id: b\n    type: exec\n    with:\n      argv: [x]\n" +
				"      env: {PGPASSWORD: {secret: tokem}}\n", // line 20
			want: []wantDiag{
				{13, 15, `with.target refers to undefined target "dbb" (did you mean "db"?)`},
				{14, 26, `with.password refers to undefined secret "tokn" (did you mean "token"?)`},
				{15, 12, `with.key refers to undefined secret "nope"`},
				{20, 34, `with.env.PGPASSWORD refers to undefined secret "tokem" (did you mean "token"?)`},
			},
		},
		{
			name: "secret written as a plain string",
			src:  header + "targets:\n  db: {host: h, password: hunter2}\n" + oneStep,
			want: []wantDiag{{6, 27, "target db password must come from a secret: write {secret: name}; found the string \"hunter2\""}},
		},
		{
			name: "target url from an undefined secret",
			src:  header + "targets:\n  db: {url: {secret: db_url}}\n" + oneStep,
			want: []wantDiag{{6, 22, `target db url refers to undefined secret "db_url"`}},
		},
		{
			name: "target mixing url and host",
			src:  header + "secrets:\n  url: {from: env, name: DB_URL}\ntargets:\n  db: {url: {secret: url}, host: db1}\n" + oneStep,
			want: []wantDiag{{8, 7, "target db mixes url and parts (host); use one way"}},
		},
		{
			name: "target with no connection",
			src:  header + "targets:\n  db: {sslmode: verify-full}\n" + oneStep,
			want: []wantDiag{{6, 7, "target db needs url: {secret: …}, connection parts (host, dbname, user, password) or env_prefix"}},
		},
		{
			name: "target port and sslmode",
			src:  header + "targets:\n  db: {host: h, port: 70000, sslmode: verify_full}\n" + oneStep,
			want: []wantDiag{
				{6, 23, "port 70000 is not between 1 and 65535"},
				{6, 39, `sslmode "verify_full" is not one of disable, allow, prefer, require, verify-ca, verify-full (did you mean "verify-full"?)`},
			},
		},
		{
			name: "secret missing its source key",
			src:  header + "secrets:\n  key: {from: file}\n" + oneStep,
			want: []wantDiag{{6, 8, "secret key (from: file) needs path"}},
		},
		{
			name: "secret without from",
			src:  header + "secrets:\n  key: {path: /run/key}\n" + oneStep,
			want: []wantDiag{{6, 8, "secret key needs from: env, file or command"}},
		},
		{
			name: "secret from an unknown source",
			src:  header + "secrets:\n  key: {from: vault, path: kv/x}\n" + oneStep,
			want: []wantDiag{{6, 15, "secret key: from must be env, file or command; found \"vault\""}},
		},
		{
			name: "param with a bad type",
			src:  header + "params:\n  jobs: {type: integer}\n" + oneStep,
			want: []wantDiag{{6, 16, `param type "integer" is not one of string, int, bool, duration, list`}},
		},
		{
			name: "param type near miss",
			src:  header + "params:\n  jobs: {type: itn}\n" + oneStep,
			want: []wantDiag{{6, 16, `param type "itn" is not one of string, int, bool, duration, list (did you mean "int"?)`}},
		},
		{
			name: "param default not matching its type",
			src: header + "params:\n" +
				"  jobs: {type: int, default: four}\n" +
				"  dry: {type: bool, default: maybe}\n" +
				"  wait: {type: duration, default: 5}\n" +
				"  hosts: {type: list, default: {a: b}}\n" +
				oneStep,
			want: []wantDiag{
				{6, 30, `default of param jobs: "four" is not an integer`},
				{7, 30, `default of param dry: "maybe" is not true or false`},
				{8, 35, `default of param wait: "5" is not a duration such as 30s or 10m`},
				{9, 32, "default of param hosts must be a list(string); found a mapping"},
			},
		},
		{
			name: "enum default not in the enum",
			src:  header + "params:\n  env: {type: string, enum: [staging, production], default: stagin}\n" + oneStep,
			want: []wantDiag{{6, 61, `default of param env: "stagin" is not one of staging, production (did you mean "staging"?)`}},
		},
		{
			name: "enum on a non-string param",
			src:  header + "params:\n  jobs: {type: int, enum: [a]}\n" + oneStep,
			want: []wantDiag{{6, 9, "enum is only allowed on string params"}},
		},
		{
			name: "required param with a default",
			src:  header + "params:\n  env: {required: true, default: staging}\n" + oneStep,
			want: []wantDiag{{6, 34, "param env is required, so a default would never be used"}},
		},
		{
			name: "param name not usable in expressions",
			src:  header + "params:\n  dry-run: {type: bool}\n" + oneStep,
			want: []wantDiag{{6, 3, `param name "dry-run" must match [a-z][a-z0-9_]* (it is used in CEL as params.dry-run)`}},
		},
		{
			name: "a list at top level",
			src:  "- id: a\n  type: exec\n",
			want: []wantDiag{{1, 1, "a plan is a mapping with apiVersion, kind, name, version and steps; found a list"}},
		},
		{
			name: "a string at top level",
			src:  "just some text\n",
			want: []wantDiag{{1, 1, `a plan is a mapping with apiVersion, kind, name, version and steps; found the string "just some text"`}},
		},
		{
			name: "missing header fields",
			src:  "# comment\n" + oneStep,
			want: []wantDiag{
				{2, 1, "missing apiVersion: cutover/v1"},
				{2, 1, "missing kind: Plan"},
				{2, 1, "missing name"},
				{2, 1, "missing version (an integer bumped on every change)"},
			},
		},
		{
			name: "wrong header values",
			src:  "apiVersion: cutover/v2\nkind: plan\nname: Orders\nversion: 0\n" + oneStep,
			want: []wantDiag{
				{1, 13, `apiVersion is "cutover/v2"; this engine reads "cutover/v1"`},
				{2, 7, `kind is "plan"; want Plan`},
				{3, 7, `name "Orders" must be lower case letters, digits, '.', '_' or '-'`},
				{4, 10, "version must be 1 or more"},
			},
		},
		{
			name: "missing steps",
			src:  header,
			want: []wantDiag{{1, 1, "missing steps: a plan needs at least one step"}},
		},
		{
			name: "empty steps",
			src:  header + "steps: []\n",
			want: []wantDiag{{5, 8, "steps is empty: a plan needs at least one step"}},
		},
		{
			name: "commit and rollback outside the main steps",
			src: header + oneStep + "    rollback:\n      - type: exec\n        commit: true\n        with: {argv: [u]}\n" +
				"        rollback: []\n", // line 13
			want: []wantDiag{
				{11, 9, "commit: only steps in the main steps list can be a commit point"},
				{13, 9, "a rollback step cannot have its own rollback block"},
			},
		},
		{
			name: "empty expressions",
			src:  header + oneStep + "    when: \" \"\n    assert: [\"\"]\n",
			want: []wantDiag{
				{9, 11, "when is empty"},
				{10, 14, "assert[0] is empty"},
			},
		},
		{
			name: "templates",
			src: header + "steps:\n  - id: a\n    type: exec\n    with:\n" +
				"      argv: [\"${{ params.x\", \"${{ }}\"]\n" + // line 9
				"      count: \"${{ params.n }} items\"\n",
			want: []wantDiag{
				{9, 15, "with.argv[0]: ${{ is not closed by }}"},
				{9, 31, "with.argv[1]: empty ${{ }}"},
				{10, 14, "with.count is a int; a template here must be exactly one ${{ expression }}"},
			},
		},
		{
			name: "tab in indentation",
			src:  header + "steps:\n  - id: a\n \ttype: exec\n",
			want: []wantDiag{{7, 2, "tab character in indentation; YAML indents with spaces"}},
		},
		{
			name: "tabs on several lines",
			src:  header + "steps:\n\t- id: a\n    \ttype: exec\n",
			want: []wantDiag{
				{6, 1, "tab character in indentation; YAML indents with spaces"},
				{7, 5, "tab character in indentation; YAML indents with spaces"},
			},
		},
		{
			name: "invalid UTF-8",
			src:  header + "description: \"h\u00e9llo \xff\"\n" + oneStep,
			want: []wantDiag{{5, 21, "plan is not valid UTF-8 text"}},
		},
		{
			name: "invalid UTF-8 at the start",
			src:  "\xc3(apiVersion: cutover/v1\n",
			want: []wantDiag{{1, 1, "plan is not valid UTF-8 text"}},
		},
		{
			name: "empty file",
			src:  "",
			want: []wantDiag{{1, 1, "plan is empty"}},
		},
		{
			name: "only comments",
			src:  "# nothing yet\n\n",
			want: []wantDiag{{1, 1, "plan is empty"}},
		},
		{
			name: "two documents",
			src:  header + oneStep + "---\n" + header + oneStep,
			want: []wantDiag{{9, 1, "plan file holds more than one YAML document; put one plan in each file"}},
		},
		{
			name: "YAML syntax error",
			src:  header + "description: a: b\n" + oneStep,
			want: []wantDiag{{5, 1, "YAML syntax: mapping values are not allowed in this context"}},
		},
		{
			name: "non-string key",
			src:  header + "steps:\n  - id: a\n    type: exec\n    with: {argv: [x], [k]: v}\n",
			want: []wantDiag{{8, 23, "keys in with of exec must be plain strings"}},
		},
		{
			name: "merge key that is not a mapping",
			src:  header + "steps:\n  - id: a\n    type: exec\n    <<: x\n    with: {argv: [x]}\n",
			want: []wantDiag{{8, 9, "a merge key (<<) needs a mapping"}},
		},
		{
			name: "alias used as a value",
			src:  header + "x: &argv [a, b]\n" + "steps:\n  - id: a\n    type: exec\n    with: {argv: *argv}\n",
			want: []wantDiag{{5, 1, `unknown key "x" in plan`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ds := decode(t, tt.src)
			checkDiags(t, ds, tt.want)
			if len(tt.want) == 0 && p == nil {
				t.Error("a valid plan decoded to nil")
			}
		})
	}
}

// TestDecodeSnippet checks the snippet under a diagnostic: the source line and
// a caret under the column, with tabs kept so that it lines up.
func TestDecodeSnippet(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string
	}{
		{
			name: "caret under the column",
			src:  header + "steps:\n  - id: my-step\n    type: exec\n    with: {argv: [x]}\n",
			want: " 6 |   - id: my-step\n   |         ^\n",
		},
		{
			name: "wide line numbers",
			src:  header + "\n\n\n\n\n" + "steps:\n  - id: 1a\n    type: exec\n    with: {argv: [x]}\n",
			want: " 11 |   - id: 1a\n    |         ^\n",
		},
		{
			name: "caret on a tab in indentation",
			src:  header + "steps:\n  - id: a\n \ttype: exec\n",
			want: " 7 |  \ttype: exec\n   |  ^\n",
		},
		{
			name: "tab before the column kept",
			src:  "apiVersion: cutover/v1\nkind: Plan\nname: p\nversion:\t\"1\"\n" + oneStep,
			want: " 4 | version:\t\"1\"\n   |         \t^\n",
		},
		{
			name: "non-ASCII before the column",
			src:  header + "steps:\n  - id: a\n    type: exec\n    with: {argv: [\"h\u00e9\"], mode: s\u00e9}\n",
			want: " 8 |     with: {argv: [\"h\u00e9\"], mode: s\u00e9}\n   |                                ^\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ds := decode(t, tt.src)
			if len(ds) != 1 {
				t.Fatalf("got %d diagnostics, want 1:\n%s", len(ds), ds.Format())
			}
			if ds[0].Snippet != tt.want {
				t.Errorf("snippet:\n%q\nwant:\n%q", ds[0].Snippet, tt.want)
			}
		})
	}
}

// knownPosBugs are position and snippet cases, by name, that fail because of
// a defect in non-test code; each is skipped until the defect is fixed.
var knownPosBugs = map[string]string{}

// TestDecodeCaretUnderToken checks, whatever the line holds, that the caret
// of the snippet sits under the text the diagnostic is about.
func TestDecodeCaretUnderToken(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		token string
	}{
		{"plain", "apiVersion: cutover/v2\nkind: Plan\nname: p\nversion: 1\n" + oneStep, "cutover/v2"},
		{"after a tab", "apiVersion:\tcutover/v2\nkind: Plan\nname: p\nversion: 1\n" + oneStep, "cutover/v2"},
		{"after non-ASCII", header + "description: \"caf\u00e9\"\nx\u00e9: 1\n" + oneStep, "x\u00e9"},
		{"after a byte order mark", "\ufeffapiVersion: cutover/v2\nkind: Plan\nname: p\nversion: 1\n" + oneStep, "cutover/v2"},
		{"long line", header + "steps:\n  - id: a\n    type: exec\n    with: {argv: [" + strings.Repeat("arg, ", 40) + "x], mod: fast}\n", "mod:"},
		{"long line with non-ASCII", header + "steps:\n  - id: a\n    type: exec\n    with: {argv: [" + strings.Repeat("\u00e9t\u00e9, ", 40) + "x], mod: fast}\n", "mod:"},
		{"CRLF line ends", "apiVersion: cutover/v2\r\nkind: Plan\r\nname: p\r\nversion: 1\r\n" + oneStep, "cutover/v2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if bug, ok := knownPosBugs[tt.name]; ok {
				t.Skip("bug: " + bug)
			}
			_, ds := decode(t, tt.src)
			if len(ds) != 1 {
				t.Fatalf("got %d diagnostics, want 1:\n%s", len(ds), ds.Format())
			}
			lines := strings.Split(ds[0].Snippet, "\n")
			if len(lines) != 3 {
				t.Fatalf("snippet %q is not two lines", ds[0].Snippet)
			}
			_, text, ok1 := strings.Cut(lines[0], " | ")
			_, caret, ok2 := strings.Cut(lines[1], " | ")
			if !ok1 || !ok2 || !strings.HasSuffix(caret, "^") {
				t.Fatalf("snippet %q has no caret", ds[0].Snippet)
			}
			runes := []rune(text)
			at := len([]rune(caret)) - 1
			if at > len(runes) || !strings.HasPrefix(string(runes[at:]), tt.token) {
				t.Errorf("caret is not under %q:\n%s", tt.token, ds[0].Snippet)
			}
		})
	}
}

// TestDecodeEdgeCases holds cases the decoder gets wrong at the time of
// writing; bug names the defect and skips the case until it is fixed.
func TestDecodeEdgeCases(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []wantDiag
	}{
		{
			// The value is present but malformed: one diagnostic, not a
			// second one claiming the input is missing.
			name: "malformed required input is not also missing",
			src:  header + "steps:\n  - id: a\n    type: exec\n    with: {argv: x}\n",
			want: []wantDiag{{8, 18, `with.argv must be a list of strings; found the string "x"`}},
		},
		{
			// yaml.v3 reports the line of the unclosed flow sequence
			// 0-based; the decoder passes it on unchanged.
			name: "YAML syntax error line of an unclosed flow sequence",
			src:  header + "steps:\n  - id: a\n    type: exec\n    with: {argv: [x}\n",
			want: []wantDiag{{8, 5, "YAML syntax: did not find expected ',' or ']'"}},
		},
		{
			name: "YAML syntax error line of a misindented step key",
			src:  header + "steps:\n  - id: a\n   type: exec\n",
			want: []wantDiag{{7, 4, "YAML syntax: did not find expected '-' indicator"}},
		},
		{
			name: "unknown anchor is positioned",
			src:  header + "steps: *steps\n",
			want: []wantDiag{{5, 8, "YAML: alias *steps refers to no anchor &steps"}},
		},
		{
			// Merge keys work in mappings of names as they do in fixed
			// mappings: a shared env block extended by one step.
			name: "merge key in a map input",
			src: header + "secrets:\n  url: {from: env, name: DB_URL}\nsteps:\n  - id: a\n    type: exec\n" +
				"    with: {argv: [x], env: &env {DATABASE_URL: {secret: url}, TZ: UTC}}\n" +
				"  - id: b\n    type: exec\n    with:\n      argv: [x]\n      env:\n        <<: *env\n        EXTRA: \"1\"\n",
		},
		{
			// Explicit keys override merged ones, wherever the << is.
			name: "merge key before an overriding key",
			src: header + "steps:\n  - &base\n    id: a\n    type: exec\n    with: {argv: [x]}\n" +
				"  - <<: *base\n    id: b\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ds := decode(t, tt.src)
			checkDiags(t, ds, tt.want)
		})
	}
}

func TestDecodeTargetMixMessage(t *testing.T) {
	src := header + "secrets:\n  url: {from: env, name: DB_URL}\ntargets:\n  db: {url: {secret: url}, host: db1}\n" + oneStep
	_, ds := decode(t, src)
	if len(ds) != 1 {
		t.Fatalf("got %d diagnostics, want 1:\n%s", len(ds), ds.Format())
	}
	// Only url and host are set: the message must not blame env_prefix.
	if strings.Contains(ds[0].Msg, "env_prefix") {
		t.Errorf("message names env_prefix, which the target does not set: %s", ds[0].Msg)
	}
}

func TestDecodeMergeKeys(t *testing.T) {
	src := header + "steps:\n  - &base\n    id: a\n    type: exec\n    with: {argv: [x], dir: /srv}\n" +
		"  - id: b\n    <<: *base\n    timeout: 1m\n"
	p, ds := decode(t, src)
	checkDiags(t, ds, nil)
	if len(p.Steps) != 2 {
		t.Fatalf("got %d steps, want 2", len(p.Steps))
	}
	b := p.Steps[1]
	if b.ID != "b" || b.Type != "exec" || b.Timeout != time.Minute {
		t.Errorf("merged step: id %q type %q timeout %v, want b exec 1m0s", b.ID, b.Type, b.Timeout)
	}
	if v := b.With["dir"]; v == nil || v.Tmpl == nil || v.Tmpl.Raw != "/srv" {
		t.Errorf("merged step did not inherit with.dir: %+v", v)
	}
}

func TestDecodeValues(t *testing.T) {
	src := header + "secrets:\n  tok: {from: env, name: TOKEN}\ntargets:\n  db: {env_prefix: PG}\n" +
		"steps:\n  - id: a\n    type: exec\n    with:\n" +
		"      argv: [echo, \"n=${{ params.n }}\"]\n" + // line 13
		"      env: {TOKEN: {secret: tok}, MODE: plain}\n" +
		"      count: 0x10\n" +
		"      flag: true\n" +
		"      ratio: 1\n" +
		"      wait: 1m30s\n" +
		"      codes: [0, 3]\n" +
		"      raw: \"${{ not a template }}\"\n" +
		"    retry: {attempts: 3, backoff: 2s, max_backoff: 1m}\n" +
		"  - id: b\n    type: sql\n    with: {target: db, password: {secret: tok}, key: tok}\n"
	p, ds := decode(t, src)
	checkDiags(t, ds, nil)
	w := p.Steps[0].With
	if got := w["argv"].List[1].Tmpl.Parts; len(got) != 2 || got[0].Lit != "n=" || got[1].Expr == nil || got[1].Expr.Src != " params.n " {
		t.Errorf("argv[1] template parts: %+v", got)
	}
	if got := w["env"].Map; len(got) != 2 || got[0].Key != "TOKEN" || got[0].Val.Secret != "tok" || got[1].Val.Tmpl.Raw != "plain" {
		t.Errorf("env: %+v", got)
	}
	if got := w["count"].Int; got != 16 {
		t.Errorf("count = %d, want 16", got)
	}
	if !w["flag"].Bool || w["ratio"].Double != 1 || w["wait"].Dur != 90*time.Second {
		t.Errorf("flag %v ratio %v wait %v", w["flag"].Bool, w["ratio"].Double, w["wait"].Dur)
	}
	if got := w["codes"].List; len(got) != 2 || got[1].Int != 3 || got[1].Pos != (schema.Pos{Line: 19, Col: 18}) {
		t.Errorf("codes: %+v", got)
	}
	if got := w["raw"].Tmpl; !got.IsLiteral() || got.Raw != "${{ not a template }}" {
		t.Errorf("raw: %+v", got)
	}
	if r := p.Steps[0].Retry; r == nil || *r != (schema.Retry{Attempts: 3, Backoff: 2 * time.Second, MaxBackoff: time.Minute}) {
		t.Errorf("retry: %+v", r)
	}
	if r := p.Defaults.Retry; r != (schema.Retry{Attempts: 1, Backoff: time.Second, MaxBackoff: 30 * time.Second}) {
		t.Errorf("default retry: %+v", r)
	}
	sw := p.Steps[1].With
	if sw["target"].Tmpl.Raw != "db" || sw["password"].Secret != "tok" || sw["key"].Tmpl.Raw != "tok" {
		t.Errorf("sql inputs: %+v", sw)
	}
	if len(p.SHA256) != 64 || !bytes.Equal(p.Source, []byte(src)) {
		t.Errorf("source %d bytes, sha %q", len(p.Source), p.SHA256)
	}
}

func TestDecodeAliasBomb(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string // a substring of some diagnostic
	}{
		{
			// Merge keys make the decoder walk every expansion.
			name: "nested merge keys",
			src:  bomb("x%d: &a%d {<<: [%s]}\n", "x0: &a0 {timeout: 1s}\n", "defaults: *a9\n"+oneStep),
			want: "through aliases",
		},
		{
			// Nested lists are only looked at one level deep, but must
			// not be expanded either.
			name: "nested lists",
			src:  bomb("x%d: &a%d [%s]\n", "x0: &a0 [a, b, c, d, e, f, g, h, i, j]\n", "steps:\n  - id: a\n    type: exec\n    with: {argv: *a9, codes: *a9}\n"),
			want: "must be a string; found a list",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := decodeWithin(t, tt.src, 20*time.Second)
			if len(ds) == 0 || len(ds) > 50 {
				t.Fatalf("got %d diagnostics, want a few:\n%s", len(ds), ds.Error())
			}
			found := false
			for _, d := range ds {
				found = found || strings.Contains(d.Msg, tt.want)
			}
			if !found {
				t.Errorf("no diagnostic mentions %q:\n%s", tt.want, ds.Error())
			}
		})
	}
}

// decodeWithin decodes src, failing the test if that takes longer than limit.
func decodeWithin(t *testing.T, src string, limit time.Duration) schema.Diagnostics {
	t.Helper()
	done := make(chan schema.Diagnostics, 1)
	go func() {
		_, ds := schema.Decode("plan.yaml", []byte(src), testTypes)
		done <- ds
	}()
	select {
	case ds := <-done:
		return ds
	case <-time.After(limit):
		t.Fatalf("decoding a %d-byte plan did not return within %v", len(src), limit)
		return nil
	}
}

// TestDecodeManyProblems checks that a large plan with a problem on every
// line is still reported in bounded time.
func TestDecodeManyProblems(t *testing.T) {
	tests := []struct {
		name string
		src  string
	}{
		{"tab on every line", strings.Repeat("\tx: 1\n", 200_000)},
		{"unknown key on every line", header + oneStep + strings.Repeat("key: 1\n", 200_000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := decodeWithin(t, tt.src, 10*time.Second)
			if len(ds) == 0 {
				t.Fatal("no diagnostics")
			}
		})
	}
}

// bomb builds a plan with ten levels of ten references each.
func bomb(level, first, tail string) string {
	var b strings.Builder
	b.WriteString(header)
	b.WriteString(first)
	for i := 1; i <= 9; i++ {
		refs := strings.TrimSuffix(strings.Repeat("*a"+strconv.Itoa(i-1)+", ", 10), ", ")
		b.WriteString(strings.NewReplacer("%d", strconv.Itoa(i), "%s", refs).Replace(level))
	}
	b.WriteString(tail)
	return b.String()
}

func TestDecodeSizeLimit(t *testing.T) {
	pad := func(n int) []byte {
		src := []byte(header + oneStep + "#")
		src = append(src, bytes.Repeat([]byte("x"), n-len(src)-1)...)
		return append(src, '\n')
	}
	_, ds := schema.Decode("plan.yaml", pad(schema.MaxPlanBytes+1), testTypes)
	checkDiags(t, ds, []wantDiag{{1, 1, "plan is larger than 4 MiB; refusing to read it"}})

	_, ds = schema.Decode("plan.yaml", pad(schema.MaxPlanBytes), testTypes)
	checkDiags(t, ds, nil)

	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, pad(schema.MaxPlanBytes+100), 0o600); err != nil {
		t.Fatal(err)
	}
	_, ds = schema.Load(big, testTypes)
	if len(ds) != 1 || ds[0].String() != big+":1:1: plan is larger than 4 MiB; refusing to read it (is this the right file?)" {
		t.Errorf("Load of a big file: %v", ds)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(header+oneStep), 0o600); err != nil {
		t.Fatal(err)
	}
	unreadable := filepath.Join(dir, "unreadable.yaml")
	if err := os.WriteFile(unreadable, []byte(header+oneStep), 0o000); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		file string
		want string // Diagnostics.Error(), or "" for none
	}{
		{"file", good, ""},
		{"directory", dir, dir + ":1:1: cannot read plan: it is a directory"},
		{"missing file", filepath.Join(dir, "nope.yaml"), filepath.Join(dir, "nope.yaml") + ":1:1: cannot read plan: no such file or directory"},
		{"missing directory", filepath.Join(dir, "nope", "plan.yaml"), filepath.Join(dir, "nope", "plan.yaml") + ":1:1: cannot read plan: no such file or directory"},
	}
	if os.Geteuid() != 0 {
		tests = append(tests, struct{ name, file, want string }{"unreadable", unreadable, unreadable + ":1:1: cannot read plan: permission denied"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ds := schema.Load(tt.file, testTypes)
			if tt.want == "" {
				if ds != nil || p == nil || p.File != tt.file {
					t.Errorf("Load(%s): %v", tt.file, ds)
				}
				return
			}
			if got := ds.Error(); got != tt.want {
				t.Errorf("Load(%s):\n got %s\nwant %s", tt.file, got, tt.want)
			}
			if p != nil {
				t.Errorf("Load(%s) returned a plan", tt.file)
			}
		})
	}
}

// exprAt finds the expression a position test looks at: the when of the
// first step, or the part-th expression of the item-th argv template.
func exprAt(t *testing.T, p *schema.Plan, item, part int) *schema.Expr {
	t.Helper()
	if item < 0 {
		if p.Steps[0].When == nil {
			t.Fatal("step has no when")
		}
		return p.Steps[0].When
	}
	argv := p.Steps[0].With["argv"]
	if argv == nil || item >= len(argv.List) {
		t.Fatalf("no argv[%d]", item)
	}
	var exprs []*schema.Expr
	for _, tp := range argv.List[item].Tmpl.Parts {
		if tp.Expr != nil {
			exprs = append(exprs, tp.Expr)
		}
	}
	if part >= len(exprs) {
		t.Fatalf("argv[%d] has %d expressions, want at least %d", item, len(exprs), part+1)
	}
	return exprs[part]
}

// runeIndex is the rune offset of the first occurrence of sub in s.
func runeIndex(t *testing.T, s, sub string) int {
	t.Helper()
	i := strings.Index(s, sub)
	if i < 0 {
		t.Fatalf("%q not found in %q", sub, s)
	}
	return len([]rune(s[:i]))
}

// whenPlan puts a when (lines 9 on) after a valid step head.
func whenPlan(when string) string {
	return header + "steps:\n  - id: a\n    type: exec\n    with: {argv: [x]}\n" + when
}

// argvPlan puts an argv (lines 9 on) in a step.
func argvPlan(argv string) string {
	return header + "steps:\n  - id: a\n    type: exec\n    with:\n" + argv
}

func TestExprPosAt(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		item  int    // -1: the when; otherwise the argv item
		part  int    // which ${{ }} in the argv item
		token string // the text whose first rune is looked up
		want  schema.Pos
	}{
		{"plain start", whenPlan("    when: params.env == 'prod' && params.ok\n"), -1, 0, "params.env", schema.Pos{Line: 9, Col: 11}},
		{"plain", whenPlan("    when: params.env == 'prod' && params.ok\n"), -1, 0, "params.ok", schema.Pos{Line: 9, Col: 35}},
		{"plain on two lines", whenPlan("    when: params.env == 'prod' &&\n      params.ok\n"), -1, 0, "params.ok", schema.Pos{Line: 10, Col: 7}},
		{"single-quoted start", whenPlan("    when: 'params.env == ''prod'' && params.ok'\n"), -1, 0, "params.env", schema.Pos{Line: 9, Col: 12}},
		{"single-quoted after an escaped quote", whenPlan("    when: 'params.env == ''prod'' && params.ok'\n"), -1, 0, "prod", schema.Pos{Line: 9, Col: 28}},
		{"single-quoted", whenPlan("    when: 'params.env == ''prod'' && params.ok'\n"), -1, 0, "params.ok", schema.Pos{Line: 9, Col: 38}},
		{"single-quoted empty string", whenPlan("    when: 'params.env != '''' && params.ok'\n"), -1, 0, "' &&", schema.Pos{Line: 9, Col: 28}},
		{"double-quoted start", whenPlan("    when: \"params.env == \\\"prod\\\" && params.ok\"\n"), -1, 0, "params.env", schema.Pos{Line: 9, Col: 12}},
		{"double-quoted", whenPlan("    when: \"params.env == \\\"prod\\\" && params.ok\"\n"), -1, 0, "params.ok", schema.Pos{Line: 9, Col: 38}},
		{"double-quoted on two lines", whenPlan("    when: \"params.env == 'prod' &&\n      params.ok\"\n"), -1, 0, "params.ok", schema.Pos{Line: 10, Col: 7}},
		{"double-quoted after an escaped backslash", whenPlan("    when: \"params.env == 'a\\\\nb' && params.ok\"\n"), -1, 0, "params.ok", schema.Pos{Line: 9, Col: 37}},
		{"double-quoted after a tab escape", whenPlan("    when: \"\\tparams.ok\"\n"), -1, 0, "params.ok", schema.Pos{Line: 9, Col: 14}},
		{"double-quoted after unicode escapes", whenPlan("    when: \"params.env == '\\u00e9t\\u00e9' && params.ok\"\n"), -1, 0, "params.ok", schema.Pos{Line: 9, Col: 45}},
		{"literal block start", whenPlan("    when: |\n      params.env == 'prod' &&\n        params.ok\n"), -1, 0, "params.env", schema.Pos{Line: 10, Col: 7}},
		{"literal block", whenPlan("    when: |\n      params.env == 'prod' &&\n        params.ok\n"), -1, 0, "params.ok", schema.Pos{Line: 11, Col: 9}},
		{"literal block with a comment after the indicator", whenPlan("    when: |- # guard\n      params.env == 'prod' &&\n        params.ok\n"), -1, 0, "params.ok", schema.Pos{Line: 11, Col: 9}},
		{"literal block with CRLF", whenPlan("    when: |\r\n      params.env == 'prod' &&\r\n        params.ok\r\n"), -1, 0, "params.ok", schema.Pos{Line: 11, Col: 9}},
		{"literal block after a blank line", whenPlan("    when: |\n      params.env == 'prod'\n\n      && params.ok\n"), -1, 0, "params.ok", schema.Pos{Line: 12, Col: 10}},
		{"folded block start", whenPlan("    when: >\n      params.env == 'prod' &&\n      params.ok\n"), -1, 0, "params.env", schema.Pos{Line: 10, Col: 7}},
		{"folded block", whenPlan("    when: >\n      params.env == 'prod' &&\n      params.ok\n"), -1, 0, "params.ok", schema.Pos{Line: 11, Col: 7}},
		{"folded block after a blank line", whenPlan("    when: >-\n      params.env == 'prod'\n\n      && params.ok\n"), -1, 0, "params.ok", schema.Pos{Line: 12, Col: 10}},
		{"folded block, more indented line", whenPlan("    when: >\n      params.env == 'prod' &&\n        params.ok\n"), -1, 0, "params.ok", schema.Pos{Line: 11, Col: 9}},
		{"non-ASCII before the expression", whenPlan("    when: \"'h\u00e9llo' == params.ok\"\n"), -1, 0, "params.ok", schema.Pos{Line: 9, Col: 23}},

		{"template in a double-quoted item", argvPlan("      argv: [echo, \"a ${{ params.x }} b ${{params.y}}\"]\n"), 1, 0, "params.x", schema.Pos{Line: 9, Col: 27}},
		{"second template in the item", argvPlan("      argv: [echo, \"a ${{ params.x }} b ${{params.y}}\"]\n"), 1, 1, "params.y", schema.Pos{Line: 9, Col: 44}},
		{"template in a single-quoted item", argvPlan("      argv:\n        - 'it''s ${{ params.x }}'\n"), 0, 0, "params.x", schema.Pos{Line: 10, Col: 22}},
		{"template in a plain item", argvPlan("      argv:\n        - echo ${{ params.x }}\n"), 0, 0, "params.x", schema.Pos{Line: 10, Col: 20}},
		{"template in a literal block", argvPlan("      argv:\n        - |\n          echo ${{ params.x }}\n          echo ${{\n            params.y }}\n"), 0, 0, "params.x", schema.Pos{Line: 11, Col: 20}},
		{"template across lines in a literal block", argvPlan("      argv:\n        - |\n          echo ${{ params.x }}\n          echo ${{\n            params.y }}\n"), 0, 1, "params.y", schema.Pos{Line: 13, Col: 13}},
		{"template in a folded block", argvPlan("      argv:\n        - >\n          echo ${{ params.x }}\n          ${{ params.y }}\n"), 0, 1, "params.y", schema.Pos{Line: 12, Col: 15}},
		{"template in a double-quoted item on two lines", argvPlan("      argv: [sh, \"echo a &&\n        echo ${{ params.y }}\"]\n"), 1, 0, "params.y", schema.Pos{Line: 10, Col: 18}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if bug, ok := knownPosBugs[tt.name]; ok {
				t.Skip("bug: " + bug)
			}
			p, ds := decode(t, tt.src)
			if len(ds) > 0 {
				t.Fatalf("plan does not decode:\n%s", ds.Format())
			}
			e := exprAt(t, p, tt.item, tt.part)
			off := runeIndex(t, e.Src, tt.token)
			if got := e.PosAt(off); got != tt.want {
				t.Errorf("PosAt(%d) of %q (%q) = %d:%d, want %d:%d", off, e.Src, tt.token, got.Line, got.Col, tt.want.Line, tt.want.Col)
			}
			if e.File != "plan.yaml" {
				t.Errorf("File = %q", e.File)
			}
			if off == 0 && e.Pos() != tt.want {
				t.Errorf("Pos() = %v, want %v", e.Pos(), tt.want)
			}
		})
	}
}

func TestExprPosAtEnd(t *testing.T) {
	// Offsets past the end of the expression (an error at end of input)
	// land just after its last rune, on the same line.
	p, ds := decode(t, whenPlan("    when: params.ok &&\n"))
	if len(ds) > 0 {
		t.Fatal(ds.Format())
	}
	e := p.Steps[0].When
	n := len([]rune(e.Src))
	for _, tc := range []struct {
		off  int
		want schema.Pos
	}{
		{-1, schema.Pos{Line: 9, Col: 11}},
		{n - 1, schema.Pos{Line: 9, Col: 22}},
		{n, schema.Pos{Line: 9, Col: 23}},
		{n + 2, schema.Pos{Line: 9, Col: 25}},
	} {
		if got := e.PosAt(tc.off); got != tc.want {
			t.Errorf("PosAt(%d) = %v, want %v", tc.off, got, tc.want)
		}
	}
	if got := schema.NewExpr("true", "when").PosAt(3); got != (schema.Pos{Line: 1, Col: 1}) {
		t.Errorf("PosAt of an expression without a file = %v, want 1:1", got)
	}
}

// bindPlan declares one param of every type.
const bindPlan = header + `params:
  env: {type: string, enum: [staging, production], required: true}
  jobs: {type: int, default: 2}
  dry: {type: bool}
  wait: {type: duration, default: 5m}
  hosts: {type: list}
  note: {type: string}
` + oneStep

func TestBindParams(t *testing.T) {
	p, ds := decode(t, bindPlan)
	if len(ds) > 0 {
		t.Fatal(ds.Format())
	}
	tests := []struct {
		name    string
		given   map[string]string
		want    map[string]any
		wantErr string
	}{
		{
			name:  "defaults filled",
			given: map[string]string{"env": "staging"},
			want: map[string]any{
				"env": "staging", "jobs": int64(2), "dry": false, "wait": 5 * time.Minute,
				"hosts": []string{}, "note": "",
			},
		},
		{
			name: "every type converted",
			given: map[string]string{
				"env": "production", "jobs": " 8 ", "dry": "true", "wait": "90s",
				"hosts": "db1, db2 ,db3", "note": "a, b",
			},
			want: map[string]any{
				"env": "production", "jobs": int64(8), "dry": true, "wait": 90 * time.Second,
				"hosts": []string{"db1", "db2", "db3"}, "note": "a, b",
			},
		},
		{
			name:  "empty list",
			given: map[string]string{"env": "staging", "hosts": " "},
			want: map[string]any{
				"env": "staging", "jobs": int64(2), "dry": false, "wait": 5 * time.Minute,
				"hosts": []string{}, "note": "",
			},
		},
		{
			name:    "unknown param with a suggestion",
			given:   map[string]string{"env": "staging", "jbos": "3"},
			wantErr: `unknown param "jbos" (did you mean "jobs"?)`,
		},
		{
			name:    "unknown param without a suggestion",
			given:   map[string]string{"env": "staging", "region": "eu"},
			wantErr: `unknown param "region" (the plan declares: env, jobs, dry, wait, hosts, note)`,
		},
		{
			name:    "missing required",
			given:   map[string]string{},
			wantErr: "param env is required: pass --param env=VALUE",
		},
		{
			name:    "not in the enum",
			given:   map[string]string{"env": "prodution"},
			wantErr: `param env: "prodution" is not one of staging, production (did you mean "production"?)`,
		},
		{
			name:    "int",
			given:   map[string]string{"env": "staging", "jobs": "two"},
			wantErr: `param jobs: "two" is not an integer`,
		},
		{
			name:    "bool",
			given:   map[string]string{"env": "staging", "dry": "yes"},
			wantErr: `param dry: "yes" is not true or false`,
		},
		{
			name:    "duration",
			given:   map[string]string{"env": "staging", "wait": "5"},
			wantErr: `param wait: "5" is not a duration such as 30s or 10m`,
		},
		{
			name:  "all problems at once",
			given: map[string]string{"region": "a", "jbos": "3", "jobs": "x", "dry": "y", "wait": "z"},
			wantErr: `unknown param "jbos" (did you mean "jobs"?)` + "\n" +
				`unknown param "region" (the plan declares: env, jobs, dry, wait, hosts, note)` + "\n" +
				"param env is required: pass --param env=VALUE\n" +
				`param jobs: "x" is not an integer` + "\n" +
				`param dry: "y" is not true or false` + "\n" +
				`param wait: "z" is not a duration such as 30s or 10m`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.BindParams(tt.given)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("error:\n%v\nwant:\n%s", err, tt.wantErr)
				}
				if got != nil {
					t.Errorf("values returned with an error: %v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestBindParamsNoParams(t *testing.T) {
	p, ds := decode(t, header+oneStep)
	if len(ds) > 0 {
		t.Fatal(ds.Format())
	}
	if _, err := p.BindParams(map[string]string{"x": "1"}); err == nil || err.Error() != `unknown param "x"` {
		t.Errorf("error = %v, want unknown param \"x\"", err)
	}
	got, err := p.BindParams(nil)
	if err != nil || len(got) != 0 {
		t.Errorf("BindParams(nil) = %v, %v", got, err)
	}
}
