package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcutover/cutover/schema"
)

func init() {
	Register(&Type{
		Name:    "restore",
		Summary: "Restore a snapshot into a target with pg_restore as its (non-superuser) role; with exact, leave nothing that the snapshot does not hold.",
		Doc: "Runs pg_restore with `--no-owner --no-acl --no-subscriptions --exit-on-error` and `jobs` parallel jobs, connected through the target's libpq environment " +
			"with the password only in a private 0600 passfile. Objects come out owned by the target's role, which is what a managed service allows. " +
			"A snapshot made by the snapshot step is first checked against its SHA256SUMS.\n\n" +
			"With `clean: true` (the default) the objects the snapshot holds are dropped and recreated, so their definitions, data and sequence values are the snapshot's again: " +
			"a column, index or row added since goes with its table. " +
			"`exact: true` (the default) also drops, before restoring and in one transaction, the objects created since the snapshot: " +
			"every table, view, materialized view, sequence, function, procedure, aggregate, type and domain in the schemas the snapshot covers that it does not hold " +
			"(and, for a whole-database snapshot, schemas and extensions it does not hold), which is what a rollback after a half-applied migration needs. " +
			"The `dropped` output lists them. Only objects the role owns can go: another role's object that the snapshot does not hold fails the step before anything changes; " +
			"so do objects of the snapshot owned by another role, a missing CREATE privilege (PostgreSQL 15 no longer grants CREATE on schema public to every role), " +
			"an extension the role may not create (the step tries CREATE EXTENSION in a transaction it rolls back), and a snapshot from a newer major version than the target's.\n\n" +
			"Not covered by exact: collations, operators, text search objects, casts, large objects and other schemas' objects; " +
			"with --no-acl, grants to other roles are not restored. Extensions that already exist on the target are kept as they are. " +
			"pg_restore does not run in one transaction (parallel jobs cannot); if it fails the target is partly restored, and running the restore again is safe. " +
			"Afterwards every table of the snapshot must exist, and `analyze: true` gathers planner statistics for them.",
		Inputs: []schema.Field{
			{Name: "target", Kind: schema.String, Ref: schema.RefTarget, Required: true, Doc: "the target to restore into"},
			{Name: "from", Kind: schema.String, Required: true, Doc: "the snapshot: a directory archive, a custom archive file, or a snapshot step's dir (e.g. ${{ steps.snapshot.outputs.path }})"},
			{Name: "jobs", Kind: schema.Int, Default: int64(2), Doc: "parallel pg_restore jobs"},
			{Name: "clean", Kind: schema.Bool, Default: true, Doc: "drop and recreate the objects the snapshot holds (pg_restore --clean --if-exists)"},
			{Name: "exact", Kind: schema.Bool, Default: true, Doc: "also drop what the snapshot does not hold in the schemas it covers, so the target ends exactly as the snapshot; needs clean"},
			{Name: "analyze", Kind: schema.Bool, Default: true, Doc: "ANALYZE the restored tables, so the planner has statistics at once"},
			{Name: "lock_timeout", Kind: schema.Duration, Default: 30 * time.Second, Doc: "how long the drops of an exact restore wait for a lock another session holds"},
			{Name: "bin_dir", Kind: schema.String, Doc: "directory holding pg_restore; default: the one on PATH"},
		},
		Outputs: []schema.Output{
			{Name: "restored_tables", Kind: schema.Int, Doc: "tables restored (TABLE DATA entries), each checked to exist afterwards"},
			{Name: "dropped", Kind: schema.StringList, Doc: "objects removed because the snapshot does not hold them, e.g. \"table public.half_applied\""},
			{Name: "checksums_verified", Kind: schema.Bool, Doc: "the snapshot's SHA256SUMS was present and matched"},
			{Name: "duration_ms", Kind: schema.Int, Doc: "wall time of the checks, drops, pg_restore and verification"},
		},
		Mutates: func(schema.Inputs) bool { return true },
		DryRun: "does not restore; checks the snapshot's checksums, lists it with pg_restore --list, runs every check against the target " +
			"and reports what would be dropped and restored, changing nothing",
		Example: "- id: snapshot\n  type: snapshot\n  with: {target: old, dir: \"backups/${{ run.id }}\"}\n" +
			"- id: restore_new\n  type: restore\n  with: {target: new, from: \"${{ steps.snapshot.outputs.path }}\", jobs: 4}\n",
		Impl: restore{},
	})
}

