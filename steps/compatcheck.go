package steps

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgcutover/cutover/schema"
)

// The checks compat-check knows, in the order it runs and reports them.
const (
	checkSequences     = "sequences"
	checkExtensions    = "extensions"
	checkPublicCreate  = "public_create"
	checkPgDumpVersion = "pg_dump_version"
	checkPooler        = "pooler"
)

var (
	compatChecks        = []string{checkSequences, checkExtensions, checkPublicCreate, checkPgDumpVersion, checkPooler}
	defaultCompatFailOn = []string{checkSequences, checkExtensions, checkPublicCreate, checkPgDumpVersion}
)

// pgDumpVersionRE reads the major version from `pg_dump --version`:
// "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)".
var pgDumpVersionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// sequenceBatch bounds how many sequences one query reads.
const sequenceBatch = 100

func init() {
	Register(&Type{
		Name:    "compat-check",
		Summary: "Find what breaks after a copy or restore: sequences behind max(pk), missing or untrusted extensions, no CREATE on public, an old pg_dump, a pooler in the path.",
		Doc: "Runs read-only queries on the run's shared connections to `target` (and `source`) and reports, in " +
			"`problems`, each finding with what to do about it:\n\n" +
			"- `sequences`: for every sequence a column owns on `target` (serial columns, as `pg_get_serial_sequence` " +
			"finds them, and identity columns), the next value it would hand out is compared with `max(column)` (`min` for a descending sequence). A " +
			"sequence at or behind the maximum, as after a COPY, logical replication or loaddata with explicit ids, " +
			"makes the app's next INSERT fail with `duplicate key value violates unique constraint`. Each is listed " +
			"as `table.column` (schema-qualified outside `public`) with the `setval` that fixes it.\n" +
			"- `extensions`: every extension installed on `source` (`pg_extension`) must be installed on `target` " +
			"already, or available there (`pg_available_extensions`) and creatable by the target's role: a trusted " +
			"extension needs CREATE on the database, an untrusted one a superuser. On Azure, an extension must also " +
			"be listed in the server parameter `azure.extensions`. Needs `source`.\n" +
			"- `public_create`: the target's role may CREATE in schema `public`; PostgreSQL 15 grants that only to " +
			"the database owner, and pg_restore and `manage.py migrate` fail with `permission denied for schema public`.\n" +
			"- `pg_dump_version`: the major version of the `pg_dump` on PATH is at least that of `target` and " +
			"`source` (`server_version_num / 10000`); an older one aborts with `server version mismatch`.\n" +
			"- `pooler`: a pooler sits in the path to `target` or `source` (the backend pid differs from the one the " +
			"connection announced): dumps, restores and migrations belong on the direct endpoint, and transaction " +
			"pooling needs `DISABLE_SERVER_SIDE_CURSORS=True`.\n\n" +
			"The step fails listing every problem whose check is in `fail_on`; the others are reported only.",
		Inputs: []schema.Field{
			{Name: "source", Kind: schema.String, Ref: schema.RefTarget, Doc: "the database copied from (needed by the extensions check)"},
			{Name: "target", Kind: schema.String, Ref: schema.RefTarget, Required: true, Doc: "the database copied to, as the app's role sees it"},
			{Name: "checks", Kind: schema.StringList, Enum: compatChecks, Default: compatChecks, Doc: "the checks to run; without source, the default skips extensions"},
			{Name: "fail_on", Kind: schema.StringList, Enum: compatChecks, Default: defaultCompatFailOn, Doc: "the checks whose problems fail the step"},
		},
		Outputs: []schema.Output{
			{Name: "problems", Kind: schema.StringList, Doc: "every problem found, as check: what is wrong: what to do"},
			{Name: "sequences_behind", Kind: schema.StringList, Doc: "table.column: sequence s at N, max M; fix: SELECT setval('s', M)"},
			{Name: "missing_extensions", Kind: schema.StringList, Doc: "extensions of source that target lacks and its role cannot create, sorted"},
			{Name: "public_create", Kind: schema.Bool, Doc: "the target's role may CREATE in schema public (false when not checked)"},
			{Name: "pooler", Kind: schema.Bool, Doc: "a pooler sits in the path to target or source"},
			{Name: "pg_dump_major", Kind: schema.Int, Doc: "major version of the pg_dump on PATH; 0 when not found or not checked"},
			{Name: "server_major", Kind: schema.Int, Doc: "the highest major version of target and source, which pg_dump must reach; 0 when not checked"},
		},
		DryRun: "runs (it is read-only)",
		Example: "- id: compat\n  type: compat-check\n  with: {source: old, target: new, fail_on: [sequences, extensions, public_create]}\n" +
			"  assert: [\"!steps.compat.outputs.pooler\"]\n",
		Impl: compatCheck{},
	})
}

