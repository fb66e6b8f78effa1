package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/pgcutover/cutover/engine"
)

// initProject makes a Django project directory named name in a temporary
// directory, with a manage.py holding body.
func initProject(t *testing.T, name, body string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manage.py"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

const initManagePy = `import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
`

// runInit runs `cutover init` with args and returns its exit code and
// streams; stdin is not a terminal, so it never prompts.
func runInit(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"init"}, args...), strings.NewReader(""), &out, &errOut, nil)
	return code, out.String(), errOut.String()
}

// paramDefaults reads the params' defaults of a plan, as YAML reads them.
func paramDefaults(t *testing.T, plan []byte) map[string]any {
	t.Helper()
	var doc struct {
		Params map[string]struct {
			Default any `yaml:"default"`
		} `yaml:"params"`
	}
	if err := yaml.Unmarshal(plan, &doc); err != nil {
		t.Fatalf("plan is not YAML: %v\n%s", err, plan)
	}
	out := map[string]any{}
	for k, v := range doc.Params {
		out[k] = v.Default
	}
	return out
}

// TestInitPlansValidate generates plans for combinations of init's flags,
// odd paths and values included, and checks that each validates, has the
// steps the flags ask for, and carries every value through YAML unchanged.
func TestInitPlansValidate(t *testing.T) {
	odd := `my "app" it's: #1, [x] {y} ${{ run.id }}` + "\n\ttab é"
	cases := []struct {
		name    string
		project string // directory name of the project
		manage  string
		args    []string
		steps   int
		want    []string          // substrings of the plan
		absent  []string          // substrings the plan must not hold
		params  map[string]string // param defaults, read back
	}{
		{name: "defaults", project: "mysite", manage: initManagePy, steps: 15,
			want:   []string{"env_prefix: DB_", "env_prefix: OLD_DB_", "name: mysite-cutover", "kind: password"},
			absent: []string{"id: restart", "id: health", "new_url"},
			params: map[string]string{"settings": "mysite.settings", "python": "python3"}},
		{name: "url secrets", project: "mysite", manage: initManagePy, steps: 15,
			args:   []string{"--source-url-secret", "OLD_DATABASE_URL", "--target-url-secret", "DATABASE_URL"},
			want:   []string{"url: {secret: new_url}", "url: {secret: old_url}", `export DATABASE_URL="$OLD_DATABASE_URL"`},
			absent: []string{"env_prefix"}},
		{name: "url target, prefix source", project: "mysite", manage: initManagePy, steps: 15,
			args: []string{"--target-url-secret", "APP_DATABASE_URL"},
			want: []string{"new_url: {from: env, name: APP_DATABASE_URL}", "env_prefix: OLD_DB_", "migrate, --plan, --check]"}},
		{name: "prefix target, url source", project: "mysite", manage: initManagePy, steps: 15,
			args: []string{"--source-url-secret", "LEGACY_URL", "--target-env-prefix", "PG_"},
			want: []string{"env_prefix: PG_", "old_url: {from: env, name: LEGACY_URL}", "PG_PASSWORD: {secret: new_password}"}},
		{name: "custom prefixes", project: "mysite", manage: initManagePy, steps: 15,
			args: []string{"--source-env-prefix", "A_", "--target-env-prefix", "B_"},
			want: []string{"env_prefix: A_", "env_prefix: B_", `export B_HOST="$A_HOST"`}},
		{name: "restart only", project: "mysite", manage: initManagePy, steps: 16,
			args: []string{"--restart-cmd", "systemctl restart mysite"}, want: []string{"id: restart"}, absent: []string{"id: health"},
			params: map[string]string{"restart_cmd": "systemctl restart mysite"}},
		{name: "health only", project: "mysite", manage: initManagePy, steps: 16,
			args: []string{"--health-url", "https://mysite.internal/healthz"}, want: []string{"id: health"},
			absent: []string{"id: restart", "when: steps.restart"}},
		{name: "restart and health", project: "mysite", manage: initManagePy, steps: 17,
			args:   []string{"--restart-cmd", "true", "--health-url", "http://127.0.0.1:8000/healthz"},
			want:   []string{"id: restart", "when: steps.restart.outputs.exit_code == 0"},
			params: map[string]string{"restart_cmd": "true", "health_url": "http://127.0.0.1:8000/healthz"}},
		{name: "no settings in manage.py", project: "mysite", manage: "import sys\n", steps: 15,
			absent: []string{"params.settings", "DJANGO_SETTINGS_MODULE: "}},
		{name: "settings flag", project: "mysite", manage: "import sys\n", steps: 15,
			args: []string{"--settings", "config.settings.prod"}, params: map[string]string{"settings": "config.settings.prod"}},
		{name: "name and python", project: "mysite", manage: initManagePy, steps: 15,
			args:   []string{"--name", "prod.db-move_2", "--python", "/srv/venv/bin/python"},
			want:   []string{"name: prod.db-move_2"},
			params: map[string]string{"python": "/srv/venv/bin/python"}},
		{name: "odd values", project: `my app's "shop"`, manage: initManagePy, steps: 17,
			args:   []string{"--python", odd, "--restart-cmd", odd, "--health-url", "http://h/x?a=${{ b }}&c='d'", "--env-file", odd},
			params: map[string]string{"python": odd, "restart_cmd": odd, "health_url": "http://h/x?a=${{ b }}&c='d'", "env_file": odd}},
		{name: "project name needs cleaning", project: "My Shop (v2)!", manage: initManagePy, steps: 15,
			want: []string{"name: my-shop-v2-cutover"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := initProject(t, tc.project, tc.manage)
			out := filepath.Join(t.TempDir(), "plan.yaml")
			code, stdout, stderr := runInit(t, append([]string{"--project", dir, "--out", out}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
			prog, ds := engine.Load(out)
			if len(ds) > 0 {
				t.Fatalf("the plan does not validate:\n%s", ds.Format())
			}
			if len(prog.Steps) != tc.steps {
				t.Errorf("%d steps, want %d", len(prog.Steps), tc.steps)
			}
			plan, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !bytes.Contains(plan, []byte(w)) {
					t.Errorf("the plan lacks %q", w)
				}
			}
			for _, a := range tc.absent {
				if bytes.Contains(plan, []byte(a)) {
					t.Errorf("the plan holds %q", a)
				}
			}
			defaults := paramDefaults(t, plan)
			if got := defaults["app_dir"]; got != dir {
				t.Errorf("app_dir default reads back as %q, want %q", got, dir)
			}
			for k, v := range tc.params {
				if got := defaults[k]; got != v {
					t.Errorf("%s default reads back as %q, want %q", k, got, v)
				}
			}
			if !bytes.Contains(plan, []byte("TODO")) {
				t.Error("the plan has no TODO marker")
			}
		})
	}
}

// TestInitExitCodes checks what init returns when it cannot or must not
// write a plan.
func TestInitExitCodes(t *testing.T) {
	dir := initProject(t, "mysite", initManagePy)
	empty := t.TempDir()
	existing := filepath.Join(t.TempDir(), "plan.yaml")
	if err := os.WriteFile(existing, []byte("keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fresh := func() string { return filepath.Join(t.TempDir(), "plan.yaml") }
	cases := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no manage.py", []string{"--project", empty, "--out", fresh()}, engine.ExitUsage, "no manage.py in " + empty},
		{"no directory", []string{"--project", filepath.Join(empty, "nope"), "--out", fresh()}, engine.ExitUsage, "is not a directory"},
		{"exists", []string{"--project", dir, "--out", existing}, engine.ExitUsage, "exists; not overwriting it"},
		{"unknown flag", []string{"--project", dir, "--bogus"}, engine.ExitUsage, "unknown flag --bogus"},
		{"bad name", []string{"--project", dir, "--out", "-", "--name", "Prod DB"}, engine.ExitUsage, `--name "Prod DB"`},
		{"bad url secret", []string{"--project", dir, "--out", "-", "--target-url-secret", "DATABASE-URL"}, engine.ExitUsage, "not an environment variable name"},
		{"both ways", []string{"--project", dir, "--out", "-", "--source-env-prefix", "X_", "--source-url-secret", "X_URL"}, engine.ExitUsage, "exclude each other"},
		{"same variable", []string{"--project", dir, "--out", "-", "--source-url-secret", "DATABASE_URL", "--target-url-secret", "DATABASE_URL"}, engine.ExitUsage, "both be read from $DATABASE_URL"},
		{"bad health url", []string{"--project", dir, "--out", "-", "--health-url", "localhost:8000/healthz"}, engine.ExitUsage, "not an http:// or https:// URL"},
		{"empty out", []string{"--project", dir, "--out", ""}, engine.ExitUsage, "--out is empty"},
		{"force", []string{"--project", dir, "--out", existing, "--force"}, 0, "wrote " + existing},
		{"stdout", []string{"--project", dir, "--out", "-"}, 0, "wrote the plan to stdout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runInit(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstderr: %s", code, tc.code, stderr)
			}
			if !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, stderr)
			}
		})
	}
	if data, _ := os.ReadFile(existing); string(data) == "keep\n" {
		t.Error("--force did not replace the existing file")
	}
	if st, err := os.Stat(existing); err != nil {
		t.Error(err)
	} else if st.Mode().Perm() != 0o644 {
		t.Errorf("replaced plan has mode %v; want 0644", st.Mode().Perm())
	}
}

