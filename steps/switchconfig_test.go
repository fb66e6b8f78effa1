package steps

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// switchTime is the clock of the switch-config tests: backups are named
// after it.
var switchTime = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

const switchStamp = "20250301T120000Z"

// switchSecret is a DATABASE_URL that needs every kind of quoting: a double
// quote, dollars, spaces, a backslash and a newline, around the canary.
const switchSecret = "postgres://app:" + testCanary + "@db.managed.example:5432/appdb?sslmode=verify-full&x=\"q\" $HOME ${USER} \\d\nline2"

// switchEnv is a realistic env file: comments, blank lines, export
// prefixes, quoted values, a trailing comment and unrelated keys.
const switchEnv = `# /etc/app/db.env: database settings for the Django app
# Managed by ops; see the runbook.

export DJANGO_SETTINGS_MODULE=app.settings.production
DATABASE_URL=postgres://app:old-pw@10.0.0.5:5432/appdb?sslmode=require   # old primary
CONN_MAX_AGE=60
SECRET_KEY='k3y with spaces and a # hash'
ALLOWED_HOSTS="app.internal,app.example.com"

# legacy, goes away with the cutover
export OLD_DATABASE_URL="postgres://app:legacy@10.0.0.4/appdb"
REDIS_URL=redis://cache:6379/0
`

// switchEnvAfter is switchEnv with DATABASE_URL and DB_SSLROOTCERT set and
// OLD_DATABASE_URL unset.
const switchEnvAfter = `# /etc/app/db.env: database settings for the Django app
# Managed by ops; see the runbook.

export DJANGO_SETTINGS_MODULE=app.settings.production
DATABASE_URL="postgres://app:` + testCanary + `@db.managed.example:5432/appdb?sslmode=verify-full&x=\"q\" $HOME ${USER} \\d\nline2"
CONN_MAX_AGE=60
SECRET_KEY='k3y with spaces and a # hash'
ALLOWED_HOSTS="app.internal,app.example.com"

# legacy, goes away with the cutover
REDIS_URL=redis://cache:6379/0
DB_SSLROOTCERT=/etc/ssl/certs/provider-ca.pem
`

func fixedSwitch() switchConfig { return switchConfig{now: func() time.Time { return switchTime }} }

// runSwitch runs switch-config (its dry run when dry) with the given inputs.
func runSwitch(t *testing.T, sc switchConfig, with map[string]any, dry bool) (Outputs, error) {
	t.Helper()
	c, _ := newCall(t, "switch-config", with, nil)
	c.DryRun = dry
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if dry {
		out, ran, err := sc.DryRun(ctx, c)
		if !ran {
			t.Fatal("DryRun did not run")
		}
		return out, err
	}
	return sc.Run(ctx, c)
}

// writeEnv writes content to dir/db.env with mode and returns the path.
func writeEnv(t *testing.T, dir, content string, mode fs.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, "db.env")
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func readBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hexSHA(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func modeOf(t *testing.T, path string) fs.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// dirListing maps every file in dir to its mode and content.
func dirListing(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		out[e.Name()] = fmt.Sprintf("%v %x", modeOf(t, p), readBytes(t, p))
	}
	return out
}