type restore struct{}

// restorePlan is what a restore decided before changing anything.
type restorePlan struct {
	target        *Target
	path          string // the archive
	dir           string // where SHA256SUMS and snapshot.json are
	manifest      *snapshotManifest
	summed        bool
	pgRestore     string
	toc           archiveTOC
	serverVersion int
	role          string
	database      string
	covered       []string
	tables        []qualifiedName
	drops         []dbObject
	skip          map[int]bool // TOC entries left out of the restore
	args          []string
}

// dbObject is an object found on the target.
type dbObject struct {
	kind   string // table, view, function, type, schema, extension…
	schema string
	name   string
	args   string // a routine's argument types
	owner  string
	owned  bool // the restoring role has its owner's privileges
}

func (o dbObject) String() string {
	switch {
	case o.schema == "":
		return o.kind + " " + o.name
	case isRoutine(o.kind):
		return fmt.Sprintf("%s %s.%s(%s)", o.kind, o.schema, o.name, o.args)
	}
	return fmt.Sprintf("%s %s.%s", o.kind, o.schema, o.name)
}

// key matches the object with a TOC entry.
func (o dbObject) key() string {
	name := o.name
	if isRoutine(o.kind) {
		args := o.args
		if o.kind == "aggregate" && args == "" {
			args = "*"
		}
		name += "(" + args + ")"
	}
	return objectKey(o.kind, o.schema, name)
}

func objectKey(kind, schemaName, name string) string {
	switch kind {
	case "domain":
		kind = "type"
	case "procedure", "aggregate":
		kind = "function"
	}
	return kind + "\x00" + schemaName + "\x00" + name
}

func isRoutine(kind string) bool {
	return kind == "function" || kind == "procedure" || kind == "aggregate"
}

// dropSQL drops the object and whatever depends on it: a dependent of an
// object created after the snapshot was itself created or changed after it.
func (o dbObject) dropSQL() string {
	id := func(s string) string { return pgx.Identifier{s}.Sanitize() }
	switch {
	case o.schema == "":
		return fmt.Sprintf("DROP %s IF EXISTS %s CASCADE", strings.ToUpper(o.kind), id(o.name))
	case isRoutine(o.kind):
		args := o.args
		if o.kind == "aggregate" && args == "" {
			args = "*"
		}
		return fmt.Sprintf("DROP %s IF EXISTS %s.%s(%s) CASCADE", strings.ToUpper(o.kind), id(o.schema), id(o.name), args)
	}
	return fmt.Sprintf("DROP %s IF EXISTS %s.%s CASCADE", strings.ToUpper(o.kind), id(o.schema), id(o.name))
}

// dropOrder: relations, then routines, types, extensions, schemas.
var dropOrder = map[string]int{
	"view": 0, "materialized view": 0, "foreign table": 1, "table": 1, "sequence": 2,
	"function": 3, "procedure": 3, "aggregate": 3, "type": 4, "domain": 4, "extension": 5, "schema": 6,
}

// tocKinds maps the TOC descriptions that exact restore compares to the
// object kinds of the target inventory.
var tocKinds = map[string]string{
	"TABLE": "table", "VIEW": "view", "MATERIALIZED VIEW": "materialized view", "SEQUENCE": "sequence",
	"FOREIGN TABLE": "foreign table", "FUNCTION": "function", "PROCEDURE": "procedure",
	"AGGREGATE": "aggregate", "TYPE": "type", "DOMAIN": "domain", "SCHEMA": "schema", "EXTENSION": "extension",
}

