package steps

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pgcutover/cutover/schema"
)

// Secret values used by the verify-secret tests. Each carries the canary,
// URL-encoded where it sits inside a URL.
var (
	vsCanaryPW = url.QueryEscape(testCanary)
	// vsProdURL is a good production DATABASE_URL.
	vsProdURL = "postgres://app:" + vsCanaryPW + "@db.prod.internal:5432/appdb?sslmode=verify-full&sslrootcert=/etc/ssl/provider-ca.pem"
	// vsStagingURL differs from vsProdURL in host and password.
	vsStagingURL = "postgres://app:" + url.QueryEscape("Stg-"+testCanary) + "@db.staging.internal:5432/appdb?sslmode=verify-full&sslrootcert=/etc/ssl/provider-ca.pem"
)

func vsEnvSecret(name, env, value string) Secret {
	return Secret{Name: name, Value: value, From: "env", Source: env}
}

// vsWithQuery is a production URL with the database path and query given.
func vsWithQuery(path, query string) string {
	return "postgres://app:" + vsCanaryPW + "@db.prod.internal:5432/" + path + query
}

// vsInput is what one verify-secret run gets.
type vsInput struct {
	with    map[string]any
	secrets []Secret
	// missing secrets, by name, with the environment variable they lack.
	missing map[string]string
}

// vsCall builds the Call the engine would pass, with canned secrets.
func vsCall(t *testing.T, in vsInput) *Call {
	t.Helper()
	typ, ok := Lookup("verify-secret")
	if !ok {
		t.Fatal("verify-secret is not registered")
	}
	byName := map[string]Secret{}
	for _, s := range in.secrets {
		byName[s.Name] = s
	}
	return &Call{
		StepID:     "secrets",
		Args:       Args{Values: in.with, Fields: typ.Inputs},
		Out:        io.Discard,
		Mask:       func(s string) string { return s },
		MaskWriter: func(w io.Writer) (io.Writer, func() error) { return w, func() error { return nil } },
		Secret: func(name string) (Secret, error) {
			if env, ok := in.missing[name]; ok {
				return Secret{Name: name}, fmt.Errorf("secret %s is not available: environment variable %s is not set", name, env)
			}
			s, ok := byName[name]
			if !ok {
				return Secret{Name: name}, fmt.Errorf("secret %s is not declared", name)
			}
			return s, nil
		},
	}
}

// runVerifySecret runs the step and checks that no secret of in leaks into
// its error or outputs.
func runVerifySecret(t *testing.T, in vsInput) (Outputs, error) {
	t.Helper()
	out, err := verifySecret{}.Run(context.Background(), vsCall(t, in))
	var values []string
	for _, s := range in.secrets {
		if s.Value != "" {
			values = append(values, s.Value)
		}
	}
	if err != nil {
		assertNoCanary(t, "the error", err.Error(), values...)
	}
	for k, v := range out {
		assertNoCanary(t, "output "+k, fmt.Sprint(v), values...)
	}
	return out, err
}

// vsGitRepo makes a git repository with files committed, and returns it.
func vsGitRepo(t *testing.T, files map[string]string) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=cutover", "-c", "user.email=cutover@example.invalid", "-c", "commit.gpgsign=false"}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	git("init", "-q")
	for name, body := range files {
		vsWriteFile(t, filepath.Join(dir, name), body, 0o644)
	}
	git("add", "-A")
	git("commit", "-q", "-m", "seed")
	return dir
}

