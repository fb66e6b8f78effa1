package steps

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pgcutover/cutover/schema"
	"github.com/pgcutover/cutover/steps/pgtest"
)

// dumpCanary is the app role's password in the snapshot and restore tests:
// it must reach pg_dump and pg_restore through the passfile only.
const dumpCanary = "Dump-Canary-pw/5+q:x'y\\z"

// seedSQL builds the app's schema as the app role: tables with data, an
// empty table, a serial, an identity and a standalone sequence, a second
// schema, a view, a type and a function.
const seedSQL = `SET ROLE app;
CREATE TABLE widgets (id bigserial PRIMARY KEY, name text NOT NULL, price numeric);
INSERT INTO widgets (name, price) SELECT 'w' || g, g * 1.5 FROM generate_series(1, 500) g;
CREATE TABLE orders (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, widget_id bigint REFERENCES widgets, qty int);
INSERT INTO orders (widget_id, qty) SELECT 1 + g % 500, g FROM generate_series(1, 1200) g;
CREATE TABLE empty_things (x int);
CREATE SEQUENCE invoice_no START 1000;
SELECT setval('invoice_no', 4242);
CREATE SCHEMA billing;
CREATE TABLE billing.invoices (no bigint PRIMARY KEY DEFAULT nextval('invoice_no'), total numeric);
INSERT INTO billing.invoices (total) SELECT g FROM generate_series(1, 30) g;
CREATE VIEW big_orders AS SELECT * FROM orders WHERE qty > 100;
CREATE TYPE status AS ENUM ('new', 'paid');
CREATE FUNCTION order_total(o orders) RETURNS numeric LANGUAGE sql AS 'SELECT o.qty * 2';
RESET ROLE;`

// seededTables are the tables seedSQL creates, with their row counts.
var seededTables = map[string]int64{"public.widgets": 500, "public.orders": 1200, "public.empty_things": 0, "billing.invoices": 30}

// dumpCluster starts a TLS-only cluster with the roles app (the canary
// password, owner of appdb and spare) and intruder, and seeds appdb.
func dumpCluster(t *testing.T, extraDBs ...string) *pgtest.Cluster {
	t.Helper()
	dbs := map[string]string{"appdb": "app"}
	for _, d := range extraDBs {
		dbs[d] = "app"
	}
	cl := pgtest.Start(t, pgtest.Options{
		TLS: pgtest.TLSEnforced,
		Roles: []pgtest.Role{
			{Name: "app", Password: dumpCanary},
			{Name: "intruder", Password: dumpCanary},
		},
		Databases: dbs,
	})
	if err := cl.Exec(context.Background(), "appdb", seedSQL); err != nil {
		t.Fatal(err)
	}
	return cl
}

// dbTarget declares a target on cl for database db as user, with the canary
// password, verified TLS.
func dbTarget(cl *pgtest.Cluster, name, db, user string) *schema.Target {
	return &schema.Target{
		Name: name, Host: cl.Host, Port: cl.Port, DBName: db, User: user, Password: "pw",
		SSLMode: "verify-full", SSLRootCert: cl.CAFile,
	}
}

func dumpTargets(t testing.TB, decls ...*schema.Target) *Targets {
	t.Helper()
	return newTargets(t, map[string]string{"pw": dumpCanary}, decls...)
}

// startedCommand is what a test sees of a client program the steps ran.
type startedCommand struct {
	args    []string
	env     []string
	cmdline string // /proc/<pid>/cmdline, if the process was still there
	environ string // /proc/<pid>/environ, likewise
	// passfile is the content of PGPASSFILE while the program ran.
	passfile     string
	passfileMode os.FileMode
	passfilePath string
}

// recordCommands records every client program the snapshot and restore
// steps start until the test ends.
func recordCommands(t *testing.T) func() []startedCommand {
	t.Helper()
	var mu sync.Mutex
	var seen []startedCommand
	f := func(cmd *exec.Cmd) {
		sc := startedCommand{args: append([]string(nil), cmd.Args...), env: append([]string(nil), cmd.Env...)}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid)); err == nil {
			sc.cmdline = string(b)
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid)); err == nil {
			sc.environ = string(b)
		}
		for _, kv := range cmd.Env {
			if p, ok := strings.CutPrefix(kv, "PGPASSFILE="); ok {
				sc.passfilePath = p
				if fi, err := os.Stat(p); err == nil {
					sc.passfileMode = fi.Mode().Perm()
				}
				b, _ := os.ReadFile(p)
				sc.passfile = string(b)
			}
		}
		mu.Lock()
		seen = append(seen, sc)
		mu.Unlock()
	}
	if !commandStarted.CompareAndSwap(nil, &f) {
		t.Fatal("another test records commands")
	}
	t.Cleanup(func() { commandStarted.Store(nil) })
	return func() []startedCommand {
		mu.Lock()
		defer mu.Unlock()
		return append([]startedCommand(nil), seen...)
	}
}