func (restore) Run(ctx context.Context, c *Call) (Outputs, error) {
	start := time.Now()
	tmp, err := os.MkdirTemp("", "cutover-pg-")
	if err != nil {
		return nil, fmt.Errorf("restore: private directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	p, err := planRestore(ctx, c, tmp)
	if err != nil {
		return nil, err
	}
	out := Outputs{"restored_tables": int64(0), "dropped": []string{}, "checksums_verified": p.summed}
	finish := func(err error) (Outputs, error) {
		out["duration_ms"] = time.Since(start).Milliseconds()
		return out, err
	}
	if len(p.drops) > 0 {
		if err := p.drop(ctx, c); err != nil {
			return finish(err)
		}
		out["dropped"] = p.dropped()
		fmt.Fprintf(c.Out, "restore: dropped %s the snapshot does not hold: %s\n", plural(int64(len(p.drops)), "object"), strings.Join(p.dropped(), ", "))
	}

	var list strings.Builder
	for _, e := range p.toc.entries {
		if p.skip[e.id] {
			list.WriteString(";")
		}
		list.WriteString(e.line + "\n")
	}
	listFile := filepath.Join(tmp, "restore.list")
	if err := os.WriteFile(listFile, []byte(list.String()), 0o600); err != nil {
		return finish(err)
	}
	env, err := p.target.LibpqEnv(tmp)
	if err != nil {
		return finish(Permanent(err))
	}
	args := append(append([]string(nil), p.args...), "-L", listFile, p.path)
	fmt.Fprintf(c.Out, "restore: %s %s into %s\n", filepath.Base(p.pgRestore), displayArgs(args), p.target)
	stderr, err := runPG(ctx, c, pgCommand{path: p.pgRestore, args: args, env: append(CleanEnv(), env...), live: true, journal: true})
	if err != nil {
		return finish(pgFailure(ctx, c, "pg_restore", stderr, err, func(s string) string {
			h := restoreHint(s, p.role)
			if h != "" {
				h += "; "
			}
			return h + "the target is partly restored: fix the cause and run the restore again"
		}))
	}

	conn, err := c.Targets.Conn(ctx, p.target.Name)
	if err != nil {
		return finish(err)
	}
	missing, err := missingTables(ctx, conn, p.tables)
	if err != nil {
		return finish(queryError(p.target.Name, err))
	}
	if len(missing) > 0 {
		return finish(fmt.Errorf("restore verification failed: after pg_restore the target has no %s", strings.Join(missing, ", ")))
	}
	out["restored_tables"] = int64(len(p.tables))
	if c.Args.Bool("analyze") && len(p.tables) > 0 {
		names := make([]string, len(p.tables))
		for i, q := range p.tables {
			names[i] = pgx.Identifier{q.Schema, q.Name}.Sanitize()
		}
		if _, err := conn.Exec(ctx, "ANALYZE "+strings.Join(names, ", ")); err != nil {
			return finish(fmt.Errorf("restored, but ANALYZE failed: %w", queryError(p.target.Name, err)))
		}
	}
	fmt.Fprintf(c.Out, "restore: %s restored into %s in %s\n", plural(int64(len(p.tables)), "table"), p.target, time.Since(start).Round(10*time.Millisecond))
	return finish(nil)
}

func (restore) DryRun(ctx context.Context, c *Call) (Outputs, bool, error) {
	start := time.Now()
	tmp, err := os.MkdirTemp("", "cutover-pg-")
	if err != nil {
		return nil, true, fmt.Errorf("restore: private directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	p, err := planRestore(ctx, c, tmp)
	if err != nil {
		return nil, true, err
	}
	if len(p.drops) > 0 {
		fmt.Fprintf(c.Out, "restore: would drop %s the snapshot does not hold: %s\n", plural(int64(len(p.drops)), "object"), strings.Join(p.dropped(), ", "))
	}
	fmt.Fprintf(c.Out, "restore: would run %s %s -L <list> %s and restore %s into %s\n",
		filepath.Base(p.pgRestore), displayArgs(p.args), p.path, plural(int64(len(p.tables)), "table"), p.target)
	return Outputs{
		"restored_tables": int64(len(p.tables)), "dropped": p.dropped(), "checksums_verified": p.summed,
		"duration_ms": time.Since(start).Milliseconds(),
	}, true, nil
}

func (p *restorePlan) dropped() []string {
	out := make([]string, len(p.drops))
	for i, o := range p.drops {
		out[i] = o.String()
	}
	return out
}

// planRestore reads the snapshot and the target and runs every check. It
// changes nothing: an extension is tried in a transaction that is rolled
// back.
func planRestore(ctx context.Context, c *Call, tmp string) (*restorePlan, error) {
	a := c.Args
	p := &restorePlan{skip: map[int]bool{}}
	var err error
	if p.target, err = c.Targets.Get(a.String("target")); err != nil {
		return nil, err
	}
	jobs, clean, exact := a.Int("jobs"), a.Bool("clean"), a.Bool("exact")
	switch {
	case jobs < 1:
		return nil, Permanent(fmt.Errorf("jobs is %d: want 1 or more", jobs))
	case exact && !clean:
		return nil, Permanent(errors.New("exact needs clean: an exact restore replaces the objects the snapshot holds"))
	}
	if err := p.locate(c, a.String("from"), int(jobs)); err != nil {
		return nil, err
	}

	conn, err := c.Targets.Conn(ctx, p.target.Name)
	if err != nil {
		return nil, err
	}
	var num string
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num'), current_user, current_database()").Scan(&num, &p.role, &p.database); err != nil {
		return nil, queryError(p.target.Name, err)
	}
	p.serverVersion, _ = strconv.Atoi(num)
	if p.pgRestore, err = pgTool(a.String("bin_dir"), "pg_restore", p.serverVersion); err != nil {
		return nil, err
	}
	restoreVersion, err := pgToolVersion(ctx, c, p.pgRestore)
	if err != nil {
		return nil, err
	}
	if m := p.manifest; m != nil && m.PgDumpVersion/10000 > restoreVersion/10000 {
		return nil, Permanent(fmt.Errorf("pg_restore %d cannot read a snapshot made by pg_dump %d: install postgresql-client-%d (or set bin_dir to its bin directory)",
			restoreVersion/10000, m.PgDumpVersion/10000, m.PgDumpVersion/10000))
	}
	if p.toc, err = listArchive(ctx, c, p.pgRestore, p.path, CleanEnv()); err != nil {
		return nil, err
	}
	if err := checkRestoreVersions(p.toc.dumpedFrom, p.serverVersion); err != nil {
		return nil, err
	}

	inToc := map[string]bool{}
	covered := map[string]bool{}
	for _, e := range p.toc.entries {
		if kind, ok := tocKinds[e.desc]; ok {
			inToc[objectKey(kind, e.schema, e.name)] = true
		}
		if e.schema != "" {
			covered[e.schema] = true
		}
		if e.desc == "SCHEMA" {
			covered[e.name] = true
		}
		if e.desc == "TABLE DATA" {
			p.tables = append(p.tables, qualifiedName{e.schema, e.name})
		}
	}
	whole := false
	excluded := map[qualifiedName]bool{}
	if m := p.manifest; m != nil {
		whole = m.Whole
		for _, s := range m.Schemas {
			covered[s] = true
		}
		for _, q := range m.Excluded {
			excluded[q] = true
		}
	}
	for s := range covered {
		p.covered = append(p.covered, s)
	}
	sort.Strings(p.covered)

	objs, err := targetInventory(ctx, conn, p.covered, whole)
	if err != nil {
		return nil, queryError(p.target.Name, err)
	}
	var problems []string
	installed := map[string]bool{}
	existing := map[string]bool{}
	for _, o := range objs {
		if o.kind == "extension" {
			installed[o.name] = true
		}
		if o.kind == "schema" {
			existing[o.name] = true
		}
		held := inToc[o.key()]
		switch {
		case o.kind == "schema" && covered[o.name] && !held:
			// A schema the snapshot covers stays; only its contents change.
		case o.kind == "extension" && !whole:
			// A partial snapshot holds no extensions: not its business.
		case held && o.kind == "extension":
			// Kept as it is: see the skip list below.
		case held && !clean:
			problems = append(problems, fmt.Sprintf("%s already exists on the target; restore with clean: true to replace it", o))
		case held && !o.owned:
			problems = append(problems, fmt.Sprintf("%s on the target is owned by %s, not %s, so the restore cannot replace it; restore as %s", o, o.owner, p.role, o.owner))
		case held, !exact:
		case o.schema != "" && excluded[qualifiedName{o.schema, o.name}]:
			// Left out of the snapshot on purpose: not the snapshot's to remove.
		case !o.owned && (o.kind == "schema" || o.kind == "extension"):
			fmt.Fprintf(c.Out, "restore: keeping %s (owned by %s): the snapshot does not hold it, but %s cannot drop it\n", o, o.owner, p.role)
		case !o.owned:
			problems = append(problems, fmt.Sprintf("exact restore cannot remove %s, which the snapshot does not hold: it is owned by %s, not %s; drop it as %s, or set exact: false", o, o.owner, p.role, o.owner))
		default:
			p.drops = append(p.drops, o)
		}
	}
	if len(problems) > 0 {
		return nil, Permanent(errors.New(joinRestoreProblems(problems)))
	}
	sort.SliceStable(p.drops, func(i, j int) bool {
		if dropOrder[p.drops[i].kind] != dropOrder[p.drops[j].kind] {
			return dropOrder[p.drops[i].kind] < dropOrder[p.drops[j].kind]
		}
		return p.drops[i].String() < p.drops[j].String()
	})

	// Extensions: one that exists stays as it is (and keeps its comment);
	// one that does not must be creatable by this role.
	for _, e := range p.toc.entries {
		switch {
		case e.desc == "EXTENSION" && installed[e.name]:
			p.skip[e.id] = true
		case e.desc == "COMMENT" && e.schema == "" && strings.HasPrefix(e.name, "EXTENSION ") && installed[strings.TrimPrefix(e.name, "EXTENSION ")]:
			p.skip[e.id] = true
		case e.desc == "EXTENSION":
			if err := tryExtension(ctx, conn, e.name, p.role, p.target.Name); err != nil {
				return nil, err
			}
		}
	}

	// Privileges to create what the snapshot holds.
	creates := map[string]bool{}
	makesSchema := map[string]bool{}
	for _, e := range p.toc.entries {
		if p.skip[e.id] {
			continue
		}
		if e.schema != "" && tocKinds[e.desc] != "" {
			creates[e.schema] = true
		}
		if e.desc == "SCHEMA" {
			makesSchema[e.name] = true
		}
	}
	var schemas []string
	for s := range creates {
		schemas = append(schemas, s)
	}
	sort.Strings(schemas)
	for _, s := range schemas {
		if makesSchema[s] || !existing[s] {
			continue
		}
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT pg_catalog.has_schema_privilege($1::text, 'CREATE')", s).Scan(&ok); err != nil {
			return nil, queryError(p.target.Name, err)
		}
		if !ok {
			msg := fmt.Sprintf("role %s cannot create objects in schema %s of the target: permission denied for schema %s", p.role, s, s)
			if s == "public" && p.serverVersion >= 150000 {
				msg += " (PostgreSQL 15 no longer grants CREATE on public to every role)"
			}
			return nil, Permanent(fmt.Errorf("%s; restore as the database owner, or GRANT CREATE ON SCHEMA %s TO %s",
				msg, hintIdent(s), hintIdent(p.role)))
		}
	}
	if len(makesSchema) > 0 {
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT pg_catalog.has_database_privilege(current_database(), 'CREATE')").Scan(&ok); err != nil {
			return nil, queryError(p.target.Name, err)
		}
		if !ok {
			return nil, Permanent(fmt.Errorf("role %s cannot create schemas in database %s of the target: permission denied for database %s; restore as the database owner, or GRANT CREATE ON DATABASE %s TO %s",
				p.role, p.database, p.database, hintIdent(p.database), hintIdent(p.role)))
		}
	}

	p.args = []string{"-w", "-d", "", "--no-owner", "--no-acl", "--no-subscriptions", "--exit-on-error", "-j", strconv.FormatInt(jobs, 10)}
	if clean {
		p.args = append(p.args, "--clean", "--if-exists")
	}
	return p, nil
}

// locate finds the archive and its snapshot directory, and checks the
// files against SHA256SUMS when there is one.
func (p *restorePlan) locate(c *Call, from string, workers int) error {
	if strings.TrimSpace(from) == "" {
		return Permanent(errors.New("from is empty"))
	}
	abs, err := filepath.Abs(from)
	if err != nil {
		return Permanent(fmt.Errorf("from %s: %w", from, err))
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return Permanent(fmt.Errorf("no snapshot at %s: %w", abs, errors.Unwrap(err)))
	}
	p.path, p.dir = abs, filepath.Dir(abs)
	if fi.IsDir() {
		p.dir = abs
	}
	if b, err := os.ReadFile(filepath.Join(p.dir, manifestFile)); err == nil {
		var m snapshotManifest
		if err := json.Unmarshal(b, &m); err != nil {
			return Permanent(fmt.Errorf("%s: %w", filepath.Join(p.dir, manifestFile), err))
		}
		p.manifest = &m
		if fi.IsDir() && m.Archive != "" && m.Archive != "." {
			p.path = filepath.Join(p.dir, m.Archive)
		}
	}
	if fi.IsDir() && p.path == abs {
		if _, err := os.Stat(filepath.Join(abs, "toc.dat")); err != nil {
			return Permanent(fmt.Errorf("%s is not a pg_dump directory archive (no toc.dat)", abs))
		}
	}
	if _, err := os.Stat(filepath.Join(p.dir, checksumsFile)); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(c.Out, "restore: %s has no %s; the archive's integrity is not checked\n", p.dir, checksumsFile)
		return nil
	}
	names, err := verifyChecksums(p.dir, workers)
	if err != nil {
		return Permanent(err)
	}
	if p.path != p.dir && !slices.Contains(names, filepath.Base(p.path)) {
		fmt.Fprintf(c.Out, "restore: %s does not list %s; the archive's integrity is not checked\n", filepath.Join(p.dir, checksumsFile), filepath.Base(p.path))
		return nil
	}
	p.summed = true
	fmt.Fprintf(c.Out, "restore: %s of %s match %s\n", plural(int64(len(names)), "file"), p.dir, checksumsFile)
	return nil
}