type compatCheck struct{}

func (compatCheck) Run(ctx context.Context, c *Call) (Outputs, error) {
	a := c.Args
	target, source := a.String("target"), a.String("source")
	checks, failOn := a.Strings("checks"), a.Strings("fail_on")
	for _, in := range []struct {
		name string
		list []string
	}{{"checks", checks}, {"fail_on", failOn}} {
		for _, s := range in.list {
			if !slices.Contains(compatChecks, s) {
				return nil, Permanent(fmt.Errorf("%s lists %q; the checks are %s", in.name, s, strings.Join(compatChecks, ", ")))
			}
		}
	}
	if source == "" && slices.Contains(checks, checkExtensions) {
		if a.Has("checks") {
			return nil, Permanent(errors.New("the extensions check compares with the source: set source, or leave extensions out of checks"))
		}
		checks = slices.DeleteFunc(slices.Clone(checks), func(s string) bool { return s == checkExtensions })
		say(c, "compat-check %s: extensions not checked: no source", target)
	}
	if c.Targets == nil {
		return nil, Permanent(fmt.Errorf("no target %q", target))
	}
	tconn, err := c.Targets.Conn(ctx, target)
	if err != nil {
		return nil, err
	}
	var sconn *pgx.Conn
	if source != "" {
		if sconn, err = c.Targets.Conn(ctx, source); err != nil {
			return nil, err
		}
	}

	out := Outputs{
		"problems": []string{}, "sequences_behind": []string{}, "missing_extensions": []string{},
		"public_create": false, "pooler": false, "pg_dump_major": int64(0), "server_major": int64(0),
	}
	found := map[string][]string{}
	for _, check := range compatChecks {
		if !slices.Contains(checks, check) {
			continue
		}
		var problems []string
		var result Outputs
		switch check {
		case checkSequences:
			var behind []string
			behind, problems, err = sequencesBehind(ctx, tconn, target)
			result = Outputs{"sequences_behind": behind}
		case checkExtensions:
			var missing []string
			missing, problems, err = missingExtensions(ctx, sconn, tconn, source, target)
			result = Outputs{"missing_extensions": missing}
		case checkPublicCreate:
			var ok bool
			ok, problems, err = publicCreate(ctx, tconn, target)
			result = Outputs{"public_create": ok}
		case checkPgDumpVersion:
			var dumpMajor, serverMajor int64
			dumpMajor, serverMajor, problems, err = pgDumpVersion(ctx, tconn, sconn, target, source)
			result = Outputs{"pg_dump_major": dumpMajor, "server_major": serverMajor}
		case checkPooler:
			var pooler bool
			pooler, problems, err = poolersInPath(ctx, tconn, sconn, target, source)
			result = Outputs{"pooler": pooler}
		}
		if err != nil {
			return out, err
		}
		maps.Copy(out, result)
		found[check] = problems
	}

	all, failing := []string{}, []string{}
	for _, check := range compatChecks {
		for _, p := range found[check] {
			p = check + ": " + p
			all = append(all, p)
			if slices.Contains(failOn, check) {
				failing = append(failing, p)
			}
		}
	}
	out["problems"] = all
	if len(all) == 0 {
		say(c, "compat-check %s: no problems (%s)", target, strings.Join(checks, ", "))
	}
	for _, p := range all {
		say(c, "compat-check %s: %s", target, p)
	}
	if len(failing) > 0 {
		return out, Permanent(fmt.Errorf("compat-check on target %s: %s", target, listProblems(failing)))
	}
	return out, nil
}

// ownedSequence is a sequence a table column owns.
type ownedSequence struct {
	schema, table, column string
	seqSchema, seqName    string
	seq                   string // schema-qualified and quoted, as pg_get_serial_sequence gives it
	increment             int64
	readable              bool
}