// findCommand returns the recorded run of prog whose arguments include arg.
func findCommand(t *testing.T, cmds []startedCommand, prog, arg string) startedCommand {
	t.Helper()
	for _, c := range cmds {
		if filepath.Base(c.args[0]) == prog && (arg == "" || slices.Contains(c.args, arg)) {
			return c
		}
	}
	t.Fatalf("no %s %s among %d commands", prog, arg, len(cmds))
	return startedCommand{}
}

// assertNoCanary fails if the canary password is in any of the texts.
func assertNoDumpCanary(t *testing.T, what string, texts ...string) {
	t.Helper()
	for _, s := range texts {
		for _, form := range []string{dumpCanary, "Dump-Canary", url.QueryEscape(dumpCanary), base64.StdEncoding.EncodeToString([]byte(dumpCanary))} {
			if i := strings.Index(s, form); i >= 0 {
				// Only the neighbourhood: the whole text may be an environment.
				lo, hi := max(0, i-60), min(len(s), i+len(form)+20)
				t.Errorf("the password is in %s: …%q…", what, s[lo:hi])
			}
		}
	}
}

// assertCommandsClean checks argv, environment and /proc of every recorded
// command for the canary, and that the password reached programs only
// through a 0600 passfile that is gone once the step returned.
func assertCommandsClean(t *testing.T, cmds []startedCommand) {
	t.Helper()
	if len(cmds) == 0 {
		t.Fatal("no command was recorded")
	}
	for _, c := range cmds {
		assertNoDumpCanary(t, "argv of "+c.args[0], strings.Join(c.args, " "), c.cmdline)
		assertNoDumpCanary(t, "the environment of "+c.args[0], strings.Join(c.env, "\n"), c.environ)
		if c.passfilePath == "" {
			continue
		}
		if !strings.Contains(c.passfile, ":app:") && !strings.Contains(c.passfile, ":intruder:") {
			t.Errorf("passfile of %s holds %q, want a line for the target's user", c.args[0], c.passfile)
		}
		if c.passfileMode != 0o600 {
			t.Errorf("passfile mode %v, want 0600", c.passfileMode)
		}
		if _, err := os.Stat(c.passfilePath); !os.IsNotExist(err) {
			t.Errorf("passfile %s outlived the step (stat: %v)", c.passfilePath, err)
		}
	}
}

func runSnapshot(t *testing.T, ts *Targets, with map[string]any) (Outputs, string, error) {
	t.Helper()
	if _, ok := with["target"]; !ok {
		with["target"] = "old"
	}
	c, live := newCall(t, "snapshot", with, ts)
	out, err := snapshot{}.Run(context.Background(), c)
	return out, live.String(), err
}

// readSums parses a SHA256SUMS file.
func readSums(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", line)
		}
		sums[name] = sum
	}
	return sums
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func wantCompression(cl *pgtest.Cluster) string {
	if cl.Version >= 16 {
		return "lz4"
	}
	return "gzip:1"
}