// checkRestoreVersions refuses a snapshot of a newer major version than
// the target: its SQL may use what the older server lacks.
func checkRestoreVersions(dumpedFrom, server int) error {
	if dumpedFrom/10000 > server/10000 {
		return Permanent(fmt.Errorf("the snapshot comes from PostgreSQL %d and the target runs %d: restoring into an older major version is not supported",
			dumpedFrom/10000, server/10000))
	}
	return nil
}

// targetInventory lists the target's objects that exact restore compares with the
// snapshot: relations, routines, types and domains of the covered schemas
// (not members of an extension, not sequences owned by a column), the
// extensions, and with whole also every schema.
func targetInventory(ctx context.Context, conn *pgx.Conn, covered []string, whole bool) ([]dbObject, error) {
	const notMember = `NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = '%s'::regclass AND d.objid = %s AND d.deptype = 'e')`
	q := `SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
		                        WHEN 'S' THEN 'sequence' ELSE 'foreign table' END,
		       n.nspname, c.relname, '', pg_catalog.pg_get_userbyid(c.relowner), pg_catalog.pg_has_role(c.relowner, 'USAGE')
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
		  AND ` + fmt.Sprintf(notMember, "pg_catalog.pg_class", "c.oid") + `
		  AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
		           WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
		UNION ALL
		SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
		       n.nspname, p.proname, pg_catalog.oidvectortypes(p.proargtypes),
		       pg_catalog.pg_get_userbyid(p.proowner), pg_catalog.pg_has_role(p.proowner, 'USAGE')
		FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = ANY($1::text[]) AND ` + fmt.Sprintf(notMember, "pg_catalog.pg_proc", "p.oid") + `
		UNION ALL
		SELECT CASE t.typtype WHEN 'd' THEN 'domain' ELSE 'type' END,
		       n.nspname, t.typname, '', pg_catalog.pg_get_userbyid(t.typowner), pg_catalog.pg_has_role(t.typowner, 'USAGE')
		FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
		WHERE n.nspname = ANY($1::text[]) AND t.typtype IN ('e', 'd', 'r', 'c')
		  AND (t.typtype <> 'c' OR EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c'))
		  AND ` + fmt.Sprintf(notMember, "pg_catalog.pg_type", "t.oid") + `
		UNION ALL
		SELECT 'extension', '', e.extname, '', pg_catalog.pg_get_userbyid(e.extowner), pg_catalog.pg_has_role(e.extowner, 'USAGE')
		FROM pg_catalog.pg_extension e WHERE e.oid >= 16384
		UNION ALL
		SELECT 'schema', '', n.nspname, '', pg_catalog.pg_get_userbyid(n.nspowner), pg_catalog.pg_has_role(n.nspowner, 'USAGE')
		FROM pg_catalog.pg_namespace n
		WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
		  AND ` + fmt.Sprintf(notMember, "pg_catalog.pg_namespace", "n.oid")
	// pg_dump names a routine by its argument types as format_type shows
	// them with an empty search_path (public.orders, integer): so must the
	// inventory, to match the TOC.
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SET LOCAL search_path = ''"); err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, q, covered)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []dbObject
	for rows.Next() {
		var o dbObject
		if err := rows.Scan(&o.kind, &o.schema, &o.name, &o.args, &o.owner, &o.owned); err != nil {
			return nil, err
		}
		// Schemas and extensions the snapshot does not hold are its business
		// only when it is of the whole database; a covered schema always is.
		if o.kind == "schema" && !whole && !slices.Contains(covered, o.name) {
			continue
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// tryExtension creates an extension in a transaction that is rolled back,
// to learn before changing anything whether the role may create it.
func tryExtension(ctx context.Context, conn *pgx.Conn, name, role, target string) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return queryError(target, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	_, err = tx.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE")
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return queryError(target, err)
	}
	said := pgErr.Message
	if pgErr.Hint != "" {
		said += " (" + pgErr.Hint + ")"
	}
	switch {
	case pgErr.Code == "42501" || strings.Contains(pgErr.Message, "allow-listed") || strings.Contains(pgErr.Message, "permission denied"):
		return Permanent(fmt.Errorf("extension %s cannot be created by %s on the target: it is not trusted; ask the provider to allow it or drop it from the source (the server said: %s)",
			name, role, said))
	case strings.Contains(pgErr.Message, "is not available"):
		return Permanent(fmt.Errorf("extension %s is not installed on the target's server: ask the provider for it or drop it from the source (the server said: %s)", name, said))
	}
	return Permanent(fmt.Errorf("extension %s cannot be created on the target: %s (SQLSTATE %s)", name, said, pgErr.Code))
}

// drop removes the objects the snapshot does not hold, in one transaction.
func (p *restorePlan) drop(ctx context.Context, c *Call) error {
	conn, err := c.Targets.Conn(ctx, p.target.Name)
	if err != nil {
		return err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return queryError(p.target.Name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if d := c.Args.Duration("lock_timeout"); d > 0 {
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", d.Milliseconds())); err != nil {
			return queryError(p.target.Name, err)
		}
	}
	for _, o := range p.drops {
		if _, err := tx.Exec(ctx, o.dropSQL()); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "55P03" {
				return fmt.Errorf("dropping %s: another session holds a lock on it (is the app still running?); nothing was dropped: %w", o, queryError(p.target.Name, err))
			}
			return fmt.Errorf("dropping %s; nothing was dropped: %w", o, queryError(p.target.Name, err))
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("dropping what the snapshot does not hold: commit: %w", queryError(p.target.Name, err))
	}
	return nil
}

// missingTables lists the tables that do not exist.
func missingTables(ctx context.Context, conn *pgx.Conn, tables []qualifiedName) ([]string, error) {
	if len(tables) == 0 {
		return nil, nil
	}
	schemas, names := make([]string, len(tables)), make([]string, len(tables))
	for i, q := range tables {
		schemas[i], names[i] = q.Schema, q.Name
	}
	rows, err := conn.Query(ctx, `SELECT t.s || '.' || t.n FROM unnest($1::text[], $2::text[]) AS t(s, n)
		WHERE pg_catalog.to_regclass(pg_catalog.quote_ident(t.s) || '.' || pg_catalog.quote_ident(t.n)) IS NULL ORDER BY 1`, schemas, names)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, "table "+s)
	}
	return out, rows.Err()
}

// restoreHint says what to do about a pg_restore failure.
func restoreHint(stderr, role string) string {
	switch {
	case strings.Contains(stderr, "permission denied to create extension"), strings.Contains(stderr, "allow-listed"):
		return "an extension is not trusted for " + role + "; ask the provider to allow it or drop it from the source"
	case strings.Contains(stderr, "must be owner of"):
		return "the target holds objects of another role; restore as their owner"
	case strings.Contains(stderr, "permission denied for schema"):
		return role + " lacks CREATE on a schema; restore as the database owner"
	case strings.Contains(stderr, "unsupported version"):
		return "the archive was written by a newer pg_dump; install a newer postgresql-client or set bin_dir"
	case strings.Contains(stderr, "could not obtain lock"), strings.Contains(stderr, "lock timeout"):
		return "another session holds a lock (is the app still running?)"
	}
	return ""
}

// joinRestoreProblems shows at most ten problems.
func joinRestoreProblems(p []string) string {
	sort.Strings(p)
	if len(p) > 10 {
		p = append(p[:10], fmt.Sprintf("and %d more", len(p)-10))
	}
	return strings.Join(p, "; ")
}

// displayArgs shows arguments for a person, an empty one as a pair of
// single quotes.
func displayArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" {
			a = "''"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// sqlReservedWords are the SQL key words that an identifier in a suggested
// command must be quoted for (PostgreSQL's reserved ones).
var sqlReservedWords = map[string]bool{
	"all": true, "analyse": true, "analyze": true, "and": true, "any": true, "array": true, "as": true, "asc": true,
	"asymmetric": true, "both": true, "case": true, "cast": true, "check": true, "collate": true, "column": true,
	"constraint": true, "create": true, "current_catalog": true, "current_date": true, "current_role": true,
	"current_time": true, "current_timestamp": true, "current_user": true, "default": true, "deferrable": true,
	"desc": true, "distinct": true, "do": true, "else": true, "end": true, "except": true, "false": true, "fetch": true,
	"for": true, "foreign": true, "from": true, "grant": true, "group": true, "having": true, "in": true,
	"initially": true, "intersect": true, "into": true, "lateral": true, "leading": true, "limit": true,
	"localtime": true, "localtimestamp": true, "not": true, "null": true, "offset": true, "on": true, "only": true,
	"or": true, "order": true, "placing": true, "primary": true, "references": true, "returning": true,
	"select": true, "session_user": true, "some": true, "symmetric": true, "system_user": true, "table": true,
	"then": true, "to": true, "trailing": true, "true": true, "union": true, "unique": true, "user": true,
	"using": true, "variadic": true, "when": true, "where": true, "window": true, "with": true,
}

// hintIdent quotes an identifier for SQL shown to a person, only when it
// needs quotes.
func hintIdent(s string) string {
	simple := s != "" && !sqlReservedWords[s]
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			simple = false
		}
	}
	if simple {
		return s
	}
	return pgx.Identifier{s}.Sanitize()
}