func TestSwitchConfigSetsAndUnsetsKeepingTheRest(t *testing.T) {
	dir := t.TempDir()
	path := writeEnv(t, dir, switchEnv, 0o640)
	out, err := runSwitch(t, fixedSwitch(), map[string]any{
		"file":  path,
		"set":   map[string]string{"DATABASE_URL": switchSecret, "DB_SSLROOTCERT": "/etc/ssl/certs/provider-ca.pem", "CONN_MAX_AGE": "60"},
		"unset": []string{"OLD_DATABASE_URL"},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	got := readBytes(t, path)
	if string(got) != switchEnvAfter {
		t.Errorf("new content:\n%s\nwant:\n%s", got, switchEnvAfter)
	}
	vals := dotenvValues(parseDotenv(string(got)))
	if v := vals["DATABASE_URL"]; !v.set || v.value != switchSecret {
		t.Errorf("DATABASE_URL reads back as %q, want the secret", v.value)
	}
	if _, ok := vals["OLD_DATABASE_URL"]; ok {
		t.Error("OLD_DATABASE_URL is still set")
	}
	if v := vals["SECRET_KEY"]; v.value != "k3y with spaces and a # hash" {
		t.Errorf("SECRET_KEY reads %q", v.value)
	}
	if m := modeOf(t, path); m != 0o640 {
		t.Errorf("file mode %v, want 0640 kept", m)
	}

	backup := filepath.Join(dir, "db.env.cutover-"+switchStamp+".bak")
	wantOutputs(t, out, Outputs{
		"backup":          backup,
		"previous_sha256": hexSHA([]byte(switchEnv)),
		"new_sha256":      hexSHA([]byte(switchEnvAfter)),
		"changed":         []string{"DATABASE_URL", "DB_SSLROOTCERT", "OLD_DATABASE_URL"},
	})
	if b := readBytes(t, backup); !bytes.Equal(b, []byte(switchEnv)) {
		t.Errorf("backup content:\n%s\nwant the previous content byte for byte", b)
	}
	if m := modeOf(t, backup); m != 0o600 {
		t.Errorf("backup mode %v, want 0600", m)
	}
	assertNoCanary(t, "outputs", fmt.Sprint(out), switchSecret)
	// Nothing but the file and its backup: no temporary file left behind.
	if names := slices.Sorted(maps.Keys(dirListing(t, dir))); !slices.Equal(names, []string{"db.env", "db.env.cutover-" + switchStamp + ".bak"}) {
		t.Errorf("directory holds %v", names)
	}
}

func TestSwitchConfigRestoresByteForByte(t *testing.T) {
	for name, content := range map[string]string{
		"trailing newline":            "# db\nexport DATABASE_URL=postgres://old/db\nDEBUG=0\n",
		"no trailing newline":         "# db\nexport DATABASE_URL=postgres://old/db\nDEBUG=0",
		"CRLF":                        "# db\r\nDATABASE_URL=\"postgres://old/db\"\r\n\r\nDEBUG=0\r\n",
		"CRLF without final newline":  "# db\r\nDATABASE_URL=postgres://old/db\r\nDEBUG=0",
		"key on the last line, no LF": "# db\nDATABASE_URL=postgres://old/db",
		"multi-line quoted value":     "CERT=\"-----BEGIN\nabc\n-----END\"\nDATABASE_URL=postgres://old/db\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeEnv(t, dir, content, 0o644)
			sw, err := runSwitch(t, fixedSwitch(), map[string]any{
				"file": path, "set": map[string]string{"DATABASE_URL": switchSecret, "NEW_KEY": "x"},
			}, false)
			if err != nil {
				t.Fatal(err)
			}
			switched := readBytes(t, path)
			if bytes.Equal(switched, []byte(content)) {
				t.Fatal("the switch changed nothing")
			}
			if strings.Contains(content, "\r\n") && strings.Count(string(switched), "\n") != strings.Count(string(switched), "\r\n") {
				t.Errorf("switched CRLF file has bare LF line endings: %q", switched)
			}
			if v := dotenvValues(parseDotenv(string(switched)))["DATABASE_URL"]; v.value != switchSecret {
				t.Errorf("DATABASE_URL reads back as %q", v.value)
			}

			rb, err := runSwitch(t, fixedSwitch(), map[string]any{
				"file": path, "restore": sw["backup"], "restore_sha256": sw["previous_sha256"],
			}, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := readBytes(t, path); !bytes.Equal(got, []byte(content)) {
				t.Errorf("restored content %q, want %q", got, content)
			}
			if m := modeOf(t, path); m != 0o644 {
				t.Errorf("restored mode %v, want 0644", m)
			}
			wantOutputs(t, rb, Outputs{
				"backup":          filepath.Join(dir, "db.env.cutover-"+switchStamp+"-2.bak"),
				"previous_sha256": sw["new_sha256"],
				"new_sha256":      sw["previous_sha256"],
				"changed":         []string{"DATABASE_URL", "NEW_KEY"},
			})
			if b := readBytes(t, rb["backup"].(string)); !bytes.Equal(b, switched) {
				t.Error("the restore did not back up what it replaced")
			}
			assertNoCanary(t, "restore outputs", fmt.Sprint(rb), switchSecret)
		})
	}
}

func TestSwitchConfigDryRunWritesNothing(t *testing.T) {
	dir := t.TempDir()
	path := writeEnv(t, dir, switchEnv, 0o640)
	with := map[string]any{
		"file":  path,
		"set":   map[string]string{"DATABASE_URL": switchSecret, "DB_SSLROOTCERT": "/etc/ssl/certs/provider-ca.pem"},
		"unset": []string{"OLD_DATABASE_URL", "NOT_THERE"},
	}
	before := dirListing(t, dir)
	dry, err := runSwitch(t, fixedSwitch(), with, true)
	if err != nil {
		t.Fatal(err)
	}
	if after := dirListing(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the dry run changed the directory:\nbefore %v\nafter  %v", before, after)
	}
	wantOutputs(t, dry, Outputs{
		"backup":          "",
		"previous_sha256": hexSHA([]byte(switchEnv)),
		"new_sha256":      hexSHA([]byte(switchEnvAfter)),
		"changed":         []string{"DATABASE_URL", "DB_SSLROOTCERT", "OLD_DATABASE_URL"},
	})
	assertNoCanary(t, "dry-run outputs", fmt.Sprint(dry), switchSecret)

	// The preview is what the real run then does.
	ran, err := runSwitch(t, fixedSwitch(), with, false)
	if err != nil {
		t.Fatal(err)
	}
	if ran["new_sha256"] != dry["new_sha256"] || fmt.Sprint(ran["changed"]) != fmt.Sprint(dry["changed"]) {
		t.Errorf("the run %v differs from its preview %v", ran, dry)
	}
}

func TestSwitchConfigLeavesEqualValuesAlone(t *testing.T) {
	dir := t.TempDir()
	path := writeEnv(t, dir, switchEnv, 0o600)
	out, err := runSwitch(t, fixedSwitch(), map[string]any{
		"file": path,
		"set":  map[string]string{"SECRET_KEY": "k3y with spaces and a # hash", "CONN_MAX_AGE": "60"},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := readBytes(t, path); !bytes.Equal(got, []byte(switchEnv)) {
		t.Errorf("content changed to:\n%s", got)
	}
	wantOutputs(t, out, Outputs{
		"backup":          filepath.Join(dir, "db.env.cutover-"+switchStamp+".bak"),
		"previous_sha256": hexSHA([]byte(switchEnv)),
		"new_sha256":      hexSHA([]byte(switchEnv)),
		"changed":         []string{},
	})
}

func TestSwitchConfigBackupsNeverOverwrite(t *testing.T) {
	dir, backups := t.TempDir(), t.TempDir()
	path := writeEnv(t, dir, "DATABASE_URL=one\n", 0o600)
	var got []string
	for _, v := range []string{"two", "three", "four"} {
		out, err := runSwitch(t, fixedSwitch(), map[string]any{
			"file": path, "set": map[string]string{"DATABASE_URL": v}, "backup_dir": backups,
		}, false)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s=%s", filepath.Base(out["backup"].(string)), readBytes(t, out["backup"].(string))))
	}
	want := []string{
		"db.env.cutover-" + switchStamp + ".bak=DATABASE_URL=one\n",
		"db.env.cutover-" + switchStamp + "-2.bak=DATABASE_URL=two\n",
		"db.env.cutover-" + switchStamp + "-3.bak=DATABASE_URL=three\n",
	}
	if !slices.Equal(got, want) {
		t.Errorf("backups:\n%q\nwant:\n%q", got, want)
	}
	if names := slices.Sorted(maps.Keys(dirListing(t, dir))); !slices.Equal(names, []string{"db.env"}) {
		t.Errorf("the file's directory holds %v; backups belong in backup_dir", names)
	}
}

func TestSwitchConfigModeAndCreate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "new.env")
	out, err := runSwitch(t, fixedSwitch(), map[string]any{
		"file": path, "set": map[string]string{"DATABASE_URL": "postgres://h/db"}, "create": true,
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(readBytes(t, path)); got != "DATABASE_URL=postgres://h/db\n" {
		t.Errorf("created %q", got)
	}
	if m := modeOf(t, path); m != 0o600 {
		t.Errorf("new file mode %v, want 0600", m)
	}
	absent := filepath.Join(dir, "new.env.cutover-"+switchStamp+".absent")
	wantOutputs(t, out, Outputs{"backup": absent, "previous_sha256": "", "changed": []string{"DATABASE_URL"}})
	if b := readBytes(t, absent); len(b) != 0 {
		t.Errorf("the .absent marker holds %q", b)
	}

	// mode applies to an existing file too.
	if _, err := runSwitch(t, fixedSwitch(), map[string]any{
		"file": path, "set": map[string]string{"DEBUG": "0"}, "mode": 0o640,
	}, false); err != nil {
		t.Fatal(err)
	}
	if m := modeOf(t, path); m != 0o640 {
		t.Errorf("mode %v, want 0640", m)
	}

	// Restoring the .absent backup removes the file again.
	rb, err := runSwitch(t, fixedSwitch(), map[string]any{"file": path, "restore": absent, "restore_sha256": ""}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("after restoring an .absent backup the file is still there (%v)", err)
	}
	wantOutputs(t, rb, Outputs{"new_sha256": "", "changed": []string{"DATABASE_URL", "DEBUG"}})
	// Restoring it again finds nothing to do.
	again, err := runSwitch(t, fixedSwitch(), map[string]any{"file": path, "restore": absent}, false)
	if err != nil {
		t.Fatal(err)
	}
	wantOutputs(t, again, Outputs{"backup": "", "previous_sha256": "", "new_sha256": "", "changed": []string{}})
}

func TestSwitchConfigFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	target := writeEnv(t, dir, "DATABASE_URL=old\n", 0o600)
	link := filepath.Join(dir, "current.env")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := runSwitch(t, fixedSwitch(), map[string]any{"file": link, "set": map[string]string{"DATABASE_URL": "new"}}, false); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("the link was replaced (%v)", err)
	}
	if got := string(readBytes(t, target)); got != "DATABASE_URL=new\n" {
		t.Errorf("link target holds %q", got)
	}
}

func TestSwitchConfigErrorsNameKeysNeverValues(t *testing.T) {
	dir := t.TempDir()
	path := writeEnv(t, dir, "DATABASE_URL=old\n", 0o600)
	other := writeEnv(t, t.TempDir(), "X=1\n", 0o600)
	stale := filepath.Join(dir, "db.env.cutover-20250101T000000Z.bak")
	if err := os.WriteFile(stale, []byte("DATABASE_URL=tampered\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.env")
	for _, tc := range []struct {
		name string
		with map[string]any
		want string
	}{
		{"restore with set", map[string]any{"file": path, "restore": stale, "set": map[string]string{"A": switchSecret}},
			"restore excludes set and unset: a step either restores a backup or changes keys"},
		{"nothing to do", map[string]any{"file": path},
			"nothing to do: give set or unset (or restore)"},
		{"bad key", map[string]any{"file": path, "set": map[string]string{"DATABASE-URL": switchSecret}},
			`set: "DATABASE-URL" is not a variable name (letters, digits and _, not starting with a digit)`},
		{"NUL in a secret", map[string]any{"file": path, "set": map[string]string{"DATABASE_URL": switchSecret + "\x00"}},
			"set: the value of DATABASE_URL contains a NUL byte, which no environment variable can hold"},
		{"set and unset", map[string]any{"file": path, "set": map[string]string{"DATABASE_URL": switchSecret}, "unset": []string{"DATABASE_URL"}},
			"DATABASE_URL is both in set and in unset"},
		{"missing file", map[string]any{"file": missing, "set": map[string]string{"DATABASE_URL": switchSecret}},
			missing + " does not exist (set create: true to create it)"},
		{"decimal mode", map[string]any{"file": path, "set": map[string]string{"DATABASE_URL": switchSecret}, "mode": 640},
			"mode 640 (octal 1200) is not a permission mode between 0001 and 0777: write it in octal with a leading 0, as in 0640"},
		{"empty restore", map[string]any{"file": path, "restore": ""},
			"restore is empty: there is no backup to restore (did the step that makes it run?)"},
		{"backup of another file", map[string]any{"file": path, "restore": other},
			"restore: " + other + " is not a backup of " + path + " (those are named db.env.cutover-<time>.bak)"},
		{"tampered backup", map[string]any{"file": path, "restore": stale, "restore_sha256": hexSHA([]byte("DATABASE_URL=old\n"))},
			"restore: " + stale + " has sha256 " + hexSHA([]byte("DATABASE_URL=tampered\n")) + ", want " + hexSHA([]byte("DATABASE_URL=old\n")) + ": the backup changed since it was made"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := dirListing(t, dir)
			out, err := runSwitch(t, fixedSwitch(), tc.with, false)
			wantError(t, err, tc.want)
			if !IsPermanent(err) {
				t.Errorf("%v is not permanent", err)
			}
			if err != nil {
				assertNoCanary(t, "error", err.Error(), switchSecret)
			}
			assertNoCanary(t, "outputs", fmt.Sprint(out), switchSecret)
			if after := dirListing(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("a failed step changed the directory: %v", after)
			}
		})
	}
}

func TestSwitchConfigIsAMutatingDryRunner(t *testing.T) {
	typ, _ := Lookup("switch-config")
	if !typ.Mutates(nil) {
		t.Error("switch-config does not declare that it mutates")
	}
	if _, ok := typ.Impl.(DryRunner); !ok {
		t.Error("switch-config has no dry-run preview")
	}
}

// A reader of the file, racing many switches, always finds one complete
// version or the other.
func TestSwitchConfigConcurrentReaderSeesWholeFiles(t *testing.T) {
	dir, backups := t.TempDir(), t.TempDir()
	padding := strings.Repeat("# "+strings.Repeat("x", 1020)+"\n", 64) // 64 KiB: many write calls' worth
	valueA, valueB := "postgres://a/db", switchSecret
	contentA := padding + "DATABASE_URL=" + valueA + "\nDEBUG=0\n"
	contentB := editDotenv(contentA, map[string]string{"DATABASE_URL": valueB}, nil)
	path := writeEnv(t, dir, contentA, 0o600)

	stop := make(chan struct{})
	done := make(chan struct{})
	var reads atomic.Int64
	var bad []string
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(path)
			if err != nil {
				bad = append(bad, err.Error())
				continue
			}
			reads.Add(1)
			v := dotenvValues(parseDotenv(string(b)))["DATABASE_URL"].value
			if s := string(b); (s != contentA || v != valueA) && (s != contentB || v != valueB) {
				bad = append(bad, fmt.Sprintf("a read of %d bytes is neither version", len(b)))
			}
		}
	}()
	// At least 100 switches, and more until the reader has had 100 looks.
	for i := 0; i < 100 || reads.Load() < 100 && i < 1000; i++ {
		v := valueB
		if i%2 == 1 {
			v = valueA
		}
		if _, err := runSwitch(t, fixedSwitch(), map[string]any{"file": path, "set": map[string]string{"DATABASE_URL": v}, "backup_dir": backups}, false); err != nil {
			close(stop)
			<-done
			t.Fatal(err)
		}
	}
	close(stop)
	<-done
	if reads.Load() == 0 {
		t.Fatal("the reader never read the file")
	}
	if len(bad) > 0 {
		t.Errorf("%d of %d reads saw something else than a whole version: %s", len(bad), reads.Load(), bad[0])
	}
}