func TestSnapshotDirectoryFormat(t *testing.T) {
	cl := dumpCluster(t)
	ts := dumpTargets(t, dbTarget(cl, "old", "appdb", "app"))
	commands := recordCommands(t)
	dir := filepath.Join(t.TempDir(), "backups", "run-1")

	out, live, err := runSnapshot(t, ts, map[string]any{"dir": dir})
	if err != nil {
		t.Fatalf("snapshot: %v\n%s", err, live)
	}

	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v, want 0700", fi.Mode().Perm())
	}
	names, err := snapshotFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"toc.dat", checksumsFile, manifestFile} {
		if !slices.Contains(names, want) {
			t.Errorf("no %s in %v", want, names)
		}
	}
	var size int64
	for _, n := range names {
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", n, fi.Mode().Perm())
		}
		size += fi.Size()
	}

	sums := readSums(t, filepath.Join(dir, checksumsFile))
	if len(sums) != len(names)-1 {
		t.Errorf("SHA256SUMS lists %d files, the directory has %d others", len(sums), len(names)-1)
	}
	for _, n := range names {
		if n == checksumsFile {
			continue
		}
		if got := fileSHA256(t, filepath.Join(dir, n)); sums[n] != got {
			t.Errorf("SHA256SUMS says %s is %s, it is %s", n, sums[n], got)
		}
	}
	if sha := cmdOutput(t, dir, "sha256sum", "-c", "--strict", checksumsFile); !strings.Contains(sha, "toc.dat: OK") {
		t.Errorf("sha256sum -c: %s", sha)
	}

	want := Outputs{
		"path": dir, "format": "directory", "compression": wantCompression(cl), "verified": true,
		"tables": int64(len(seededTables)), "sequences": int64(3), "bytes": size,
		"sha256": fileSHA256(t, filepath.Join(dir, checksumsFile)),
	}
	for k, v := range want {
		if out[k] != v {
			t.Errorf("outputs[%s] = %#v, want %#v", k, out[k], v)
		}
	}
	if v, _ := out["server_version"].(int64); v/10000 != int64(cl.Version) {
		t.Errorf("server_version = %v, want major %d", out["server_version"], cl.Version)
	}
	if v, _ := out["pg_dump_version"].(int64); v < 100000 {
		t.Errorf("pg_dump_version = %v", out["pg_dump_version"])
	}
	if _, ok := out["duration_ms"].(int64); !ok {
		t.Errorf("duration_ms = %#v", out["duration_ms"])
	}
	typ, _ := Lookup("snapshot")
	for _, o := range typ.Outputs {
		if _, ok := out[o.Name]; !ok {
			t.Errorf("declared output %s is missing", o.Name)
		}
	}

	var m snapshotManifest
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, manifestFile))), &m); err != nil {
		t.Fatal(err)
	}
	if !m.Whole || strings.Join(m.Schemas, ",") != "billing,public" || m.Database != "appdb" || m.Archive != "." {
		t.Errorf("manifest = %+v", m)
	}

	// Every table's data is in the archive, by pg_restore's own reading.
	listing := cmdOutput(t, "", "pg_restore", "--list", dir)
	for q := range seededTables {
		s, n, _ := strings.Cut(q, ".")
		if !strings.Contains(listing, " TABLE DATA "+s+" "+n+" ") {
			t.Errorf("no TABLE DATA for %s in\n%s", q, listing)
		}
	}

	dump := findCommand(t, commands(), "pg_dump", "-Fd")
	for _, arg := range []string{"-j", "2", "-w", "-f", dir} {
		if !slices.Contains(dump.args, arg) {
			t.Errorf("pg_dump argv %q lacks %q", dump.args, arg)
		}
	}
	if dump.passfilePath == "" {
		t.Error("pg_dump got no PGPASSFILE")
	}
	// What ps shows is what the test saw (behind Debian's pg_wrapper, if
	// pg_dump is one).
	if want := strings.Join(dump.args[1:], "\x00") + "\x00"; !strings.HasSuffix(dump.cmdline, want) {
		t.Errorf("/proc/<pid>/cmdline of pg_dump = %q, want %q", dump.cmdline, want)
	}
	if !strings.Contains(dump.environ, "PGPASSFILE=") {
		t.Error("/proc/<pid>/environ of pg_dump was not read")
	}
	assertCommandsClean(t, commands())
	assertNoDumpCanary(t, "the live output", live)
	assertNoDumpCanary(t, "the outputs", fmt.Sprint(out))
	if !strings.Contains(live, "verified") {
		t.Errorf("live output does not report the result:\n%s", live)
	}
}

func TestSnapshotCustomFormat(t *testing.T) {
	cl := dumpCluster(t)
	ts := dumpTargets(t, dbTarget(cl, "old", "appdb", "app"))
	dir := filepath.Join(t.TempDir(), "snap")

	t.Run("jobs need the directory format", func(t *testing.T) {
		_, _, err := runSnapshot(t, ts, map[string]any{"dir": dir, "format": "custom", "jobs": 4})
		wantError(t, err, "jobs applies only to format: directory; pg_dump writes a custom archive with one process")
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("the refused snapshot created %s", dir)
		}
	})

	t.Run("one archive file", func(t *testing.T) {
		out, live, err := runSnapshot(t, ts, map[string]any{"dir": dir, "format": "custom", "compress": "none"})
		if err != nil {
			t.Fatalf("%v\n%s", err, live)
		}
		archive := filepath.Join(dir, customArchive)
		if out["path"] != archive || out["format"] != "custom" || out["compression"] != "none" || out["verified"] != true {
			t.Errorf("outputs %v", out)
		}
		if out["sha256"] != fileSHA256(t, archive) {
			t.Errorf("sha256 %v is not the archive's", out["sha256"])
		}
		if sums := readSums(t, filepath.Join(dir, checksumsFile)); sums[customArchive] != out["sha256"] || sums[manifestFile] == "" {
			t.Errorf("SHA256SUMS %v", sums)
		}
		if out["tables"] != int64(len(seededTables)) || out["sequences"] != int64(3) {
			t.Errorf("tables %v sequences %v", out["tables"], out["sequences"])
		}
		// Uncompressed, the rows are readable in the archive.
		if !bytes.Contains([]byte(readFile(t, archive)), []byte("w500\t750.0")) {
			t.Error("compress: none still compressed the data")
		}
	})
}

