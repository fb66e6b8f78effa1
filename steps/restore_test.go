package steps

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgcutover/cutover/steps/pgtest"
)

// takeSnapshot snapshots database db of cl as app into a new directory and
// returns the archive's path.
func takeSnapshot(t *testing.T, cl *pgtest.Cluster, db string, with map[string]any) string {
	t.Helper()
	ts := dumpTargets(t, dbTarget(cl, "old", db, "app"))
	if with == nil {
		with = map[string]any{}
	}
	with["dir"] = filepath.Join(t.TempDir(), "snap")
	out, live, err := runSnapshot(t, ts, with)
	if err != nil {
		t.Fatalf("snapshot: %v\n%s", err, live)
	}
	return out["path"].(string)
}

// restoreStep runs restore (or its dry run) against database db of cl as
// user.
func restoreStep(t *testing.T, cl *pgtest.Cluster, db, user string, with map[string]any, dry bool) (Outputs, string, error) {
	t.Helper()
	ts := dumpTargets(t, dbTarget(cl, "new", db, user))
	with["target"] = "new"
	c, live := newCall(t, "restore", with, ts)
	var out Outputs
	var err error
	if dry {
		var ran bool
		out, ran, err = restore{}.DryRun(context.Background(), c)
		if !ran {
			t.Fatal("the dry run did not run")
		}
	} else {
		out, err = restore{}.Run(context.Background(), c)
	}
	return out, live.String(), err
}