// TestInitPrompts answers the questions init asks on a terminal.
func TestInitPrompts(t *testing.T) {
	ask := func(input string, given map[string]bool) (initConfig, string, error) {
		var out bytes.Buffer
		c := initConfig{}
		err := promptMissing(&c, given, &prompter{in: bufio.NewReader(strings.NewReader(input)), out: &out})
		return c, out.String(), err
	}

	c, out, err := ask("config.settings\nhttps://app.internal/healthz\nsystemctl restart app\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Settings != "config.settings" || c.HealthURL != "https://app.internal/healthz" || c.RestartCmd != "systemctl restart app" {
		t.Errorf("answers not taken: %+v", c)
	}
	for _, q := range []string{"DJANGO_SETTINGS_MODULE", "health check", "restarts the app"} {
		if !strings.Contains(out, q) {
			t.Errorf("no question about %s:\n%s", q, out)
		}
	}

	// Empty answers, then the end of input: nothing is set.
	c, _, err = ask("\n\n", nil)
	if err != nil || c.Settings != "" || c.HealthURL != "" || c.RestartCmd != "" {
		t.Errorf("empty answers: %+v, %v", c, err)
	}

	// A wrong answer is asked again.
	c, out, err = ask("config/settings.py\nconfig.settings\nnot a url\nhttp://x/healthz\n\n", nil)
	if err != nil || c.Settings != "config.settings" || c.HealthURL != "http://x/healthz" {
		t.Errorf("retried answers: %+v, %v", c, err)
	}
	if !strings.Contains(out, `"config/settings.py" is not a Python module path`) || !strings.Contains(out, `"not a url" is not an http`) {
		t.Errorf("no reason given for a wrong answer:\n%s", out)
	}

	// Three wrong answers: an error.
	if _, _, err = ask("a/b\nc/d\ne/f\n", nil); err == nil {
		t.Error("three wrong answers accepted")
	}

	// What was given on the command line is not asked.
	_, out, err = ask("", map[string]bool{"settings": true, "health-url": true, "restart-cmd": true})
	if err != nil || out != "" {
		t.Errorf("asked about given values: %q, %v", out, err)
	}
}