func TestSnapshotNeverOverwrites(t *testing.T) {
	cl := dumpCluster(t)
	ts := dumpTargets(t, dbTarget(cl, "old", "appdb", "app"))
	for _, tc := range []struct {
		name  string
		setup func(dir string) error
	}{
		{"an empty directory", func(dir string) error { return os.Mkdir(dir, 0o700) }},
		{"an earlier snapshot", func(dir string) error {
			if err := os.Mkdir(dir, 0o700); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "toc.dat"), []byte("earlier"), 0o600)
		}},
		{"a file", func(dir string) error { return os.WriteFile(dir, []byte("x"), 0o600) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "snap")
			if err := tc.setup(dir); err != nil {
				t.Fatal(err)
			}
			before := treeState(t, dir)
			out, _, err := runSnapshot(t, ts, map[string]any{"dir": dir})
			wantError(t, err, "snapshot directory "+dir+" already exists; a snapshot never overwrites one: choose a new dir, e.g. backups/${{ run.id }}")
			if !IsPermanent(err) {
				t.Error("an existing dir is not worth retrying")
			}
			if out != nil {
				t.Errorf("outputs %v", out)
			}
			if after := treeState(t, dir); after != before {
				t.Errorf("the existing %s changed:\n%s\nthen\n%s", dir, before, after)
			}
		})
	}
}

func TestSnapshotRefusesOlderPgDump(t *testing.T) {
	cl := dumpCluster(t)
	ts := dumpTargets(t, dbTarget(cl, "old", "appdb", "app"))
	older := cl.Version - 1
	bin := fakeClients(t, older)
	dir := filepath.Join(t.TempDir(), "snap")

	for _, dry := range []bool{false, true} {
		c, _ := newCall(t, "snapshot", map[string]any{"target": "old", "dir": dir, "bin_dir": bin}, ts)
		var err error
		if dry {
			_, _, err = snapshot{}.DryRun(context.Background(), c)
		} else {
			_, err = snapshot{}.Run(context.Background(), c)
		}
		wantError(t, err, fmt.Sprintf("pg_dump %d is older than the server (%d): install postgresql-client-%d (or set bin_dir to its bin directory)",
			older, cl.Version, cl.Version))
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("dry run %v: the refused snapshot created %s", dry, dir)
		}
	}
}