// label names the column as table.column, schema-qualified outside public.
func (s ownedSequence) label() string {
	if s.schema == "public" {
		return s.table + "." + s.column
	}
	return s.schema + "." + s.table + "." + s.column
}

// sequencesBehind compares every column-owned sequence on the target with
// the column's values, in one read-only transaction.
func sequencesBehind(ctx context.Context, conn *pgx.Conn, name string) (behind, problems []string, err error) {
	behind = []string{}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, nil, queryError(name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	rows, err := tx.Query(ctx, `SELECT n.nspname, t.relname, a.attname, sn.nspname, s.relname, format('%I.%I', sn.nspname, s.relname),
	q.seqincrement, has_sequence_privilege(s.oid, 'SELECT') AND has_column_privilege(t.oid, a.attnum, 'SELECT')
FROM pg_depend d
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_sequence q ON q.seqrelid = s.oid
JOIN pg_class t ON t.oid = d.refobjid AND t.relkind IN ('r', 'p')
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
	AND d.deptype IN ('a', 'i')
	AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)
	AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1, 2, 3`)
	if err != nil {
		return nil, nil, queryError(name, err)
	}
	var seqs []ownedSequence
	var s ownedSequence
	_, err = pgx.ForEachRow(rows, []any{&s.schema, &s.table, &s.column, &s.seqSchema, &s.seqName, &s.seq, &s.increment, &s.readable}, func() error {
		seqs = append(seqs, s)
		return nil
	})
	if err != nil {
		return nil, nil, queryError(name, err)
	}
	var readable []ownedSequence
	for _, s := range seqs {
		if s.readable {
			readable = append(readable, s)
			continue
		}
		problems = append(problems, fmt.Sprintf("%s: cannot compare sequence %s with the column: the role lacks SELECT on one of them; run compat-check with the tables' owner",
			s.label(), s.seq))
	}
	for start := 0; start < len(readable); start += sequenceBatch {
		batch := readable[start:min(start+sequenceBatch, len(readable))]
		var q strings.Builder
		for i, s := range batch {
			if i > 0 {
				q.WriteString("\nUNION ALL ")
			}
			agg := "max"
			if s.increment < 0 {
				agg = "min"
			}
			fmt.Fprintf(&q, "SELECT %d, last_value, is_called, (SELECT %s(%s)::bigint FROM %s) FROM %s",
				i, agg, pgx.Identifier{s.column}.Sanitize(), pgx.Identifier{s.schema, s.table}.Sanitize(),
				pgx.Identifier{s.seqSchema, s.seqName}.Sanitize())
		}
		rows, err := tx.Query(ctx, q.String())
		if err != nil {
			return nil, nil, queryError(name, err)
		}
		var i int
		var last int64
		var called bool
		var edge *int64
		_, err = pgx.ForEachRow(rows, []any{&i, &last, &called, &edge}, func() error {
			if p := sequenceLag(batch[i], last, called, edge); p != "" {
				behind = append(behind, p)
			}
			return nil
		})
		if err != nil {
			return nil, nil, queryError(name, err)
		}
	}
	return behind, append(slices.Clone(behind), problems...), nil
}

// sequenceLag describes a sequence whose next value is already taken in
// its column, or returns "". last and called are the sequence's last_value
// and is_called; edge is the column's max (min for a descending sequence),
// nil for no rows.
func sequenceLag(s ownedSequence, last int64, called bool, edge *int64) string {
	if edge == nil {
		return ""
	}
	next := last
	if called {
		next = last + s.increment
	}
	word := "max"
	if s.increment < 0 {
		word = "min"
		if next < *edge {
			return ""
		}
	} else if next > *edge {
		return ""
	}
	return fmt.Sprintf("%s: sequence %s at %d, %s %d; fix: SELECT setval('%s', %d)",
		s.label(), s.seq, last, word, *edge, strings.ReplaceAll(s.seq, "'", "''"), *edge)
}

// targetExtensions is what the target offers and what its role may do.
type targetExtensions struct {
	name, role, database string
	available            map[string]extensionOffer
	superuser, createDB  bool
	// allowList is azure.extensions, lowercased, when the server has it.
	allowList []string
}

// extensionOffer is one entry of pg_available_extensions, with its default
// version's flags.
type extensionOffer struct {
	installed     bool
	trusted       bool
	superuserOnly bool
}

// missingExtensions diffs the source's extensions against what the target
// has or lets its role create.
func missingExtensions(ctx context.Context, src, dst *pgx.Conn, source, target string) (missing, problems []string, err error) {
	rows, err := src.Query(ctx, "SELECT extname FROM pg_extension ORDER BY extname")
	if err != nil {
		return nil, nil, queryError(source, err)
	}
	onSource, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, nil, queryError(source, err)
	}
	t := targetExtensions{name: target, available: map[string]extensionOffer{}}
	var allow *string
	err = dst.QueryRow(ctx, `SELECT current_user, current_database(),
	(SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
	has_database_privilege(current_database(), 'CREATE'),
	current_setting('azure.extensions', true)`).Scan(&t.role, &t.database, &t.superuser, &t.createDB, &allow)
	if err != nil {
		return nil, nil, queryError(target, err)
	}
	if allow != nil && strings.TrimSpace(*allow) != "" {
		for _, e := range strings.Split(*allow, ",") {
			t.allowList = append(t.allowList, strings.ToLower(strings.TrimSpace(e)))
		}
	}
	rows, err = dst.Query(ctx, `SELECT e.name, e.installed_version IS NOT NULL, coalesce(v.trusted, false), coalesce(v.superuser, true)
FROM pg_available_extensions e
LEFT JOIN pg_available_extension_versions v ON v.name = e.name AND v.version = e.default_version`)
	if err != nil {
		return nil, nil, queryError(target, err)
	}
	var extName string
	var offer extensionOffer
	_, err = pgx.ForEachRow(rows, []any{&extName, &offer.installed, &offer.trusted, &offer.superuserOnly}, func() error {
		t.available[extName] = offer
		return nil
	})
	if err != nil {
		return nil, nil, queryError(target, err)
	}
	missing, problems = t.lacking(source, onSource)
	return missing, problems, nil
}