// inspect opens a connection to database db of cl as app, for the test's
// own queries.
func inspect(t *testing.T, cl *pgtest.Cluster, db string) *pgx.Conn {
	t.Helper()
	ts := dumpTargets(t, dbTarget(cl, "inspect", db, "app"))
	conn, err := ts.Conn(context.Background(), "inspect")
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func queryStrings(t *testing.T, conn *pgx.Conn, sql string, args ...any) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// dbState describes everything a restore must bring back, one line per
// fact: schemas, relations (indexes included), columns, each table's row
// count and a hash of its rows, sequence positions, routines, types and
// extensions.
func dbState(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	const user = `nspname !~ '^pg_' AND nspname <> 'information_schema'`
	var lines []string
	add := func(prefix, sql string) {
		for _, s := range queryStrings(t, conn, sql) {
			lines = append(lines, prefix+" "+s)
		}
	}
	add("schema", `SELECT nspname FROM pg_namespace WHERE `+user)
	add("relation", `SELECT nspname || '.' || relname || ' ' || relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE `+user)
	add("column", `SELECT table_schema || '.' || table_name || '.' || column_name || ' ' || data_type || ' ' || coalesce(column_default, '')
		FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog', 'information_schema')`)
	add("sequence", `SELECT schemaname || '.' || sequencename || ' = ' || coalesce(last_value, 0) FROM pg_sequences`)
	add("routine", `SELECT nspname || '.' || proname || '(' || oidvectortypes(proargtypes) || ')' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE `+user)
	add("type", `SELECT nspname || '.' || typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE typtype IN ('e', 'd', 'r') AND `+user)
	add("extension", `SELECT extname FROM pg_extension`)
	add("owner", `SELECT DISTINCT 'relations owned by ' || pg_get_userbyid(relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE `+user)
	for _, tab := range queryStrings(t, conn, `SELECT format('%I.%I', nspname, relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE relkind = 'r' AND `+user) {
		add("rows", fmt.Sprintf(`SELECT '%s ' || count(*) || ' ' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '-') FROM %s t`, tab, tab))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// rowCounts counts the rows of the seeded tables.
func rowCounts(t *testing.T, conn *pgx.Conn) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for q := range seededTables {
		var n int64
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		out[q] = n
	}
	return out
}

// diffLines shows the lines only in a and only in b.
func diffLines(a, b string) string {
	as, bs := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for _, l := range as {
		if !slices.Contains(bs, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range bs {
		if !slices.Contains(as, l) {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

func TestRestoreIntoFreshDatabaseAsOwner(t *testing.T) {
	cl := dumpCluster(t, "fresh")
	commands := recordCommands(t)
	from := takeSnapshot(t, cl, "appdb", nil)

	out, live, err := restoreStep(t, cl, "fresh", "app", map[string]any{"from": from}, false)
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, live)
	}
	wantOutputs(t, out, Outputs{"restored_tables": int64(len(seededTables)), "dropped": []string{}, "checksums_verified": true})
	if _, ok := out["duration_ms"].(int64); !ok {
		t.Errorf("duration_ms = %#v", out["duration_ms"])
	}

	src, dst := inspect(t, cl, "appdb"), inspect(t, cl, "fresh")
	if got, want := rowCounts(t, dst), rowCounts(t, src); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("row counts %v, want %v", got, want)
	}
	if d := diffLines(dbState(t, src), dbState(t, dst)); d != "" {
		t.Errorf("the restored database differs from its source:\n%s", d)
	}
	var analyzed int
	if err := dst.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL").Scan(&analyzed); err != nil {
		t.Fatal(err)
	}
	if analyzed != len(seededTables) {
		t.Errorf("%d tables analyzed, want %d", analyzed, len(seededTables))
	}

	restoreCmd := findCommand(t, commands(), "pg_restore", "--no-owner")
	for _, arg := range []string{"--no-acl", "--exit-on-error", "--clean", "--if-exists", "--no-subscriptions", "-w", "-L", from} {
		if !slices.Contains(restoreCmd.args, arg) {
			t.Errorf("pg_restore argv %q lacks %q", restoreCmd.args, arg)
		}
	}
	if i := slices.Index(restoreCmd.args, "-d"); i < 0 || restoreCmd.args[i+1] != "" {
		t.Errorf("pg_restore argv %q: want -d '' so that the database comes from PGDATABASE", restoreCmd.args)
	}
	if i := slices.Index(restoreCmd.args, "-j"); i < 0 || restoreCmd.args[i+1] != "2" {
		t.Errorf("pg_restore argv %q: want -j 2", restoreCmd.args)
	}
	if !slices.Contains(restoreCmd.env, "PGDATABASE=fresh") || !slices.Contains(restoreCmd.env, "PGUSER=app") {
		t.Errorf("pg_restore environment lacks the target's database and user: %q", restoreCmd.env)
	}
	assertCommandsClean(t, commands())
	assertNoDumpCanary(t, "the live output", live)
	assertNoDumpCanary(t, "the outputs", fmt.Sprint(out))
}

// migrationSQL is a migration that got half way, run as the app role: a new
// table with a view and a function, a column, an index, rows added and
// removed, a dropped view, a moved sequence, a new type, extension and
// schema.
const migrationSQL = `SET ROLE app;
CREATE TABLE half_applied (id serial PRIMARY KEY, note text);
INSERT INTO half_applied (note) SELECT 'n' || g FROM generate_series(1, 20) g;
CREATE VIEW new_view AS SELECT * FROM half_applied;
CREATE FUNCTION new_fn(integer) RETURNS integer LANGUAGE sql AS 'SELECT $1';
CREATE TYPE new_enum AS ENUM ('x');
ALTER TABLE widgets ADD COLUMN colour text DEFAULT 'red';
INSERT INTO widgets (name) SELECT 'extra' || g FROM generate_series(1, 7) g;
DELETE FROM orders WHERE id <= 10;
CREATE INDEX orders_qty ON orders (qty);
DROP VIEW big_orders;
SELECT setval('invoice_no', 99999);
CREATE EXTENSION pg_trgm;
CREATE SCHEMA reporting;
CREATE TABLE reporting.daily (d date);
RESET ROLE;`

func TestRestoreExactUndoesAHalfAppliedMigration(t *testing.T) {
	cl := dumpCluster(t)
	conn := inspect(t, cl, "appdb")
	commands := recordCommands(t)
	from := takeSnapshot(t, cl, "appdb", nil)
	atSnapshot := dbState(t, conn)
	countsAtSnapshot := rowCounts(t, conn)
	if err := cl.Exec(context.Background(), "appdb", migrationSQL); err != nil {
		t.Fatal(err)
	}
	migrated := dbState(t, conn)
	wantDropped := []string{"view public.new_view", "table public.half_applied", "function public.new_fn(integer)",
		"type public.new_enum", "extension pg_trgm", "schema reporting"}

	t.Run("the dry run reports and changes nothing", func(t *testing.T) {
		out, live, err := restoreStep(t, cl, "appdb", "app", map[string]any{"from": from}, true)
		if err != nil {
			t.Fatalf("%v\n%s", err, live)
		}
		wantOutputs(t, out, Outputs{"restored_tables": int64(len(seededTables)), "dropped": wantDropped, "checksums_verified": true})
		if d := diffLines(migrated, dbState(t, conn)); d != "" {
			t.Errorf("the dry run changed the database:\n%s", d)
		}
		for _, c := range commands() {
			if filepath.Base(c.args[0]) == "pg_restore" && !slices.Contains(c.args, "--list") && !slices.Contains(c.args, "--version") {
				t.Errorf("the dry run ran %q", c.args)
			}
		}
		for _, want := range []string{"would drop 6 objects the snapshot does not hold: " + strings.Join(wantDropped, ", "), "and restore 4 tables"} {
			if !strings.Contains(live, want) {
				t.Errorf("live output lacks %q:\n%s", want, live)
			}
		}
	})

	t.Run("clean alone leaves what came after", func(t *testing.T) {
		out, live, err := restoreStep(t, cl, "appdb", "app", map[string]any{"from": from, "exact": false}, false)
		if err != nil {
			t.Fatalf("%v\n%s", err, live)
		}
		wantOutputs(t, out, Outputs{"dropped": []string{}})
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM half_applied").Scan(&n); err != nil || n != 20 {
			t.Errorf("half_applied: %d rows, err %v; clean alone should leave it", n, err)
		}
		if fmt.Sprint(rowCounts(t, conn)) != fmt.Sprint(countsAtSnapshot) {
			t.Errorf("row counts %v, want %v", rowCounts(t, conn), countsAtSnapshot)
		}
		if d := diffLines(atSnapshot, dbState(t, conn)); !strings.Contains(d, "+ relation public.half_applied r") {
			t.Errorf("expected half_applied to remain; differences:\n%s", d)
		}
	})

	t.Run("exact restores the snapshot exactly", func(t *testing.T) {
		out, live, err := restoreStep(t, cl, "appdb", "app", map[string]any{"from": from}, false)
		if err != nil {
			t.Fatalf("%v\n%s", err, live)
		}
		wantOutputs(t, out, Outputs{"restored_tables": int64(len(seededTables)), "dropped": wantDropped})
		if d := diffLines(atSnapshot, dbState(t, conn)); d != "" {
			t.Errorf("after the restore the database differs from the snapshot:\n%s", d)
		}
		var gone bool
		if err := conn.QueryRow(context.Background(), "SELECT to_regclass('public.half_applied') IS NULL").Scan(&gone); err != nil || !gone {
			t.Errorf("half_applied still exists (err %v)", err)
		}
		var hasColour bool
		if err := conn.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'widgets' AND column_name = 'colour')`).Scan(&hasColour); err != nil || hasColour {
			t.Errorf("widgets.colour still exists (err %v)", err)
		}
		if got := rowCounts(t, conn); fmt.Sprint(got) != fmt.Sprint(countsAtSnapshot) {
			t.Errorf("row counts %v, want %v", got, countsAtSnapshot)
		}
		if !strings.Contains(live, "dropped 6 objects the snapshot does not hold") {
			t.Errorf("live output:\n%s", live)
		}
	})

	t.Run("running it again is harmless", func(t *testing.T) {
		out, live, err := restoreStep(t, cl, "appdb", "app", map[string]any{"from": from}, false)
		if err != nil {
			t.Fatalf("%v\n%s", err, live)
		}
		wantOutputs(t, out, Outputs{"dropped": []string{}})
		if d := diffLines(atSnapshot, dbState(t, conn)); d != "" {
			t.Errorf("a second restore changed the result:\n%s", d)
		}
	})
	assertCommandsClean(t, commands())
}

func TestRestoreExactRefusesWhatItCannotDrop(t *testing.T) {
	cl := dumpCluster(t)
	conn := inspect(t, cl, "appdb")
	from := takeSnapshot(t, cl, "appdb", nil)
	// Created after the snapshot by another role.
	if err := cl.Exec(context.Background(), "appdb", "CREATE TABLE not_ours (x int); GRANT SELECT ON not_ours TO app; SET ROLE app; CREATE TABLE ours (x int); RESET ROLE;"); err != nil {
		t.Fatal(err)
	}
	before := dbState(t, conn)
	_, _, err := restoreStep(t, cl, "appdb", "app", map[string]any{"from": from}, false)
	wantError(t, err, "exact restore cannot remove table public.not_ours, which the snapshot does not hold: it is owned by postgres, not app; drop it as postgres, or set exact: false")
	if d := diffLines(before, dbState(t, conn)); d != "" {
		t.Errorf("the refused restore changed the database:\n%s", d)
	}
}

func TestRestoreExactLeavesExcludedTablesAlone(t *testing.T) {
	cl := dumpCluster(t)
	conn := inspect(t, cl, "appdb")
	from := takeSnapshot(t, cl, "appdb", map[string]any{"exclude_tables": []string{"empty_things"}})
	if err := cl.Exec(context.Background(), "appdb", "INSERT INTO empty_things VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	out, live, err := restoreStep(t, cl, "appdb", "app", map[string]any{"from": from}, false)
	if err != nil {
		t.Fatalf("%v\n%s", err, live)
	}
	wantOutputs(t, out, Outputs{"restored_tables": int64(len(seededTables) - 1), "dropped": []string{}})
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM empty_things").Scan(&n); err != nil || n != 2 {
		t.Errorf("empty_things: %d rows (err %v); a table the snapshot left out is not the restore's to touch", n, err)
	}
}

func TestRestoreWithoutPrivilegesSaysWhy(t *testing.T) {
	cl := dumpCluster(t, "fresh")
	from := takeSnapshot(t, cl, "appdb", nil)
	fresh, app := inspect(t, cl, "fresh"), inspect(t, cl, "appdb")
	freshBefore, appBefore := dbState(t, fresh), dbState(t, app)

	t.Run("no CREATE on public", func(t *testing.T) {
		_, _, err := restoreStep(t, cl, "fresh", "intruder", map[string]any{"from": from}, false)
		want := "role intruder cannot create objects in schema public of the target: permission denied for schema public"
		if cl.Version >= 15 {
			want += " (PostgreSQL 15 no longer grants CREATE on public to every role)"
		}
		wantError(t, err, want+"; restore as the database owner, or GRANT CREATE ON SCHEMA public TO intruder")
		if !IsPermanent(err) {
			t.Error("a missing privilege is not worth retrying")
		}
	})

	t.Run("no CREATE on the database for a new schema", func(t *testing.T) {
		billing := takeSnapshot(t, cl, "appdb", map[string]any{"schemas": []string{"billing"}})
		_, _, err := restoreStep(t, cl, "fresh", "intruder", map[string]any{"from": billing}, false)
		wantError(t, err, "role intruder cannot create schemas in database fresh of the target: permission denied for database fresh; "+
			"restore as the database owner, or GRANT CREATE ON DATABASE fresh TO intruder")
	})

	t.Run("objects of another role", func(t *testing.T) {
		_, _, err := restoreStep(t, cl, "appdb", "intruder", map[string]any{"from": from}, false)
		wantErrorPrefix(t, err, "function public.order_total(public.orders) on the target is owned by app, not intruder, so the restore cannot replace it; restore as app; ")
		if err != nil && !strings.Contains(err.Error(), "table public.widgets on the target is owned by app, not intruder") {
			t.Errorf("the error does not name widgets: %v", err)
		}
	})

	t.Run("without clean, existing objects are in the way", func(t *testing.T) {
		_, _, err := restoreStep(t, cl, "appdb", "app", map[string]any{"from": from, "clean": false, "exact": false}, false)
		wantErrorPrefix(t, err, "function public.order_total(public.orders) already exists on the target; restore with clean: true to replace it; ")
	})

	t.Run("exact needs clean", func(t *testing.T) {
		_, _, err := restoreStep(t, cl, "appdb", "app", map[string]any{"from": from, "clean": false}, false)
		wantError(t, err, "exact needs clean: an exact restore replaces the objects the snapshot holds")
	})

	if d := diffLines(freshBefore, dbState(t, fresh)); d != "" {
		t.Errorf("the refused restores changed fresh:\n%s", d)
	}
	if d := diffLines(appBefore, dbState(t, app)); d != "" {
		t.Errorf("the refused restores changed appdb:\n%s", d)
	}
}

func TestRestoreUntrustedExtensionSaysWhat(t *testing.T) {
	cl := dumpCluster(t, "fresh")
	// The source has a trusted extension the app created and an untrusted one
	// a superuser created.
	if err := cl.Exec(context.Background(), "appdb", "CREATE EXTENSION pg_buffercache; SET ROLE app; CREATE EXTENSION citext; RESET ROLE;"); err != nil {
		t.Fatal(err)
	}
	from := takeSnapshot(t, cl, "appdb", nil)
	fresh := inspect(t, cl, "fresh")
	before := dbState(t, fresh)
	for _, dry := range []bool{true, false} {
		_, _, err := restoreStep(t, cl, "fresh", "app", map[string]any{"from": from}, dry)
		wantError(t, err, `extension pg_buffercache cannot be created by app on the target: it is not trusted; ask the provider to allow it or drop it from the source `+
			`(the server said: permission denied to create extension "pg_buffercache" (Must be superuser to create this extension.))`)
	}
	if d := diffLines(before, dbState(t, fresh)); d != "" {
		t.Errorf("the refused restore changed the target:\n%s", d)
	}

	t.Run("an extension the target has is kept", func(t *testing.T) {
		if err := cl.Exec(context.Background(), "fresh", "CREATE EXTENSION pg_buffercache"); err != nil {
			t.Fatal(err)
		}
		out, live, err := restoreStep(t, cl, "fresh", "app", map[string]any{"from": from}, false)
		if err != nil {
			t.Fatalf("%v\n%s", err, live)
		}
		wantOutputs(t, out, Outputs{"restored_tables": int64(len(seededTables))})
		got := queryStrings(t, fresh, "SELECT extname || ' ' || pg_get_userbyid(extowner) FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1")
		if strings.Join(got, ", ") != "citext app, pg_buffercache postgres" {
			t.Errorf("extensions after the restore: %v", got)
		}
	})
}

func TestRestoreRefusesADamagedSnapshot(t *testing.T) {
	cl := dumpCluster(t, "fresh")
	from := takeSnapshot(t, cl, "appdb", nil)
	names, err := snapshotFiles(from)
	if err != nil {
		t.Fatal(err)
	}
	var data string
	for _, n := range names {
		if strings.HasSuffix(n, ".dat.gz") {
			data = n
		}
	}
	b := []byte(readFile(t, filepath.Join(from, data)))
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(filepath.Join(from, data), b, 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := inspect(t, cl, "fresh")
	before := dbState(t, fresh)
	out, _, err := restoreStep(t, cl, "fresh", "app", map[string]any{"from": from}, false)
	wantError(t, err, "the snapshot in "+from+" is damaged: checksum mismatch for "+data)
	if out != nil {
		t.Errorf("outputs %v", out)
	}
	if d := diffLines(before, dbState(t, fresh)); d != "" {
		t.Errorf("the refused restore changed the target:\n%s", d)
	}
}

func TestRestoreCustomFormat(t *testing.T) {
	cl := dumpCluster(t, "fresh", "fresh2")
	archive := takeSnapshot(t, cl, "appdb", map[string]any{"format": "custom"})
	for db, from := range map[string]string{"fresh": archive, "fresh2": filepath.Dir(archive)} {
		out, live, err := restoreStep(t, cl, db, "app", map[string]any{"from": from, "jobs": 3}, false)
		if err != nil {
			t.Fatalf("from %s: %v\n%s", from, err, live)
		}
		wantOutputs(t, out, Outputs{"restored_tables": int64(len(seededTables)), "checksums_verified": true})
		if got, want := rowCounts(t, inspect(t, cl, db)), rowCounts(t, inspect(t, cl, "appdb")); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("from %s: row counts %v, want %v", from, got, want)
		}
	}
}

func TestRestorePlainPgDumpArchive(t *testing.T) {
	cl := dumpCluster(t, "fresh")
	archive := filepath.Join(t.TempDir(), "appdb.dump")
	cmdOutput(t, "", "pg_dump", "-Fc", "-h", cl.SocketDir, "-p", fmt.Sprint(cl.Port), "-U", "app", "-f", archive, "appdb")
	out, live, err := restoreStep(t, cl, "fresh", "app", map[string]any{"from": archive}, false)
	if err != nil {
		t.Fatalf("%v\n%s", err, live)
	}
	wantOutputs(t, out, Outputs{"restored_tables": int64(len(seededTables)), "checksums_verified": false, "dropped": []string{}})
	if !strings.Contains(live, "has no SHA256SUMS; the archive's integrity is not checked") {
		t.Errorf("live output does not say the archive is unchecked:\n%s", live)
	}
	if got, want := rowCounts(t, inspect(t, cl, "fresh")), rowCounts(t, inspect(t, cl, "appdb")); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("row counts %v, want %v", got, want)
	}
}

func TestRestoreVersionChecks(t *testing.T) {
	wantError(t, checkRestoreVersions(160004, 150018), "the snapshot comes from PostgreSQL 16 and the target runs 15: restoring into an older major version is not supported")
	if err := checkRestoreVersions(140010, 150018); err != nil {
		t.Errorf("restoring into a newer server: %v", err)
	}

	cl := dumpCluster(t)
	from := takeSnapshot(t, cl, "appdb", nil)
	_, _, err := restoreStep(t, cl, "appdb", "app", map[string]any{"from": from, "bin_dir": fakeClients(t, cl.Version-1)}, false)
	wantError(t, err, fmt.Sprintf("pg_restore %d cannot read a snapshot made by pg_dump %d: install postgresql-client-%d (or set bin_dir to its bin directory)",
		cl.Version-1, cl.Version, cl.Version))

	_, _, err = restoreStep(t, cl, "appdb", "app", map[string]any{"from": filepath.Join(t.TempDir(), "nothing")}, false)
	wantErrorPrefix(t, err, "no snapshot at ")
}