func TestSnapshotDryRunChecksWithoutDumping(t *testing.T) {
	cl := dumpCluster(t)
	ts := dumpTargets(t, dbTarget(cl, "old", "appdb", "app"))
	commands := recordCommands(t)
	dir := filepath.Join(t.TempDir(), "backups", "run-2")

	c, live := newCall(t, "snapshot", map[string]any{"target": "old", "dir": dir, "jobs": 3}, ts)
	out, ran, err := snapshot{}.DryRun(context.Background(), c)
	if err != nil || !ran {
		t.Fatalf("ran %v err %v", ran, err)
	}
	if _, err := os.Stat(filepath.Dir(dir)); !os.IsNotExist(err) {
		t.Errorf("the dry run created %s", filepath.Dir(dir))
	}
	for _, cmd := range commands() {
		if filepath.Base(cmd.args[0]) == "pg_dump" && slices.Contains(cmd.args, "-Fd") {
			t.Errorf("the dry run ran %q", cmd.args)
		}
	}
	if out["path"] != dir || out["compression"] != wantCompression(cl) || out["tables"] != int64(len(seededTables)) {
		t.Errorf("outputs %v", out)
	}
	for _, want := range []string{"would run pg_dump -w -f " + dir + " -Fd -j 3", "would dump 4 tables", "free"} {
		if !strings.Contains(live.String(), want) {
			t.Errorf("live output lacks %q:\n%s", want, live)
		}
	}
	assertCommandsClean(t, commands())

	t.Run("an existing dir fails the dry run too", func(t *testing.T) {
		existing := t.TempDir()
		c, _ := newCall(t, "snapshot", map[string]any{"target": "old", "dir": existing}, ts)
		_, _, err := snapshot{}.DryRun(context.Background(), c)
		wantError(t, err, "snapshot directory "+existing+" already exists; a snapshot never overwrites one: choose a new dir, e.g. backups/${{ run.id }}")
	})

	t.Run("a parent that is a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		c, _ := newCall(t, "snapshot", map[string]any{"target": "old", "dir": filepath.Join(file, "x", "snap")}, ts)
		_, _, err := snapshot{}.DryRun(context.Background(), c)
		wantError(t, err, file+" is not a directory")
	})

	t.Run("a parent that cannot be written", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root writes anywhere")
		}
		ro := t.TempDir()
		if err := os.Chmod(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		c, _ := newCall(t, "snapshot", map[string]any{"target": "old", "dir": filepath.Join(ro, "x", "snap")}, ts)
		_, _, err := snapshot{}.DryRun(context.Background(), c)
		wantError(t, err, "cannot create "+filepath.Join(ro, "x", "snap")+": "+ro+" is not writable")
	})
}

func TestSnapshotSchemasAndExclusions(t *testing.T) {
	cl := dumpCluster(t)
	if err := cl.Exec(context.Background(), "appdb", `SET ROLE app; CREATE TABLE "Audit_Log" (x int); CREATE TABLE billing.audit_log (x int); RESET ROLE;`); err != nil {
		t.Fatal(err)
	}
	ts := dumpTargets(t, dbTarget(cl, "old", "appdb", "app"))
	commands := recordCommands(t)
	tests := []struct {
		name       string
		with       map[string]any
		tables     int64
		wantArgs   []string
		wantTables []string
		excluded   []string
	}{
		{"one schema", map[string]any{"schemas": []string{"BILLING"}}, 2,
			[]string{"-n", `"billing"`}, []string{"billing invoices", "billing audit_log"}, nil},
		{"an unqualified exclusion matches the search path only", map[string]any{"exclude_tables": []string{"empty_*", `"Audit_Log"`, "audit_log"}}, 4,
			[]string{"-T", `"public"."empty_things"`, `"public"."Audit_Log"`}, []string{"billing audit_log", "public widgets"}, []string{"public empty_things", "public Audit_Log"}},
		{"a qualified exclusion", map[string]any{"exclude_tables": []string{"billing.*"}}, 4,
			[]string{`"billing"."audit_log"`, `"billing"."invoices"`}, []string{"public Audit_Log"}, []string{"billing invoices"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "s")
			tt.with["dir"] = dir
			out, live, err := runSnapshot(t, ts, tt.with)
			if err != nil {
				t.Fatalf("%v\n%s", err, live)
			}
			if out["tables"] != tt.tables || out["verified"] != true {
				t.Errorf("tables %v verified %v, want %d", out["tables"], out["verified"], tt.tables)
			}
			dump := findCommand(t, commands(), "pg_dump", dir)
			for _, a := range tt.wantArgs {
				if !slices.Contains(dump.args, a) {
					t.Errorf("pg_dump argv %q lacks %q", dump.args, a)
				}
			}
			listing := cmdOutput(t, "", "pg_restore", "--list", dir)
			for _, tab := range tt.wantTables {
				if !strings.Contains(listing, " TABLE DATA "+tab+" ") {
					t.Errorf("no TABLE DATA %s", tab)
				}
			}
			for _, tab := range tt.excluded {
				if strings.Contains(listing, " TABLE "+tab+" ") {
					t.Errorf("excluded table %s is in the archive", tab)
				}
			}
		})
	}

	t.Run("a schema pattern that matches nothing", func(t *testing.T) {
		_, _, err := runSnapshot(t, ts, map[string]any{"dir": filepath.Join(t.TempDir(), "s"), "schemas": []string{"nosuch*"}})
		wantError(t, err, `schemas: "nosuch*" matches no schema in database appdb`)
	})
}