// lacking returns the extensions of the source the target cannot have, and
// a problem for each, saying why and what to do.
func (t targetExtensions) lacking(source string, onSource []string) (missing, problems []string) {
	missing = []string{}
	for _, ext := range onSource {
		offer, ok := t.available[ext]
		var p string
		switch {
		case ok && offer.installed:
			continue
		case !ok:
			p = fmt.Sprintf("extension %s (installed on %s) is not available on target %s: the server does not ship it; ask the provider for it, or drop it from the source schema before the copy", ext, source, t.name)
		case t.allowList != nil:
			if slices.Contains(t.allowList, strings.ToLower(ext)) {
				continue
			}
			p = fmt.Sprintf("extension %s (installed on %s) is not allow-listed on target %s: add it to the server parameter azure.extensions, then CREATE EXTENSION %s before the restore", ext, source, t.name, pgx.Identifier{ext}.Sanitize())
		case t.superuser:
			continue
		case offer.superuserOnly && !offer.trusted:
			p = fmt.Sprintf("extension %s (installed on %s) is untrusted: only a superuser can create it, and role %s on target %s is not one; have the provider's admin role CREATE EXTENSION %s in database %s before the restore, or drop it from the source schema",
				ext, source, t.role, t.name, pgx.Identifier{ext}.Sanitize(), t.database)
		case !t.createDB:
			p = fmt.Sprintf("extension %s (installed on %s) needs CREATE on database %s, which role %s on target %s lacks: GRANT CREATE ON DATABASE %s TO %s, or create the extension before the restore",
				ext, source, t.database, t.role, t.name, pgx.Identifier{t.database}.Sanitize(), pgx.Identifier{t.role}.Sanitize())
		default:
			continue
		}
		missing = append(missing, ext)
		problems = append(problems, p)
	}
	slices.Sort(missing)
	return missing, problems
}