// dotenvCases are values python-dotenv 1.2.2 reads from each content
// (dotenv_values with interpolate=False); nil stands for a bare KEY.
var dotenvCases = []struct {
	content string
	want    map[string]*string
}{
	{"A=1\nB=2\n", map[string]*string{"A": dotenvStr("1"), "B": dotenvStr("2")}},
	{"export\tA = 1 # c\n", map[string]*string{"A": dotenvStr("1")}},
	{"A='x y'\n", map[string]*string{"A": dotenvStr("x y")}},
	{"A=\"x\\ny\"\n", map[string]*string{"A": dotenvStr("x\ny")}},
	{"A=\"a\\\"b\"\n", map[string]*string{"A": dotenvStr("a\"b")}},
	{"A=x # comment\nB=x#y\n", map[string]*string{"A": dotenvStr("x"), "B": dotenvStr("x#y")}},
	{"# c\n\n  A=1\r\nB=2\r\n", map[string]*string{"A": dotenvStr("1"), "B": dotenvStr("2")}},
	{"A\nB=\n", map[string]*string{"A": nil, "B": dotenvStr("")}},
	{"A=\"multi\nline\"\nB=2\n", map[string]*string{"A": dotenvStr("multi\nline"), "B": dotenvStr("2")}},
	{"A='a\\'b'\n", map[string]*string{"A": dotenvStr("a'b")}},
	{"A=\"unterminated\nB=2\n", map[string]*string{"B": dotenvStr("2")}},
	{"=x\nA=1\n", map[string]*string{"A": dotenvStr("1")}},
	{"A=\"x\" trailing\nB=1", map[string]*string{"B": dotenvStr("1")}},
	{"'Q'=v\n", map[string]*string{"Q": dotenvStr("v")}},
	{"A=1\rB=2\r", map[string]*string{"A": dotenvStr("1"), "B": dotenvStr("2")}},
	{"A=\"\\\\a\\x\"\n", map[string]*string{"A": dotenvStr("\\a\\x")}},
	{"A=   spaced   \n", map[string]*string{"A": dotenvStr("spaced")}},
	{"A=\"a\\'b\\tc\"\n", map[string]*string{"A": dotenvStr("a'b\tc")}},
	{"A=\"a\\\\\"b\"\nC=1\n", map[string]*string{"A": dotenvStr("a\\\"b"), "C": dotenvStr("1")}},
	{"A='a\\\\'b'\n", map[string]*string{"A": dotenvStr("a\\'b")}},
	{"A=v\\\\\n", map[string]*string{"A": dotenvStr("v\\\\")}},
	{"  \n\n", map[string]*string{}},
}