func vsWriteFile(t *testing.T, path, body string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// vsSecretFile writes value to a file with mode and returns the secret.
func vsSecretFile(t *testing.T, name, value string, mode os.FileMode) Secret {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db_password")
	vsWriteFile(t, path, value, mode)
	return Secret{Name: name, Value: value, From: "file", Source: path}
}

func TestVerifySecret(t *testing.T) {
	cases := []struct {
		name string
		in   func(t *testing.T) vsInput
		// wantErr are substrings of the error, each on a line of its own
		// (nil: the step passes).
		wantErr []string
		// lines, when set, is the exact number of failure lines.
		lines int
		// wantWarn are substrings each warning list must contain.
		wantWarn []string
		// noWarn asserts that the step has no warnings at all.
		noWarn  bool
		wantOut Outputs
	}{
		{
			name: "good URL with verify-full",
			in: func(*testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"new_url"}}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", vsProdURL)}}
			},
			noWarn: true,
			wantOut: Outputs{"host": "db.prod.internal", "port": int64(5432), "dbname": "appdb", "user": "app", "sslmode": "verify-full",
				"source": "env DATABASE_URL", "dialect": "dj-database-url", "checked": int64(1), "disagreements": []string{}},
		},
		{
			name: "missing secret",
			in: func(*testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"new_url"}}, missing: map[string]string{"new_url": "DATABASE_URL"}}
			},
			wantErr: []string{"secret new_url: present: environment variable DATABASE_URL is not set"},
			wantOut: Outputs{"checked": int64(1), "host": ""},
		},
		{
			name: "empty value",
			in: func(*testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"new_url"}}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", "")}}
			},
			wantErr: []string{"secret new_url (env DATABASE_URL): non-empty: the value is empty"},
			lines:   1,
		},
		{
			name: "placeholder password in a URL",
			in: func(*testing.T) vsInput {
				return vsInput{
					with: map[string]any{"secrets": []string{"new_url", "db_password"}},
					secrets: []Secret{
						vsEnvSecret("new_url", "DATABASE_URL", "postgres://app:changeme@db.prod.internal/appdb?sslmode=verify-full&sslrootcert=/ca.pem"),
						vsEnvSecret("db_password", "DB_PASSWORD", testCanary),
					},
				}
			},
			wantErr: []string{"secret new_url (env DATABASE_URL): placeholder: the password is a placeholder"},
		},
		{
			name: "placeholder password alone",
			in: func(*testing.T) vsInput {
				return vsInput{
					with:    map[string]any{"secrets": []string{"db_password", "other", "canary"}},
					secrets: []Secret{vsEnvSecret("db_password", "DB_PASSWORD", "<db-password>"), vsEnvSecret("other", "OTHER", "Password123!"), vsEnvSecret("canary", "CANARY", testCanary)},
				}
			},
			wantErr: []string{"secret db_password (env DB_PASSWORD): placeholder: the value is a <placeholder>", "secret other (env OTHER): placeholder: the value is a common default password"},
		},
		{
			name: "short password",
			in: func(*testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"db_password", "canary"}, "min_length": int64(12)},
					secrets: []Secret{vsEnvSecret("db_password", "DB_PASSWORD", "Zq9!mR2p"), vsEnvSecret("canary", "CANARY", testCanary)}}
			},
			wantErr: []string{"secret db_password (env DB_PASSWORD): min-length: the value is shorter than min_length (12)"},
		},
		{
			name: "sslmode=prefer fails",
			in: func(*testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"new_url"}}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", vsWithQuery("appdb", "?sslmode=prefer"))}}
			},
			wantErr: []string{"secret new_url (env DATABASE_URL): sslmode: sslmode=prefer is forbidden (forbid_sslmodes: disable, allow, prefer): libpq falls back to plaintext"},
			wantOut: Outputs{"sslmode": "prefer"},
		},
		{
			name: "no sslmode fails under require_sslmode",
			in: func(*testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"new_url"}}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", vsWithQuery("appdb", ""))}}
			},
			wantErr: []string{"secret new_url (env DATABASE_URL): sslmode: the URL sets no sslmode, so libpq uses prefer"},
			wantOut: Outputs{"sslmode": "", "dbname": "appdb"},
		},
		{
			name: "no sslmode only warns without require_sslmode",
			in: func(*testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"new_url"}, "require_sslmode": false}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", vsWithQuery("appdb", ""))}}
			},
			wantWarn: []string{"sslmode: the URL sets no sslmode: the app's settings must force one"},
		},
		{
			name: "ssl_require forces require",
			in: func(*testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"new_url"}, "ssl_require": true}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", vsWithQuery("appdb", "?sslmode=verify-full"))}}
			},
			wantWarn: []string{"ssl_require=True replaces sslmode=verify-full with require"},
			wantOut:  Outputs{"sslmode": "require"},
		},
		{
			name: "secret file readable by others",
			in: func(t *testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"db_password"}}, secrets: []Secret{vsSecretFile(t, "db_password", testCanary, 0o644)}}
			},
			wantErr: []string{"): file-mode: ", " has mode 0644: group or others can access it"},
			lines:   1,
		},
		{
			name: "secret file private",
			in: func(t *testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"db_password"}}, secrets: []Secret{vsSecretFile(t, "db_password", testCanary, 0o600)}}
			},
			noWarn: true,
		},
		{
			name: "value committed in the repository",
			in: func(t *testing.T) vsInput {
				repo := vsGitRepo(t, map[string]string{
					"config/settings.py": "import urllib.parse\nPASSWORD = urllib.parse.unquote(\"" + vsCanaryPW + "\")\n",
					"README.md":          "nothing to see\n",
					"blob.bin":           "\x00\x01" + testCanary,
				})
				// Not tracked: not searched.
				vsWriteFile(t, filepath.Join(repo, "local.env"), "DB_PASSWORD="+testCanary+"\n", 0o600)
				return vsInput{with: map[string]any{"secrets": []string{"db_password"}, "not_committed_in": repo}, secrets: []Secret{vsEnvSecret("db_password", "DB_PASSWORD", testCanary)}}
			},
			wantErr: []string{"secret db_password (env DB_PASSWORD): not-committed: found in config/settings.py (URL-encoded), tracked by git in "},
		},
		{
			name: "URL password committed in the repository",
			in: func(t *testing.T) vsInput {
				repo := vsGitRepo(t, map[string]string{"app/settings.py": "DATABASES = {'default': {'PASSWORD': '" + testCanary + "'}}\n"})
				return vsInput{with: map[string]any{"secrets": []string{"new_url"}, "not_committed_in": repo}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", vsProdURL)}}
			},
			wantErr: []string{"secret new_url (env DATABASE_URL): not-committed: found in app/settings.py (its password, as is)"},
		},
		{
			name: "repository clean",
			in: func(t *testing.T) vsInput {
				repo := vsGitRepo(t, map[string]string{"settings.py": "DATABASES = env.db()\n"})
				return vsInput{with: map[string]any{"secrets": []string{"new_url"}, "not_committed_in": repo}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", vsProdURL)}}
			},
			noWarn: true,
		},
		{
			name: "not a repository",
			in: func(t *testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"new_url"}, "not_committed_in": t.TempDir()}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", vsProdURL)}}
			},
			wantErr: []string{"not_committed_in: cannot list the tracked files of "},
		},
		{
			name: "distinct_from with an equal value",
			in: func(*testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"prod_url"}, "distinct_from": "staging_url"},
					secrets: []Secret{vsEnvSecret("prod_url", "DATABASE_URL", vsProdURL), vsEnvSecret("staging_url", "STAGING_DATABASE_URL", vsProdURL)}}
			},
			wantErr: []string{"secret prod_url (env DATABASE_URL): distinct-from: has the same value as secret staging_url"},
		},
		{
			name: "distinct_from with another host",
			in: func(*testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"prod_url"}, "distinct_from": "staging_url"},
					secrets: []Secret{vsEnvSecret("prod_url", "DATABASE_URL", vsProdURL), vsEnvSecret("staging_url", "STAGING_DATABASE_URL", vsStagingURL)}}
			},
			noWarn: true,
		},
		{
			name: "distinct_from on the same host and user",
			in: func(*testing.T) vsInput {
				other := strings.Replace(strings.Replace(vsStagingURL, "db.staging.internal", "DB.prod.internal", 1), "/appdb", "/appdb_staging", 1)
				return vsInput{with: map[string]any{"secrets": []string{"prod_url"}, "distinct_from": "staging_url"},
					secrets: []Secret{vsEnvSecret("prod_url", "DATABASE_URL", vsProdURL), vsEnvSecret("staging_url", "STAGING_DATABASE_URL", other)}}
			},
			wantErr: []string{"distinct-from: points at the same host (db.prod.internal) as secret staging_url with the same user 'app'"},
		},
		{
			name: "distinct_from sharing a password",
			in: func(*testing.T) vsInput {
				other := strings.Replace(vsProdURL, "db.prod.internal", "db.staging.internal", 1)
				return vsInput{with: map[string]any{"secrets": []string{"prod_url"}, "distinct_from": "staging_url"},
					secrets: []Secret{vsEnvSecret("prod_url", "DATABASE_URL", vsProdURL), vsEnvSecret("staging_url", "STAGING_DATABASE_URL", other)}}
			},
			wantErr: []string{"distinct-from: uses the same password as secret staging_url"},
		},
		{
			name: "plus in the database name is a disagreement",
			in: func(*testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"new_url"}}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", vsWithQuery("my+db", "?sslmode=verify-full&sslrootcert=/ca.pem"))}}
			},
			wantWarn: []string{"secret new_url (env DATABASE_URL): dialects: NAME: dj-database-url 'my+db', django-environ 'my db'"},
			wantOut:  Outputs{"dbname": "my+db", "disagreements": []string{"new_url: NAME: dj-database-url 'my+db', django-environ 'my db' (django-environ decodes '+' in the database name as a space)"}},
		},
		{
			name: "plus in the database name under django-environ",
			in: func(*testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"new_url"}, "dialect": "django-environ"}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", vsWithQuery("my+db", "?sslmode=verify-full&sslrootcert=/ca.pem"))}}
			},
			wantWarn: []string{"dialects: NAME: dj-database-url 'my+db', django-environ 'my db'"},
			wantOut:  Outputs{"dbname": "my db", "dialect": "django-environ"},
		},
		{
			name: "conn_max_age query parameter under dj-database-url",
			in: func(*testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"new_url"}}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", vsWithQuery("appdb", "?sslmode=verify-full&sslrootcert=/ca.pem&conn_max_age=600"))}}
			},
			wantErr:  []string{"secret new_url (env DATABASE_URL): options: dj-database-url leaves 'conn_max_age' in OPTIONS, where libpq fails with invalid connection option: set CONN_MAX_AGE in settings.py (dj_database_url.config(conn_max_age=…)) instead"},
			wantWarn: []string{"dialects: conn_max_age: dj-database-url keeps conn_max_age = 600 in OPTIONS"},
		},
		{
			name: "conn_max_age query parameter under django-environ",
			in: func(*testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"new_url"}, "dialect": "django-environ"}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", vsWithQuery("appdb", "?sslmode=verify-full&sslrootcert=/ca.pem&conn_max_age=600"))}}
			},
			wantWarn: []string{"django-environ sets CONN_MAX_AGE = 600"},
		},
		{
			name: "repeated sslmode under dj-database-url",
			in: func(*testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"new_url"}}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", vsWithQuery("appdb", "?sslmode=verify-full&sslmode=disable"))}}
			},
			wantErr: []string{"options: OPTIONS['sslmode'] is a list (the query key is repeated)"},
		},
		{
			name: "multi-host URL under dj-database-url",
			in: func(*testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"new_url"}}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", "postgres://app:"+vsCanaryPW+"@h1:5432,h2:5433/appdb?sslmode=verify-full")}}
			},
			wantErr:  []string{"parse: dj-database-url: it does not support multi-host URLs"},
			wantWarn: []string{"dialects: dj-database-url rejects the URL"},
		},
		{
			name: "unescaped slash in the password",
			in: func(*testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"new_url"}}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", "postgres://app:"+testCanary+"@db.prod.internal/appdb?sslmode=verify-full")}}
			},
			wantErr: []string{"secret new_url (env DATABASE_URL): url: an '@' follows the host part"},
			wantOut: Outputs{"host": "", "dbname": "", "user": "", "port": int64(0), "source": "env DATABASE_URL"},
		},
		{
			name: "trailing whitespace reaches the app",
			in: func(*testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"new_url"}}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", vsWithQuery("appdb", "?sslrootcert=/ca.pem&sslmode=verify-full "))}}
			},
			wantErr:  []string{"sslmode: sslmode='verify-full ' is not a libpq sslmode"},
			wantWarn: []string{"whitespace: the value starts or ends with whitespace"},
		},
		{
			name: "kind url on a password",
			in: func(*testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"db_password"}, "kind": "url"}, secrets: []Secret{vsEnvSecret("db_password", "DB_PASSWORD", testCanary)}}
			},
			wantErr: []string{"secret db_password (env DB_PASSWORD): kind: the value is not a URL"},
		},
		{
			name: "every failure is listed",
			in: func(*testing.T) vsInput {
				return vsInput{with: map[string]any{"secrets": []string{"a", "b", "c"}},
					secrets: []Secret{vsEnvSecret("b", "B_URL", vsWithQuery("appdb", "?sslmode=disable")), vsEnvSecret("c", "C_URL", "mysql://app:"+vsCanaryPW+"@h/db?sslmode=require")},
					missing: map[string]string{"a": "A_URL"}}
			},
			wantErr: []string{"secret a: present:", "secret b (env B_URL): sslmode: sslmode=disable is forbidden", "secret c (env C_URL): engine: dj-database-url gives ENGINE django.db.backends.mysql for scheme mysql"},
			lines:   3,
			wantOut: Outputs{"checked": int64(3), "source": "env B_URL"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runVerifySecret(t, tc.in(t))
			if len(tc.wantErr) == 0 && err != nil {
				t.Fatalf("unexpected failure:\n%v", err)
			}
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("passed; want a failure containing %q (warnings: %q)", tc.wantErr, out["warnings"])
				}
				if !IsPermanent(err) {
					t.Errorf("the failure is not Permanent: a retry cannot fix a secret")
				}
				lines := strings.Split(err.Error(), "\n")
				for _, w := range tc.wantErr {
					found := false
					for _, l := range lines {
						found = found || strings.Contains(l, w)
					}
					if !found {
						t.Errorf("the failure has no line containing %q:\n%v", w, err)
					}
				}
				if tc.lines > 0 && len(lines) != tc.lines {
					t.Errorf("%d failure lines; want %d:\n%v", len(lines), tc.lines, err)
				}
			}
			warnings, _ := out["warnings"].([]string)
			for _, w := range tc.wantWarn {
				if !strings.Contains(strings.Join(warnings, "\n"), w) {
					t.Errorf("no warning contains %q; warnings:\n%s", w, strings.Join(warnings, "\n"))
				}
			}
			if tc.noWarn && len(warnings) > 0 {
				t.Errorf("unexpected warnings:\n%s", strings.Join(warnings, "\n"))
			}
			for k, want := range tc.wantOut {
				if got := out[k]; !reflect.DeepEqual(got, want) {
					t.Errorf("output %s = %#v; want %#v", k, got, want)
				}
			}
		})
	}
}