func TestSnapshotFailureRemovesThePartialDir(t *testing.T) {
	cl := dumpCluster(t)
	// A table the app role cannot read: pg_dump fails on it.
	if err := cl.Exec(context.Background(), "appdb", "CREATE TABLE secrets (k text); INSERT INTO secrets VALUES ('x')"); err != nil {
		t.Fatal(err)
	}
	ts := dumpTargets(t, dbTarget(cl, "old", "appdb", "app"))
	dir := filepath.Join(t.TempDir(), "snap")
	out, live, err := runSnapshot(t, ts, map[string]any{"dir": dir})
	wantError(t, err, "pg_dump exited 1: pg_dump: error: query failed: ERROR:  permission denied for table secrets "+
		"(the target's role cannot read everything it would dump: grant it SELECT, dump as the owner, or leave the table out with exclude_tables); "+
		"the partial snapshot "+dir+" was removed")
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the partial snapshot %s is still there", dir)
	}
	if !strings.Contains(live, "permission denied for table secrets") {
		t.Errorf("pg_dump's stderr did not stream live:\n%s", live)
	}
	assertNoDumpCanary(t, "the error", err.Error())
	assertNoDumpCanary(t, "the outputs", fmt.Sprint(out))

	t.Run("leaving the table out works", func(t *testing.T) {
		out, _, err := runSnapshot(t, ts, map[string]any{"dir": dir, "exclude_tables": []string{"secrets"}})
		if err != nil || out["verified"] != true {
			t.Fatalf("out %v err %v", out, err)
		}
	})
}

func TestSnapshotWrongPasswordLeaksNothing(t *testing.T) {
	cl := dumpCluster(t)
	ts := newTargets(t, map[string]string{"pw": dumpCanary + "-wrong"}, dbTarget(cl, "old", "appdb", "app"))
	commands := recordCommands(t)
	_, live, err := runSnapshot(t, ts, map[string]any{"dir": filepath.Join(t.TempDir(), "s")})
	wantErrorPrefix(t, err, "connecting to target old: wrong password for user app: ")
	assertNoDumpCanary(t, "the error", err.Error())
	assertNoDumpCanary(t, "the live output", live)
	for _, c := range commands() {
		assertNoDumpCanary(t, "argv", strings.Join(c.args, " "))
	}
}