func dotenvStr(s string) *string { return &s }

func TestSwitchConfigParsesLikePythonDotenv(t *testing.T) {
	for _, tc := range dotenvCases {
		bs := parseDotenv(tc.content)
		got := map[string]string{}
		for k, v := range dotenvValues(bs) {
			got[k] = fmt.Sprintf("%q", v.value)
			if !v.set {
				got[k] = "nil"
			}
		}
		want := map[string]string{}
		for k, v := range tc.want {
			want[k] = "nil"
			if v != nil {
				want[k] = fmt.Sprintf("%q", *v)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%q reads as %v, want %v", tc.content, got, want)
		}
		pos := 0
		for _, b := range bs {
			if b.start != pos {
				t.Errorf("%q: span at %d starts at %d", tc.content, pos, b.start)
			}
			pos = b.end
		}
		if pos != len(tc.content) {
			t.Errorf("%q: spans end at %d of %d", tc.content, pos, len(tc.content))
		}
	}
}

func TestSwitchConfigQuotesValuesSoTheyReadBack(t *testing.T) {
	for _, tc := range []struct{ value, line string }{
		{"postgres://u:p%40@h:5432/db", "K=postgres://u:p%40@h:5432/db"},
		{"", `K=""`},
		{"with space", `K="with space"`},
		{"a#b", `K="a#b"`},
		{" lead", `K=" lead"`},
		{`q"uo'te`, `K="q\"uo'te"`},
		{"$HOME ${X}", `K="$HOME ${X}"`},
		{`back\slash`, `K="back\\slash"`},
		{"nl\nnl\r\n", `K="nl\nnl\r\n"`},
		{"tab\tx", "K=\"tab\tx\""},
		{"h/db?sslmode=verify-full&x=1", `K="h/db?sslmode=verify-full&x=1"`},
		{"ünï", `K="ünï"`},
		{"\xff\xfe", "K=\"\xff\xfe\""},
		{"=eq", "K==eq"},
	} {
		got := editDotenv("OTHER=1\n", map[string]string{"K": tc.value}, nil)
		if want := "OTHER=1\n" + tc.line + "\n"; got != want {
			t.Errorf("%q is written %q, want %q", tc.value, got, want)
		}
		if v := dotenvValues(parseDotenv(got))["K"]; v.value != tc.value {
			t.Errorf("%q reads back as %q", tc.value, v.value)
		}
	}
}