// TestInitDetectSettings reads DJANGO_SETTINGS_MODULE the way manage.py
// files spell it.
func TestInitDetectSettings(t *testing.T) {
	for src, want := range map[string]string{
		`os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')`:                  "mysite.settings",
		`os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")`:            "config.settings.local",
		"os.environ.setdefault(\n    \"DJANGO_SETTINGS_MODULE\",\n    \"a.b\",\n)":            "a.b",
		`os.environ.setdefault( 'DJANGO_SETTINGS_MODULE' , 'x_1.settings' )`:                  "x_1.settings",
		`os.environ["DJANGO_SETTINGS_MODULE"] = "forced.settings"`:                            "",
		`os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bad path/settings")`:                "",
		`os.environ.setdefault("OTHER", "x.y")`:                                               "",
		"import sys\n":                                                                        "",
		`#os.environ.setdefault("DJANGO_SETTINGS_MODULE", "old.settings")` + "\nimport sys\n": "old.settings",
	} {
		if got := detectSettings([]byte(src)); got != want {
			t.Errorf("detectSettings(%q) = %q, want %q", src, got, want)
		}
	}
}

// TestInitYAMLScalar checks that every value reads back exactly, in a block
// mapping and inside a flow mapping.
func TestInitYAMLScalar(t *testing.T) {
	for _, s := range []string{
		"", "python3", "true", "no", "null", "~", "0o644", "1e3", "-", "- x", "? x", ": x", "a: b", "a #b",
		"#c", "[x]", "{x}", "x, y", "*anchor", "&a", "!tag", "%d", "@x", "`x`", "'q'", `"q"`, `it's`,
		" lead", "trail ", "a\nb", "a\tb", "\x00", "é", "${{ run.id }}", "|", ">", strings.Repeat("long ", 40),
	} {
		q, err := yamlScalar(s)
		if err != nil {
			t.Errorf("yamlScalar(%q): %v", s, err)
			continue
		}
		for _, doc := range []string{"k: " + q + "\n", "m: {k: " + q + ", z: 1}\n", "l: [" + q + ", 1]\n"} {
			var v map[string]any
			if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
				t.Errorf("%q as %q: %v", s, doc, err)
				continue
			}
			var got any
			switch {
			case v["k"] != nil:
				got = v["k"]
			case v["m"] != nil:
				got = v["m"].(map[string]any)["k"]
			default:
				got = v["l"].([]any)[0]
			}
			if got != s {
				t.Errorf("%q written as %q reads back as %#v", s, doc, got)
			}
		}
	}
}

// TestInitPlanName derives plan names from directory names.
func TestInitPlanName(t *testing.T) {
	for dir, want := range map[string]string{
		"/srv/mysite":   "mysite-cutover",
		"/srv/My Site":  "my-site-cutover",
		"/srv/__app__":  "app-cutover",
		"/srv/été":      "t-cutover",
		"/srv/...":      "django-cutover",
		"/srv/shop_v2/": "shop-v2-cutover",
	} {
		if got := defaultPlanName(dir); got != want {
			t.Errorf("defaultPlanName(%q) = %q, want %q", dir, got, want)
		}
		if !planNameRe.MatchString(defaultPlanName(dir)) {
			t.Errorf("defaultPlanName(%q) = %q is not a plan name", dir, defaultPlanName(dir))
		}
	}
}