// publicCreate checks that the target's role may create objects in schema
// public.
func publicCreate(ctx context.Context, conn *pgx.Conn, name string) (ok bool, problems []string, err error) {
	var role, db string
	var exists bool
	err = conn.QueryRow(ctx, `SELECT current_user, current_database(),
	EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public'),
	coalesce((SELECT has_schema_privilege(current_user, oid, 'CREATE') FROM pg_namespace WHERE nspname = 'public'), false)`).Scan(&role, &db, &exists, &ok)
	if err != nil {
		return false, nil, queryError(name, err)
	}
	r, d := pgx.Identifier{role}.Sanitize(), pgx.Identifier{db}.Sanitize()
	switch {
	case !exists:
		problems = append(problems, fmt.Sprintf("database %s on target %s has no schema public, where Django creates its tables: CREATE SCHEMA public AUTHORIZATION %s", db, name, r))
	case !ok:
		problems = append(problems, fmt.Sprintf("role %s cannot CREATE in schema public of database %s on target %s (since PostgreSQL 15 only the database owner can), so pg_restore and manage.py migrate would fail with \"permission denied for schema public\": ALTER DATABASE %s OWNER TO %s, or GRANT CREATE ON SCHEMA public TO %s",
			role, db, name, d, r, r))
	}
	return ok, problems, nil
}

// pgDumpVersion compares the major version of the pg_dump on PATH with the
// servers'.
func pgDumpVersion(ctx context.Context, target, source *pgx.Conn, tname, sname string) (dumpMajor, serverMajor int64, problems []string, err error) {
	type server struct {
		role, name string
		major      int64
	}
	servers := []server{{role: "target", name: tname}}
	conns := []*pgx.Conn{target}
	if source != nil {
		servers = append(servers, server{role: "source", name: sname})
		conns = append(conns, source)
	}
	for i := range servers {
		if err := conns[i].QueryRow(ctx, "SELECT current_setting('server_version_num')::int / 10000").Scan(&servers[i].major); err != nil {
			return 0, 0, nil, queryError(servers[i].name, err)
		}
		serverMajor = max(serverMajor, servers[i].major)
	}
	path, err := exec.LookPath("pg_dump")
	if err != nil {
		return 0, serverMajor, []string{fmt.Sprintf("no pg_dump on PATH: install the PostgreSQL %d client (postgresql-client-%d) and put its bin directory on PATH", serverMajor, serverMajor)}, nil
	}
	cmd := exec.CommandContext(ctx, path, "--version")
	cmd.Env = CleanEnv()
	text, err := cmd.Output()
	if err != nil {
		return 0, serverMajor, []string{fmt.Sprintf("%s --version failed (%v): install the PostgreSQL %d client (postgresql-client-%d)", path, err, serverMajor, serverMajor)}, nil
	}
	m := pgDumpVersionRE.FindSubmatch(text)
	if m == nil {
		return 0, serverMajor, []string{fmt.Sprintf("%s --version printed %q, which names no PostgreSQL version: put PostgreSQL's own pg_dump first on PATH", path, strings.TrimSpace(string(text)))}, nil
	}
	dumpMajor, _ = strconv.ParseInt(string(m[1]), 10, 64)
	for _, s := range servers {
		if dumpMajor < s.major {
			problems = append(problems, fmt.Sprintf("%s is pg_dump %d but %s %s runs PostgreSQL %d: pg_dump would abort with \"server version mismatch\"; install postgresql-client-%d and put it first on PATH",
				path, dumpMajor, s.role, s.name, s.major, s.major))
		}
	}
	return dumpMajor, serverMajor, problems, nil
}

// poolersInPath checks the target's and the source's connections for a
// pooler.
func poolersInPath(ctx context.Context, target, source *pgx.Conn, tname, sname string) (found bool, problems []string, err error) {
	check := func(conn *pgx.Conn, role, name string) error {
		pooler, _, err := poolerInPath(ctx, conn)
		if err != nil {
			return queryError(name, err)
		}
		if pooler {
			found = true
			problems = append(problems, fmt.Sprintf("%s %s is reached through a pooler (the backend pid differs from the one the connection announced): run pg_dump, pg_restore and manage.py migrate against the direct endpoint, and set DISABLE_SERVER_SIDE_CURSORS=True if it pools transactions", role, name))
		}
		return nil
	}
	if err := check(target, "target", tname); err != nil {
		return false, nil, err
	}
	if source != nil {
		if err := check(source, "source", sname); err != nil {
			return false, nil, err
		}
	}
	return found, problems, nil
}