// TestVerifySecretScrubsWhatMaskMisses gives the step a secret whose value
// a code path might echo, with a Mask that does nothing: the step's own
// scrubbing must still keep it out.
func TestVerifySecretScrubsWhatMaskMisses(t *testing.T) {
	for _, in := range []vsInput{
		{with: map[string]any{"secrets": []string{"new_url"}, "distinct_from": "new_url"}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", vsProdURL)}},
		{with: map[string]any{"secrets": []string{"new_url"}}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", vsWithQuery("db", "?sslmode="+vsCanaryPW+"&x"+vsCanaryPW+"=1&password="+vsCanaryPW))}},
		{with: map[string]any{"secrets": []string{"new_url"}, "dialect": "django-environ"}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", "postgres://app:"+vsCanaryPW+"@h?sslmode=require&autocommit="+vsCanaryPW)}},
		{with: map[string]any{"secrets": []string{"new_url"}}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", "postgres://"+vsCanaryPW+":"+vsCanaryPW+"@"+vsCanaryPW+"/"+vsCanaryPW)}},
	} {
		runVerifySecret(t, in)
	}
}

func TestVerifySecretOutputsMatchDeclaration(t *testing.T) {
	typ, _ := Lookup("verify-secret")
	goType := map[schema.Kind]reflect.Type{
		schema.String:     reflect.TypeOf(""),
		schema.Int:        reflect.TypeOf(int64(0)),
		schema.StringList: reflect.TypeOf([]string{}),
	}
	for _, in := range []vsInput{
		{with: map[string]any{"secrets": []string{"new_url"}}, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", vsProdURL)}},
		{with: map[string]any{"secrets": []string{"new_url"}}, missing: map[string]string{"new_url": "DATABASE_URL"}},
	} {
		out, _ := runVerifySecret(t, in)
		if len(out) != len(typ.Outputs) {
			t.Errorf("%d outputs; %d are declared", len(out), len(typ.Outputs))
		}
		for _, o := range typ.Outputs {
			v, ok := out[o.Name]
			if !ok {
				t.Errorf("declared output %s is missing", o.Name)
				continue
			}
			if want := goType[o.Kind]; reflect.TypeOf(v) != want {
				t.Errorf("output %s is a %T; its kind %s wants %v", o.Name, v, o.Kind, want)
			}
		}
	}
}

func TestVerifySecretRejectsBadInputs(t *testing.T) {
	for _, with := range []map[string]any{
		{"secrets": []string{}},
		{"secrets": []string{"new_url"}, "dialect": "sqlalchemy"},
		{"secrets": []string{"new_url"}, "kind": "token"},
		{"secrets": []string{"new_url"}, "forbid_sslmodes": []string{"plaintext"}},
	} {
		_, err := runVerifySecret(t, vsInput{with: with, secrets: []Secret{vsEnvSecret("new_url", "DATABASE_URL", vsProdURL)}})
		if err == nil || !IsPermanent(err) {
			t.Errorf("with %v: err = %v; want a permanent error", with, err)
		}
	}
}

func TestPlaceholderReason(t *testing.T) {
	for value, placeholder := range map[string]bool{
		"changeme": true, "CHANGEME": true, "password": true, "Password1!": true, "postgres": true,
		"admin123": true, "test": true, "secret": true, "example": true, "12345678": true, "123": true,
		"<password>": true, "xxxxxxxx": true, "XXX": true, "TODO": true, "set-me-TODO": true,
		"${DB_PASSWORD}": true, "$DB_PASSWORD": true, "{{ db_password }}": true, "pw@example.com": true,
		testCanary: false, "Zq9!mR2p": false, "mastodon-Xk2": false, "58203918": false, "correct horse battery": false,
	} {
		if got := placeholderReason(value) != ""; got != placeholder {
			t.Errorf("placeholderReason(%q) placeholder = %v; want %v", value, got, placeholder)
		}
	}
}