func TestCompressionChoice(t *testing.T) {
	pgtest.RequireBinaries(t)
	pgDump, err := exec.LookPath("pg_dump")
	if err != nil {
		t.Skip("no pg_dump")
	}
	c, _ := newCall(t, "snapshot", map[string]any{}, nil)
	version, err := pgToolVersion(context.Background(), c, pgDump)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("pg_dump says whether it has lz4", func(t *testing.T) {
		if got, want := lz4Supported(context.Background(), c, pgDump, t.TempDir()), version >= 160000; got != want {
			t.Errorf("pg_dump %d: lz4 supported = %v, want %v", version, got, want)
		}
	})
	t.Run("a pg_dump that accepts lz4 tries to connect", func(t *testing.T) {
		for name, tc := range map[string]struct {
			stderr string
			want   bool
		}{
			// pg_dump 16 with lz4: the options pass, the connection fails.
			"accepted": {`connection to server on socket \"$host/.s.PGSQL.1\" failed: No such file or directory`, true},
			// pg_dump 16 built without lz4.
			"a build without lz4": {"this build does not support compression with LZ4", false},
		} {
			dir := t.TempDir()
			script := "#!/bin/sh\nfor a; do case $a in host=*) host=${a#host=}; host=${host%% *};; esac; done\n" +
				"echo \"pg_dump: error: " + tc.stderr + "\" >&2\nexit 1\n"
			if err := os.WriteFile(filepath.Join(dir, "pg_dump"), []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			if got := lz4Supported(context.Background(), c, filepath.Join(dir, "pg_dump"), t.TempDir()); got != tc.want {
				t.Errorf("%s: lz4 supported = %v, want %v", name, got, tc.want)
			}
			got, err := chooseCompression(context.Background(), c, "", filepath.Join(dir, "pg_dump"), 160002, t.TempDir())
			if want := map[bool]string{true: "lz4", false: "gzip:1"}[tc.want]; err != nil || got.name != want {
				t.Errorf("%s: chose %s (err %v), want %s", name, got.name, err, want)
			}
		}
	})
	t.Run("empty picks lz4 if pg_dump has it, else gzip:1", func(t *testing.T) {
		got, err := chooseCompression(context.Background(), c, "", pgDump, version, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		want := "gzip:1"
		if version >= 160000 {
			want = "lz4"
		}
		if got.name != want {
			t.Errorf("pg_dump %d: chose %s, want %s", version, got.name, want)
		}
	})
	tests := []struct {
		spec, name, args string
		dump             int
		err              string
	}{
		{"none", "none", "-Z 0", 150000, ""},
		{"0", "none", "-Z 0", 150000, ""},
		{"gzip", "gzip:6", "-Z 6", 150000, ""},
		{"GZIP:9", "gzip:9", "-Z 9", 150000, ""},
		{"3", "gzip:3", "-Z 3", 150000, ""},
		{"lz4", "lz4", "-Z lz4", 160000, ""},
		{"zstd:5", "zstd:5", "-Z zstd:5", 170000, ""},
		{"lz4", "", "", 150018, `compress "lz4": pg_dump 15 knows only gzip (lz4 came with pg_dump 16); use gzip:1 or none, or set bin_dir to a newer client`},
		{"gzip:0", "", "", 150000, `compress "gzip:0": a gzip level is 1 to 9`},
		{"12", "", "", 150000, `compress "12": a level is 0 to 9`},
		{"brotli", "", "", 170000, `compress "brotli": want none, gzip, gzip:1-9, lz4, zstd (with an optional :level) or 0-9`},
	}
	for _, tt := range tests {
		t.Run(tt.spec+"@"+strconv.Itoa(tt.dump), func(t *testing.T) {
			got, err := chooseCompression(context.Background(), c, tt.spec, pgDump, tt.dump, t.TempDir())
			if tt.err != "" {
				wantError(t, err, tt.err)
				return
			}
			if err != nil || got.name != tt.name || strings.Join(got.args, " ") != tt.args {
				t.Errorf("got %+v err %v, want %s %s", got, err, tt.name, tt.args)
			}
		})
	}
}

func TestToolVersions(t *testing.T) {
	for in, want := range map[string]int{
		"pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n": 150018,
		"pg_restore (PostgreSQL) 16.4\n":                        160004,
		"pg_dump (PostgreSQL) 9.6.24\n":                         90624,
		"pg_dump (PostgreSQL) 17beta2\n":                        170000,
	} {
		if got, ok := parseToolVersion(in); !ok || got != want {
			t.Errorf("parseToolVersion(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	if _, ok := parseToolVersion("pg_dump 15"); ok {
		t.Error("a line without (PostgreSQL) parsed")
	}
	if err := checkDumpVersion(160002, 150008); err != nil {
		t.Errorf("a newer pg_dump is fine: %v", err)
	}
	wantError(t, checkDumpVersion(150018, 160004), "pg_dump 15 is older than the server (16): install postgresql-client-16 (or set bin_dir to its bin directory)")
}

func TestParseTOC(t *testing.T) {
	listing := `;
; Archive created at 2026-11-24 03:03:43 UTC
;     dbname: src
;     Format: DIRECTORY
;     Dumped from database version: 15.18 (Debian 15.18-0+deb12u1)
;     Dumped by pg_dump version: 16.4
;
; Selected TOC Entries:
;
7; 2615 16479 SCHEMA - s2 app
2; 3079 16389 EXTENSION - pg_trgm 
3449; 0 0 COMMENT - EXTENSION pg_trgm 
260; 1255 16519 FUNCTION public add(integer, integer) postgres
224; 1259 16501 MATERIALIZED VIEW public mv postgres
3434; 0 16471 TABLE DATA public a app
3440; 0 16501 MATERIALIZED VIEW DATA public mv postgres
3451; 0 0 SEQUENCE SET public a_id_seq app
3285; 0 0 TABLE ATTACH public part1 postgres
`
	toc := parseTOC(listing)
	if toc.dumpedFrom != 150018 || toc.dumpedBy != 160004 || toc.formatHeader != "DIRECTORY" {
		t.Errorf("header: from %d by %d format %q", toc.dumpedFrom, toc.dumpedBy, toc.formatHeader)
	}
	want := []tocEntry{
		{id: 7, desc: "SCHEMA", name: "s2", owner: "app"},
		{id: 2, desc: "EXTENSION", name: "pg_trgm"},
		{id: 3449, desc: "COMMENT", name: "EXTENSION pg_trgm"},
		{id: 260, desc: "FUNCTION", schema: "public", name: "add(integer, integer)", owner: "postgres"},
		{id: 224, desc: "MATERIALIZED VIEW", schema: "public", name: "mv", owner: "postgres"},
		{id: 3434, desc: "TABLE DATA", schema: "public", name: "a", owner: "app"},
		{id: 3440, desc: "MATERIALIZED VIEW DATA", schema: "public", name: "mv", owner: "postgres"},
		{id: 3451, desc: "SEQUENCE SET", schema: "public", name: "a_id_seq", owner: "app"},
		{id: 3285, desc: "TABLE ATTACH", schema: "public", name: "part1", owner: "postgres"},
	}
	if len(toc.entries) != len(want) {
		t.Fatalf("%d entries, want %d", len(toc.entries), len(want))
	}
	for i, w := range want {
		got := toc.entries[i]
		got.line = ""
		if got != w {
			t.Errorf("entry %d = %+v, want %+v", i, got, w)
		}
	}
}

func TestVerifyArchive(t *testing.T) {
	toc := parseTOC("1; 1259 1 TABLE public a app\n2; 1259 2 SEQUENCE public s app\n3; 0 1 TABLE DATA public a app\n4; 0 0 SEQUENCE SET public s app\n")
	tables, seqs, err := verifyArchive(toc, []qualifiedName{{"public", "a"}})
	if err != nil || tables != 1 || seqs != 1 {
		t.Errorf("tables %d seqs %d err %v", tables, seqs, err)
	}
	toc = parseTOC("1; 1259 1 TABLE public a app\n2; 1259 2 SEQUENCE public s app\n3; 0 1 TABLE DATA public a app\n")
	_, _, err = verifyArchive(toc, []qualifiedName{{"public", "a"}, {"public", "b"}})
	wantError(t, err, "verification failed: pg_restore --list shows no SEQUENCE SET for public.s, no TABLE DATA for public.b")
}

func TestNamePatterns(t *testing.T) {
	tests := []struct {
		pattern      string
		schema, name string
		visible      bool
		match        bool
	}{
		{"widgets", "public", "widgets", true, true},
		{"widgets", "billing", "widgets", false, false},
		{"WIDGETS", "public", "widgets", true, true},
		{`"WIDGETS"`, "public", "widgets", true, false},
		{`"Audit_Log"`, "public", "Audit_Log", true, true},
		{"audit_*", "public", "audit_2024", true, true},
		{"audit_?", "public", "audit_12", true, false},
		{"billing.*", "billing", "anything", false, true},
		{"*.invoices", "billing", "invoices", false, true},
		{`"a.b".c`, "a.b", "c", false, true},
		{`"a""b"`, "public", `a"b`, true, true},
		{"log_(a|b)", "public", "log_b", true, true},
		{"price$", "public", "price$", true, true},
		{"price$", "public", "price", true, false},
	}
	for _, tt := range tests {
		np, err := parseNamePattern(tt.pattern, 2)
		if err != nil {
			t.Errorf("%s: %v", tt.pattern, err)
			continue
		}
		if got := np.match(tt.schema, tt.name, tt.visible); got != tt.match {
			t.Errorf("%s matches %s.%s (visible %v) = %v, want %v", tt.pattern, tt.schema, tt.name, tt.visible, got, tt.match)
		}
	}
	for pat, want := range map[string]string{
		"a.b.c":   `"a.b.c": too many dotted names`,
		`"open`:   `"\"open": unterminated double quote`,
		"public.": `"public.": empty name`,
	} {
		_, err := parseNamePattern(pat, 2)
		wantError(t, err, want)
	}
	if _, err := parseNamePattern("a.b", 1); err == nil {
		t.Error("a schema pattern with a dot parsed")
	}
}

// wantErrorPrefix fails unless err's message starts with want.
func wantErrorPrefix(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one starting %q", want)
	}
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error:\n got: %s\nwant: %s…", err, want)
	}
}

// fakeClients writes a bin_dir whose pg_dump and pg_restore say they are
// the given major version and do nothing else.
func fakeClients(t *testing.T, major int) string {
	t.Helper()
	dir := t.TempDir()
	for _, prog := range []string{"pg_dump", "pg_restore"} {
		script := fmt.Sprintf("#!/bin/sh\necho '%s (PostgreSQL) %d.3'\n", prog, major)
		if err := os.WriteFile(filepath.Join(dir, prog), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// cmdOutput runs a program and returns its combined output.
func cmdOutput(t *testing.T, dir, prog string, args ...string) string {
	t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Dir = dir
	cmd.Env = CleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", prog, args, err, out)
	}
	return string(out)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// treeState describes a file or directory tree: names, modes, sizes and
// content hashes.
func treeState(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s %v %d", p, fi.Mode(), fi.Size())
		if fi.Mode().IsRegular() {
			line += " " + fileSHA256(t, p)
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
