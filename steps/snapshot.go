package steps

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pgcutover/cutover/schema"
)

// Files a snapshot directory holds besides pg_dump's own.
const (
	// checksumsFile lists the SHA-256 of every other file in the snapshot
	// directory, in the format of sha256sum, so that `sha256sum -c` checks it.
	checksumsFile = "SHA256SUMS"
	// manifestFile records what the snapshot covers, for restore.
	manifestFile = "snapshot.json"
	// customArchive is the archive's name in the directory of a custom-format
	// snapshot.
	customArchive = "database.dump"
)

// pgGrace is how long a pg_dump or pg_restore gets between SIGTERM and
// SIGKILL when its step is cancelled.
const pgGrace = 10 * time.Second

func init() {
	Register(&Type{
		Name:    "snapshot",
		Summary: "Dump a target with pg_dump (directory format with parallel jobs, or custom), verify the archive and checksum every file.",
		Doc: "Runs pg_dump against the target with the password only in a private 0600 passfile (PGPASSFILE), never in argv or the environment. " +
			"Before dumping it refuses a pg_dump older than the server, a `dir` that already exists (a snapshot is never overwritten) and a disk with less free space than the data to dump. " +
			"`dir` is created with mode 0700 (its missing parents too) and every file in it is made 0600.\n\n" +
			"`format: directory` (the default) dumps `jobs` tables at once; `format: custom` writes one archive, `database.dump`, in `dir` with a single process. " +
			"When `compress` is empty the step picks a fast compression and names it in the `compression` output: lz4 if this pg_dump accepts it (pg_dump 16 and later), " +
			"otherwise gzip level 1, which on two cores dumps about twice as fast as pg_dump's default gzip level. " +
			"Where pg_dump shares its CPUs with the server, `compress: none` is faster still, for about four times the disk space.\n\n" +
			"Afterwards `pg_restore --list` reads the archive back: every table of the dumped schemas must have its TABLE DATA entry and every sequence its SEQUENCE SET. " +
			"Then `snapshot.json` (what the snapshot covers, read by restore) and `SHA256SUMS` (every file, checkable with `sha256sum -c`) are written. " +
			"If pg_dump or the verification fails, the partial directory is removed.",
		Inputs: []schema.Field{
			{Name: "target", Kind: schema.String, Ref: schema.RefTarget, Required: true, Doc: "the target to dump"},
			{Name: "dir", Kind: schema.String, Required: true, Doc: "directory to create for the snapshot, relative to the working directory; it must not exist (e.g. backups/${{ run.id }})"},
			{Name: "format", Kind: schema.String, Enum: []string{"directory", "custom"}, Default: "directory", Literal: true, Doc: "pg_dump's archive format: directory (-Fd, parallel) or custom (-Fc, one file)"},
			{Name: "jobs", Kind: schema.Int, Default: int64(2), Doc: "tables dumped in parallel (pg_dump -j); only with format: directory"},
			{Name: "compress", Kind: schema.String, Default: "", Doc: "none, gzip, gzip:1-9, lz4[:level] or zstd[:level] (pg_dump 16+), or 0-9; empty picks lz4 when pg_dump supports it, else gzip:1"},
			{Name: "schemas", Kind: schema.StringList, Doc: "dump only these schemas (pg_dump -n patterns); default: every schema"},
			{Name: "exclude_tables", Kind: schema.StringList, Doc: "leave these tables out (pg_dump -T patterns; unqualified names match tables on the search path)"},
			{Name: "lock_wait_timeout", Kind: schema.Duration, Default: time.Minute, Doc: "fail instead of waiting longer for a table lock another session holds (pg_dump --lock-wait-timeout)"},
			{Name: "bin_dir", Kind: schema.String, Doc: "directory holding pg_dump and pg_restore; default: the ones on PATH"},
		},
		Outputs: []schema.Output{
			{Name: "path", Kind: schema.String, Doc: "absolute path of the archive: the directory, or the custom archive file; give it to restore's from"},
			{Name: "bytes", Kind: schema.Int, Doc: "size of the snapshot's files"},
			{Name: "sha256", Kind: schema.String, Doc: "SHA-256 of SHA256SUMS (directory format) or of the archive (custom format)"},
			{Name: "tables", Kind: schema.Int, Doc: "TABLE DATA entries in the archive"},
			{Name: "sequences", Kind: schema.Int, Doc: "SEQUENCE SET entries in the archive"},
			{Name: "verified", Kind: schema.Bool, Doc: "pg_restore --list read the archive and found data for every table and sequence"},
			{Name: "compression", Kind: schema.String, Doc: "the compression used: none, gzip:N, lz4 or zstd"},
			{Name: "format", Kind: schema.String, Doc: "directory or custom"},
			{Name: "duration_ms", Kind: schema.Int, Doc: "wall time of the dump and its verification"},
			{Name: "server_version", Kind: schema.Int, Doc: "the server's server_version_num, e.g. 150018"},
			{Name: "pg_dump_version", Kind: schema.Int, Doc: "pg_dump's version in the same form, e.g. 150018"},
		},
		Mutates: func(schema.Inputs) bool { return true },
		DryRun: "does not dump; checks that pg_dump is installed and not older than the server, that the target answers, " +
			"that dir does not exist and its parent is writable, and that the disk has room for the data, then reports what it would run",
		Example: "- id: snapshot\n  type: snapshot\n  with: {target: old, format: directory, jobs: 2, dir: \"backups/${{ run.id }}\"}\n",
		Impl:    snapshot{},
	})
}

type snapshot struct{}

// snapshotPlan is everything a snapshot decided before dumping.
type snapshotPlan struct {
	target        *Target
	dir           string // absolute
	path          string // the archive: dir, or dir/database.dump
	format        string
	jobs          int
	compression   compression
	pgDump        string
	pgRestore     string
	dumpVersion   int
	serverVersion int
	database      string
	whole         bool     // no schemas filter
	schemas       []string // every schema dumped
	excluded      []qualifiedName
	expected      []qualifiedName // tables whose data the archive must hold
	dataBytes     int64           // pg_table_size of the expected tables
	dbBytes       int64           // pg_database_size
	freeBytes     int64
	args          []string // pg_dump's arguments
}

func (snapshot) Run(ctx context.Context, c *Call) (Outputs, error) {
	start := time.Now()
	tmp, err := os.MkdirTemp("", "cutover-pg-")
	if err != nil {
		return nil, fmt.Errorf("snapshot: private directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	p, err := planSnapshot(ctx, c, tmp)
	if err != nil {
		return nil, err
	}
	if err := p.checkSpace(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(p.dir), 0o700); err != nil {
		return nil, Permanent(fmt.Errorf("creating the parent of %s: %w", p.dir, err))
	}
	if err := os.Mkdir(p.dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, Permanent(existsError(p.dir))
		}
		return nil, Permanent(fmt.Errorf("creating %s: %w", p.dir, err))
	}
	// Whatever the umask says, the snapshot is private.
	if err := os.Chmod(p.dir, 0o700); err != nil {
		os.RemoveAll(p.dir)
		return nil, err
	}
	out, err := p.dump(ctx, c, tmp)
	if err != nil {
		// A partial snapshot must never be mistaken for a rollback point.
		if rmErr := os.RemoveAll(p.dir); rmErr == nil {
			err = fmt.Errorf("%w; the partial snapshot %s was removed", err, p.dir)
		}
		if out != nil {
			out["duration_ms"] = time.Since(start).Milliseconds()
		}
		return out, err
	}
	out["duration_ms"] = time.Since(start).Milliseconds()
	fmt.Fprintf(c.Out, "snapshot: %s in %s (%s, %s, %s, verified)\n",
		byteSize(out["bytes"].(int64)), time.Since(start).Round(10*time.Millisecond), p.path,
		plural(out["tables"].(int64), "table"), plural(out["sequences"].(int64), "sequence"))
	return out, nil
}

func (snapshot) DryRun(ctx context.Context, c *Call) (Outputs, bool, error) {
	tmp, err := os.MkdirTemp("", "cutover-pg-")
	if err != nil {
		return nil, true, fmt.Errorf("snapshot: private directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	p, err := planSnapshot(ctx, c, tmp)
	if err != nil {
		return nil, true, err
	}
	out := Outputs{
		"path": p.path, "format": p.format, "compression": p.compression.name,
		"server_version": int64(p.serverVersion), "pg_dump_version": int64(p.dumpVersion),
		"tables": int64(len(p.expected)),
	}
	fmt.Fprintf(c.Out, "snapshot: would run %s %s\n", filepath.Base(p.pgDump), strings.Join(p.args, " "))
	fmt.Fprintf(c.Out, "snapshot: would dump %s (%s of table data; database %s) of %s into %s; %s\n",
		plural(int64(len(p.expected)), "table"), byteSize(p.dataBytes), byteSize(p.dbBytes), p.target, p.path, freeSpaceText(p.freeBytes))
	return out, true, p.checkSpace()
}

// checkSpace refuses a disk with less free space than the data to dump:
// an estimate (compression shrinks a dump, bytea's hex text grows it), but
// one that stops a snapshot from filling the disk the database may share.
func (p *snapshotPlan) checkSpace() error {
	if p.freeBytes >= 0 && p.freeBytes < p.dataBytes {
		return Permanent(fmt.Errorf("not enough disk space for the snapshot in %s: %s free, the tables to dump hold %s",
			filepath.Dir(p.dir), byteSize(p.freeBytes), byteSize(p.dataBytes)))
	}
	return nil
}

func existsError(dir string) error {
	return fmt.Errorf("snapshot directory %s already exists; a snapshot never overwrites one: choose a new dir, e.g. backups/${{ run.id }}", dir)
}

// planSnapshot checks the inputs, the tools, the server and the disk, and
// decides pg_dump's arguments. It changes nothing but files in tmp.
func planSnapshot(ctx context.Context, c *Call, tmp string) (*snapshotPlan, error) {
	a := c.Args
	p := &snapshotPlan{format: a.String("format"), jobs: int(a.Int("jobs"))}
	var err error
	if p.target, err = c.Targets.Get(a.String("target")); err != nil {
		return nil, err
	}
	switch {
	case p.format != "directory" && p.format != "custom":
		return nil, Permanent(fmt.Errorf("format %q: want directory or custom", p.format))
	case p.jobs < 1:
		return nil, Permanent(fmt.Errorf("jobs is %d: want 1 or more", p.jobs))
	case p.format == "custom" && a.Has("jobs") && p.jobs != 1:
		return nil, Permanent(errors.New("jobs applies only to format: directory; pg_dump writes a custom archive with one process"))
	}
	if p.format == "custom" {
		p.jobs = 1
	}
	raw := a.String("dir")
	if strings.TrimSpace(raw) == "" {
		return nil, Permanent(errors.New("dir is empty"))
	}
	if p.dir, err = filepath.Abs(raw); err != nil {
		return nil, Permanent(fmt.Errorf("dir %s: %w", raw, err))
	}
	p.path = p.dir
	if p.format == "custom" {
		p.path = filepath.Join(p.dir, customArchive)
	}
	if _, err := os.Lstat(p.dir); err == nil {
		return nil, Permanent(existsError(p.dir))
	} else if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		return nil, Permanent(fmt.Errorf("dir %s: %w", p.dir, err))
	}
	parent, err := existingAncestor(filepath.Dir(p.dir))
	if err != nil {
		return nil, Permanent(err)
	}
	if err := syscall.Access(parent, 0o3); err != nil { // W_OK|X_OK
		return nil, Permanent(fmt.Errorf("cannot create %s: %s is not writable: %v", p.dir, parent, err))
	}
	p.freeBytes = -1 // unknown
	var st syscall.Statfs_t
	if err := syscall.Statfs(parent, &st); err == nil {
		p.freeBytes = int64(st.Bavail) * int64(st.Bsize)
	}

	conn, err := c.Targets.Conn(ctx, p.target.Name)
	if err != nil {
		return nil, err
	}
	var num string
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num'), current_database(), pg_database_size(current_database())").Scan(&num, &p.database, &p.dbBytes); err != nil {
		return nil, queryError(p.target.Name, err)
	}
	p.serverVersion, _ = strconv.Atoi(num)

	binDir := a.String("bin_dir")
	if p.pgDump, err = pgTool(binDir, "pg_dump", p.serverVersion); err != nil {
		return nil, err
	}
	if p.pgRestore, err = pgTool(binDir, "pg_restore", p.serverVersion); err != nil {
		return nil, err
	}
	// Both at once: each may be a wrapper script that takes a while to start.
	var restoreVersion int
	var restoreErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		restoreVersion, restoreErr = pgToolVersion(ctx, c, p.pgRestore)
	}()
	p.dumpVersion, err = pgToolVersion(ctx, c, p.pgDump)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	if err := checkDumpVersion(p.dumpVersion, p.serverVersion); err != nil {
		return nil, err
	}
	if restoreErr != nil {
		return nil, restoreErr
	}
	if restoreVersion/10000 < p.dumpVersion/10000 {
		return nil, Permanent(fmt.Errorf("pg_restore %d is older than pg_dump %d and cannot verify its archive: install postgresql-client-%d",
			restoreVersion/10000, p.dumpVersion/10000, p.dumpVersion/10000))
	}
	if p.compression, err = chooseCompression(ctx, c, a.String("compress"), p.pgDump, p.dumpVersion, tmp); err != nil {
		return nil, err
	}
	if err := p.resolveCoverage(ctx, c); err != nil {
		return nil, err
	}
	p.args = p.dumpArgs(a.Duration("lock_wait_timeout"))
	return p, nil
}

// existingAncestor returns dir or its nearest existing ancestor, which must
// be a directory.
func existingAncestor(dir string) (string, error) {
	for {
		fi, err := os.Stat(dir)
		if err == nil {
			if !fi.IsDir() {
				return "", fmt.Errorf("%s is not a directory", dir)
			}
			return dir, nil
		}
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return "", err
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", err
		}
		dir = up
	}
}

// resolveCoverage turns the schemas and exclude_tables patterns into names,
// the way pg_dump resolves them, and lists the tables whose data the
// archive must hold. pg_dump then gets the resolved names, so that what it
// dumps and what the verification expects are the same set.
func (p *snapshotPlan) resolveCoverage(ctx context.Context, c *Call) error {
	conn, err := c.Targets.Conn(ctx, p.target.Name)
	if err != nil {
		return err
	}
	rows, err := conn.Query(ctx, `SELECT n.nspname FROM pg_catalog.pg_namespace n
		WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
		  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
		                  WHERE d.classid = 'pg_catalog.pg_namespace'::regclass AND d.objid = n.oid AND d.deptype = 'e')
		ORDER BY 1`)
	if err != nil {
		return queryError(p.target.Name, err)
	}
	var all []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return queryError(p.target.Name, err)
		}
		all = append(all, s)
	}
	if err := rows.Err(); err != nil {
		return queryError(p.target.Name, err)
	}
	patterns := c.Args.Strings("schemas")
	p.whole = len(patterns) == 0
	if p.whole {
		p.schemas = all
	} else {
		keep := map[string]bool{}
		for _, pat := range patterns {
			np, err := parseNamePattern(pat, 1)
			if err != nil {
				return Permanent(fmt.Errorf("schemas: %w", err))
			}
			n := 0
			for _, s := range all {
				if np.name.MatchString(s) {
					keep[s] = true
					n++
				}
			}
			if n == 0 {
				return Permanent(fmt.Errorf("schemas: %q matches no schema in database %s", pat, p.database))
			}
		}
		for _, s := range all {
			if keep[s] {
				p.schemas = append(p.schemas, s)
			}
		}
	}

	rows, err = conn.Query(ctx, `SELECT n.nspname, c.relname, c.relkind = 'r', pg_catalog.pg_table_is_visible(c.oid),
		       CASE WHEN c.relkind = 'r' THEN pg_catalog.pg_table_size(c.oid) ELSE 0 END
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND n.nspname = ANY($1::text[])
		  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
		                  WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
		ORDER BY 1, 2`, p.schemas)
	if err != nil {
		return queryError(p.target.Name, err)
	}
	type rel struct {
		qualifiedName
		table, visible bool
		size           int64
	}
	var rels []rel
	for rows.Next() {
		var r rel
		if err := rows.Scan(&r.Schema, &r.Name, &r.table, &r.visible, &r.size); err != nil {
			rows.Close()
			return queryError(p.target.Name, err)
		}
		rels = append(rels, r)
	}
	if err := rows.Err(); err != nil {
		return queryError(p.target.Name, err)
	}
	var excl []namePattern
	for _, pat := range c.Args.Strings("exclude_tables") {
		np, err := parseNamePattern(pat, 2)
		if err != nil {
			return Permanent(fmt.Errorf("exclude_tables: %w", err))
		}
		excl = append(excl, np)
	}
	for _, r := range rels {
		excluded := false
		for _, np := range excl {
			if np.match(r.Schema, r.Name, r.visible) {
				excluded = true
				break
			}
		}
		switch {
		case excluded:
			p.excluded = append(p.excluded, r.qualifiedName)
		case r.table:
			p.expected = append(p.expected, r.qualifiedName)
			p.dataBytes += r.size
		}
	}
	return nil
}

// dumpArgs are pg_dump's arguments. The connection comes from the
// environment (LibpqEnv); -w makes pg_dump fail rather than prompt.
func (p *snapshotPlan) dumpArgs(lockWait time.Duration) []string {
	args := []string{"-w", "-f", p.path}
	if p.format == "directory" {
		args = append(args, "-Fd", "-j", strconv.Itoa(p.jobs))
	} else {
		args = append(args, "-Fc")
	}
	args = append(args, p.compression.args...)
	if lockWait > 0 {
		args = append(args, "--lock-wait-timeout="+strconv.FormatInt(lockWait.Milliseconds(), 10))
	}
	if !p.whole {
		for _, s := range p.schemas {
			args = append(args, "-n", quotePattern(s))
		}
	}
	for _, q := range p.excluded {
		args = append(args, "-T", quotePattern(q.Schema)+"."+quotePattern(q.Name))
	}
	return args
}

// dump runs pg_dump, verifies the archive and writes the manifest and the
// checksums.
func (p *snapshotPlan) dump(ctx context.Context, c *Call, tmp string) (Outputs, error) {
	env, err := p.target.LibpqEnv(tmp)
	if err != nil {
		return nil, Permanent(err)
	}
	env = append(CleanEnv(), env...)
	fmt.Fprintf(c.Out, "snapshot: %s %s (server %s, pg_dump %s)\n",
		filepath.Base(p.pgDump), strings.Join(p.args, " "), versionText(p.serverVersion), versionText(p.dumpVersion))
	t0 := time.Now()
	stderr, err := runPG(ctx, c, pgCommand{path: p.pgDump, args: p.args, env: env, live: true, journal: true})
	if err != nil {
		return nil, pgFailure(ctx, c, "pg_dump", stderr, err, dumpHint)
	}
	dumped := time.Since(t0)
	// pg_dump creates its files 0644; the snapshot holds the whole database.
	names, err := snapshotFiles(p.dir)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if err := os.Chmod(filepath.Join(p.dir, n), 0o600); err != nil {
			return nil, err
		}
	}

	out := Outputs{
		"path": p.path, "format": p.format, "compression": p.compression.name, "verified": false,
		"server_version": int64(p.serverVersion), "pg_dump_version": int64(p.dumpVersion),
	}
	t0 = time.Now()
	toc, err := listArchive(ctx, c, p.pgRestore, p.path, CleanEnv())
	if err != nil {
		return out, err
	}
	listed := time.Since(t0)
	tables, sequences, err := verifyArchive(toc, p.expected)
	out["tables"], out["sequences"] = int64(tables), int64(sequences)
	if err != nil {
		return out, err
	}

	m := snapshotManifest{
		Format: p.format, Archive: filepath.Base(p.path), Database: p.database, Target: p.target.Name,
		ServerVersion: p.serverVersion, PgDumpVersion: p.dumpVersion, Compression: p.compression.name,
		Whole: p.whole, Schemas: p.schemas, Excluded: p.excluded, Tables: tables, Sequences: sequences,
		CreatedAt: time.Now().UTC().Format(time.RFC3339),
	}
	if p.format == "directory" {
		m.Archive = "."
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return out, err
	}
	if err := os.WriteFile(filepath.Join(p.dir, manifestFile), append(mb, '\n'), 0o600); err != nil {
		return out, err
	}
	t0 = time.Now()
	sums, size, err := writeChecksums(p.dir, p.jobs)
	if err != nil {
		return out, err
	}
	fmt.Fprintf(c.Out, "snapshot: pg_dump %s, pg_restore --list %s, checksums %s\n",
		dumped.Round(10*time.Millisecond), listed.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	out["bytes"] = size
	if p.format == "custom" {
		out["sha256"] = sums[customArchive]
	} else {
		out["sha256"] = sums[checksumsFile]
	}
	out["verified"] = true
	return out, nil
}

func dumpHint(stderr string) string {
	switch {
	case strings.Contains(stderr, "server version mismatch"):
		return "pg_dump is older than the server: install the server's postgresql-client version, or set bin_dir"
	case strings.Contains(stderr, "permission denied"):
		return "the target's role cannot read everything it would dump: grant it SELECT, dump as the owner, or leave the table out with exclude_tables"
	case strings.Contains(stderr, "could not obtain lock"):
		return "another session holds a lock on a table (a running migration?); stop it, or raise lock_wait_timeout"
	case strings.Contains(stderr, "No space left on device"):
		return "the disk is full"
	}
	return ""
}

// snapshotManifest is snapshot.json: what a snapshot covers. Restore reads
// it to know which schemas the snapshot speaks for.
type snapshotManifest struct {
	Format        string          `json:"format"`
	Archive       string          `json:"archive"` // "." for the directory itself
	Database      string          `json:"database"`
	Target        string          `json:"target"`
	ServerVersion int             `json:"server_version"`
	PgDumpVersion int             `json:"pg_dump_version"`
	Compression   string          `json:"compression"`
	Whole         bool            `json:"whole_database"`
	Schemas       []string        `json:"schemas"`
	Excluded      []qualifiedName `json:"excluded_tables,omitempty"`
	Tables        int             `json:"tables"`
	Sequences     int             `json:"sequences"`
	CreatedAt     string          `json:"created_at"`
}

// qualifiedName is a schema-qualified object name.
type qualifiedName struct {
	Schema string `json:"schema"`
	Name   string `json:"name"`
}

func (q qualifiedName) String() string { return q.Schema + "." + q.Name }

// compression is a pg_dump compression choice.
type compression struct {
	name string   // as reported: none, gzip:1, lz4, zstd:3
	args []string // pg_dump's arguments
}

var compressSpec = regexp.MustCompile(`^(none|gzip|lz4|zstd)(:([0-9]+))?$`)

// chooseCompression turns the compress input into pg_dump arguments. Empty
// picks lz4 when this pg_dump accepts it, else gzip level 1. pg_dump 15 and
// older reject -Z lz4 ("invalid value"); a newer one is asked, since a
// build may lack lz4.
func chooseCompression(ctx context.Context, c *Call, spec, pgDump string, dumpVersion int, tmp string) (compression, error) {
	spec = strings.ToLower(strings.TrimSpace(spec))
	major := dumpVersion / 10000
	if spec == "" {
		if major >= 16 && lz4Supported(ctx, c, pgDump, tmp) {
			return compression{name: "lz4", args: []string{"-Z", "lz4"}}, nil
		}
		return compression{name: "gzip:1", args: []string{"-Z", "1"}}, nil
	}
	if n, err := strconv.Atoi(spec); err == nil {
		if n < 0 || n > 9 {
			return compression{}, Permanent(fmt.Errorf("compress %q: a level is 0 to 9", spec))
		}
		if n == 0 {
			return compression{name: "none", args: []string{"-Z", "0"}}, nil
		}
		return compression{name: "gzip:" + spec, args: []string{"-Z", spec}}, nil
	}
	m := compressSpec.FindStringSubmatch(spec)
	if m == nil {
		return compression{}, Permanent(fmt.Errorf("compress %q: want none, gzip, gzip:1-9, lz4, zstd (with an optional :level) or 0-9", spec))
	}
	method, level := m[1], m[3]
	switch method {
	case "none":
		if level != "" {
			return compression{}, Permanent(fmt.Errorf("compress %q: none takes no level", spec))
		}
		return compression{name: "none", args: []string{"-Z", "0"}}, nil
	case "gzip":
		if level == "" {
			level = "6"
		}
		n, _ := strconv.Atoi(level)
		if n < 1 || n > 9 {
			return compression{}, Permanent(fmt.Errorf("compress %q: a gzip level is 1 to 9", spec))
		}
		return compression{name: "gzip:" + level, args: []string{"-Z", level}}, nil
	}
	if major < 16 {
		return compression{}, Permanent(fmt.Errorf("compress %q: pg_dump %d knows only gzip (%s came with pg_dump 16); use gzip:1 or none, or set bin_dir to a newer client",
			spec, major, method))
	}
	return compression{name: spec, args: []string{"-Z", spec}}, nil
}

// lz4Supported asks pg_dump whether it accepts -Z lz4. pg_dump checks its
// compression options before it connects: one it rejects fails at once
// ("invalid value", "does not support compression with LZ4"), one it
// accepts gets as far as trying the socket of a directory with no server.
func lz4Supported(ctx context.Context, c *Call, pgDump, tmp string) bool {
	probe := filepath.Join(tmp, "lz4-probe")
	nowhere := filepath.Join(tmp, "no-server")
	env := append(CleanEnv(), "PGCONNECT_TIMEOUT=1")
	stderr, err := runPG(ctx, c, pgCommand{path: pgDump, env: env, stdout: io.Discard,
		args: []string{"-w", "-Z", "lz4", "-Fc", "-s", "-f", probe, "-d", "host=" + nowhere + " port=1 dbname=none user=none"}})
	return err != nil && strings.Contains(stderr, nowhere)
}

// checkDumpVersion refuses a pg_dump older than the server: it would abort
// with "server version mismatch" after connecting.
func checkDumpVersion(dump, server int) error {
	if dump/10000 < server/10000 {
		return Permanent(fmt.Errorf("pg_dump %d is older than the server (%d): install postgresql-client-%d (or set bin_dir to its bin directory)",
			dump/10000, server/10000, server/10000))
	}
	return nil
}

// pgTool finds a PostgreSQL client program in binDir, or on PATH.
func pgTool(binDir, name string, serverVersion int) (string, error) {
	install := "install the PostgreSQL client (Debian/Ubuntu: apt-get install postgresql-client"
	if serverVersion > 0 {
		install += "-" + strconv.Itoa(serverVersion/10000)
	}
	install += ")"
	if binDir != "" {
		p := filepath.Join(binDir, name)
		fi, err := os.Stat(p)
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return "", Permanent(fmt.Errorf("%s not found in bin_dir %s: %s", name, binDir, install))
		}
		return p, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", Permanent(fmt.Errorf("%s not found on PATH: %s, or set bin_dir", name, install))
	}
	return p, nil
}

var toolVersion = regexp.MustCompile(`\(PostgreSQL\) ([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?`)

// pgToolVersion runs `prog --version` and returns the version in the form
// of server_version_num: 15.18 is 150018, 9.6.24 is 90624.
func pgToolVersion(ctx context.Context, c *Call, prog string) (int, error) {
	var out bytes.Buffer
	stderr, err := runPG(ctx, c, pgCommand{path: prog, args: []string{"--version"}, env: CleanEnv(), stdout: &out})
	if err != nil {
		return 0, Permanent(fmt.Errorf("%s --version: %v %s", prog, err, lastLine(c.Mask(stderr))))
	}
	v, ok := parseToolVersion(out.String())
	if !ok {
		return 0, Permanent(fmt.Errorf("%s --version printed %q, not a PostgreSQL version", prog, lastLine(out.String())))
	}
	return v, nil
}

func parseToolVersion(s string) (int, bool) {
	m := toolVersion.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	patch, _ := strconv.Atoi(m[3])
	if major >= 10 {
		return major*10000 + minor, true
	}
	return major*10000 + minor*100 + patch, true
}

// versionText shows a server_version_num-style number as 15.18.
func versionText(v int) string {
	if v >= 100000 {
		return fmt.Sprintf("%d.%d", v/10000, v%10000)
	}
	return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
}

// commandStarted, when set, is called with every libpq client command the
// snapshot and restore steps start, right after it started: tests check
// what reaches argv, the environment and /proc.
var commandStarted atomic.Pointer[func(*exec.Cmd)]

// pgCommand is one run of a PostgreSQL client program.
type pgCommand struct {
	path string
	args []string
	env  []string
	// stdout receives the program's standard output; nil streams it live.
	stdout io.Writer
	// live streams standard error to the step's output as well.
	live bool
	// journal tells the engine the pid (Call.Started).
	journal bool
}

// runPG runs a client program in its own process group with no stdin,
// killing the group when ctx ends (SIGTERM, then SIGKILL after pgGrace).
// It returns the tail of standard error, masked.
func runPG(ctx context.Context, c *Call, pc pgCommand) (string, error) {
	cmd := exec.Command(pc.path, pc.args...)
	cmd.Env = pc.env
	cmd.Stdin = nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	errTail := &tail{max: tailBytes}
	var live io.Writer = io.Discard
	flush := func() error { return nil }
	if pc.live || pc.stdout == nil {
		var masked io.Writer
		masked, flush = c.MaskWriter(c.Out)
		live = &lockedWriter{w: masked}
	}
	if pc.stdout != nil {
		cmd.Stdout = pc.stdout
	} else {
		cmd.Stdout = &stream{tail: &tail{max: tailBytes}, live: live}
	}
	if pc.live {
		cmd.Stderr = &stream{tail: errTail, live: live}
	} else {
		cmd.Stderr = errTail
	}
	if err := cmd.Start(); err != nil {
		return "", Permanent(fmt.Errorf("cannot start %s: %w", filepath.Base(pc.path), err))
	}
	pgid := cmd.Process.Pid
	if f := commandStarted.Load(); f != nil {
		(*f)(cmd)
	}
	if pc.journal && c.Started != nil {
		c.Started(pgid)
	}
	err := waitGroup(ctx, cmd, pgGrace)
	_ = flush()
	return c.Mask(errTail.String()), err
}

// pgFailure explains a failed client program: the first error line of its
// output, and what to do when hint knows.
func pgFailure(ctx context.Context, c *Call, prog, stderr string, err error, hint func(string) string) error {
	if ctx.Err() != nil {
		reason := "interrupted"
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			reason = "timed out"
		}
		return fmt.Errorf("%s %s; its process group was terminated", prog, reason)
	}
	var exitErr *exec.ExitError
	msg := prog + " failed"
	if errors.As(err, &exitErr) {
		msg = fmt.Sprintf("%s exited %d", prog, exitErr.ExitCode())
	} else {
		msg += ": " + err.Error()
	}
	if line := clientErrorLine(stderr); line != "" {
		msg += ": " + line
	}
	if h := hint(stderr); h != "" {
		msg += " (" + h + ")"
	}
	return errors.New(c.Mask(msg))
}

// clientErrorLine picks the line that says what went wrong from a client
// program's output: the first "error:" line, else the last line.
func clientErrorLine(s string) string {
	for _, line := range strings.Split(s, "\n") {
		if i := strings.Index(line, "error: "); i >= 0 {
			line = strings.TrimSpace(line)
			if len(line) > 300 {
				line = line[:300] + "…"
			}
			return line
		}
	}
	return lastLine(s)
}

// tocEntry is one line of `pg_restore --list`.
type tocEntry struct {
	line   string // as listed
	id     int
	desc   string // TABLE DATA, SEQUENCE SET…
	schema string // "" for none
	name   string
	owner  string
}

// archiveTOC is what `pg_restore --list` says about an archive.
type archiveTOC struct {
	entries      []tocEntry
	dumpedFrom   int // server version, server_version_num style
	dumpedBy     int // pg_dump version
	listing      string
	formatHeader string
}

// tocDescs are the entry kinds pg_dump writes, longest first where one is a
// prefix of another.
var tocDescs = func() []string {
	d := []string{
		"ACCESS METHOD", "ACL", "AGGREGATE", "BLOB", "BLOB METADATA", "BLOBS", "CAST", "CHECK CONSTRAINT",
		"COLLATION", "COMMENT", "CONSTRAINT", "CONVERSION", "DATABASE", "DATABASE PROPERTIES", "DEFAULT",
		"DEFAULT ACL", "DOMAIN", "ENCODING", "EVENT TRIGGER", "EXTENSION", "FK CONSTRAINT",
		"FOREIGN DATA WRAPPER", "FOREIGN TABLE", "FUNCTION", "INDEX", "INDEX ATTACH", "LARGE OBJECT",
		"LARGE OBJECTS", "MATERIALIZED VIEW", "MATERIALIZED VIEW DATA", "OPERATOR", "OPERATOR CLASS",
		"OPERATOR FAMILY", "POLICY", "PROCEDURAL LANGUAGE", "PROCEDURE", "PUBLICATION", "PUBLICATION TABLE",
		"PUBLICATION TABLES IN SCHEMA", "ROW SECURITY", "RULE", "SCHEMA", "SEARCHPATH", "SECURITY LABEL",
		"SEQUENCE", "SEQUENCE OWNED BY", "SEQUENCE SET", "SERVER", "SHELL TYPE", "STATISTICS",
		"STATISTICS DATA", "STDSTRINGS", "SUBSCRIPTION", "SUBSCRIPTION TABLE", "TABLE", "TABLE ATTACH",
		"TABLE DATA", "TEXT SEARCH CONFIGURATION", "TEXT SEARCH DICTIONARY", "TEXT SEARCH PARSER",
		"TEXT SEARCH TEMPLATE", "TRANSFORM", "TRIGGER", "TYPE", "USER MAPPING", "VIEW",
	}
	sort.Slice(d, func(i, j int) bool { return len(d[i]) > len(d[j]) })
	return d
}()

var tocLine = regexp.MustCompile(`^(\d+); (\d+) (\d+) (.*)$`)

// parseTOC reads the output of `pg_restore --list`. Entry lines are
// "<id>; <tableoid> <oid> <desc> <schema|-> <name> <owner>"; the owner may
// be empty.
func parseTOC(listing string) archiveTOC {
	toc := archiveTOC{listing: listing}
	for _, line := range strings.Split(listing, "\n") {
		if strings.HasPrefix(line, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, ";")), ":")
			if !ok {
				continue
			}
			v = strings.TrimSpace(v)
			switch strings.TrimSpace(k) {
			case "Dumped from database version":
				toc.dumpedFrom, _ = parseToolVersion("(PostgreSQL) " + v)
			case "Dumped by pg_dump version":
				toc.dumpedBy, _ = parseToolVersion("(PostgreSQL) " + v)
			case "Format":
				toc.formatHeader = v
			}
			continue
		}
		m := tocLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		e := tocEntry{line: line}
		e.id, _ = strconv.Atoi(m[1])
		rest := m[4]
		for _, d := range tocDescs {
			if strings.HasPrefix(rest, d+" ") {
				e.desc, rest = d, rest[len(d)+1:]
				break
			}
		}
		if e.desc == "" {
			e.desc, rest, _ = strings.Cut(rest, " ")
		}
		e.schema, rest, _ = strings.Cut(rest, " ")
		if e.schema == "-" {
			e.schema = ""
		}
		if i := strings.LastIndexByte(rest, ' '); i >= 0 {
			e.name, e.owner = rest[:i], rest[i+1:]
		} else {
			e.name = rest
		}
		toc.entries = append(toc.entries, e)
	}
	return toc
}

// listArchive runs `pg_restore --list` on an archive.
func listArchive(ctx context.Context, c *Call, pgRestore, path string, env []string) (archiveTOC, error) {
	var out bytes.Buffer
	stderr, err := runPG(ctx, c, pgCommand{path: pgRestore, args: []string{"--list", path}, env: env, stdout: &out})
	if err != nil {
		return archiveTOC{}, pgFailure(ctx, c, "pg_restore --list", stderr, err, func(s string) string {
			if strings.Contains(s, "unsupported version") {
				return "the archive was written by a newer pg_dump: install a newer postgresql-client, or set bin_dir"
			}
			return "the archive is unreadable or incomplete"
		})
	}
	return parseTOC(out.String()), nil
}

// verifyArchive checks that the archive holds data for every expected table
// and a value for every sequence, and counts both.
func verifyArchive(toc archiveTOC, expected []qualifiedName) (tables, sequences int, err error) {
	data := map[qualifiedName]bool{}
	seqs := map[qualifiedName]bool{}
	set := map[qualifiedName]bool{}
	for _, e := range toc.entries {
		q := qualifiedName{e.schema, e.name}
		switch e.desc {
		case "TABLE DATA":
			data[q] = true
			tables++
		case "SEQUENCE":
			seqs[q] = true
		case "SEQUENCE SET":
			set[q] = true
			sequences++
		}
	}
	var missing []string
	for _, q := range expected {
		if !data[q] {
			missing = append(missing, "no TABLE DATA for "+q.String())
		}
	}
	for q := range seqs {
		if !set[q] {
			missing = append(missing, "no SEQUENCE SET for "+q.String())
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		if len(missing) > 10 {
			missing = append(missing[:10], fmt.Sprintf("and %d more", len(missing)-10))
		}
		return tables, sequences, fmt.Errorf("verification failed: pg_restore --list shows %s", strings.Join(missing, ", "))
	}
	return tables, sequences, nil
}

// snapshotFiles lists the regular files of a snapshot directory, sorted.
func snapshotFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// hashFiles returns the SHA-256 of each named file of dir, hashing with up
// to workers goroutines, and their total size.
func hashFiles(dir string, names []string, workers int) (map[string]string, int64, error) {
	if workers < 1 {
		workers = 1
	}
	if n := runtime.GOMAXPROCS(0); workers > n {
		workers = n
	}
	var (
		mu    sync.Mutex
		sums  = make(map[string]string, len(names))
		total int64
		first error
		wg    sync.WaitGroup
		next  = make(chan string)
	)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := sha256.New()
			buf := make([]byte, 1<<20)
			for name := range next {
				h.Reset()
				f, err := os.Open(filepath.Join(dir, name))
				var n int64
				if err == nil {
					n, err = io.CopyBuffer(h, f, buf)
					f.Close()
				}
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				sums[name] = hex.EncodeToString(h.Sum(nil))
				total += n
				mu.Unlock()
			}
		}()
	}
	// Largest first, so that one big file does not finish last alone.
	sizes := map[string]int64{}
	for _, n := range names {
		if fi, err := os.Stat(filepath.Join(dir, n)); err == nil {
			sizes[n] = fi.Size()
		}
	}
	order := append([]string(nil), names...)
	sort.SliceStable(order, func(i, j int) bool { return sizes[order[i]] > sizes[order[j]] })
	for _, n := range order {
		next <- n
	}
	close(next)
	wg.Wait()
	return sums, total, first
}

// writeChecksums writes SHA256SUMS for every other file of dir and returns
// the sums (SHA256SUMS's own included) and the size of all the files.
func writeChecksums(dir string, workers int) (map[string]string, int64, error) {
	names, err := snapshotFiles(dir)
	if err != nil {
		return nil, 0, err
	}
	names = withoutName(names, checksumsFile)
	sums, total, err := hashFiles(dir, names, workers)
	if err != nil {
		return nil, 0, err
	}
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s  %s\n", sums[n], n)
	}
	if err := os.WriteFile(filepath.Join(dir, checksumsFile), []byte(b.String()), 0o600); err != nil {
		return nil, 0, err
	}
	s := sha256.Sum256([]byte(b.String()))
	sums[checksumsFile] = hex.EncodeToString(s[:])
	return sums, total + int64(b.Len()), nil
}

// verifyChecksums checks every file SHA256SUMS in dir lists, and returns
// their names.
func verifyChecksums(dir string, workers int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, checksumsFile))
	if err != nil {
		return nil, err
	}
	want := map[string]string{}
	var names []string
	for i, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok || len(sum) != 64 || name == "" || strings.ContainsAny(name, "/\\") {
			return nil, fmt.Errorf("%s line %d is not \"<sha256>  <file>\"", filepath.Join(dir, checksumsFile), i+1)
		}
		want[name] = sum
		names = append(names, name)
	}
	got, _, err := hashFiles(dir, names, workers)
	if err != nil {
		return nil, fmt.Errorf("checking %s: %w", filepath.Join(dir, checksumsFile), err)
	}
	var bad []string
	for _, n := range names {
		if got[n] != want[n] {
			bad = append(bad, n)
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("the snapshot in %s is damaged: checksum mismatch for %s", dir, strings.Join(bad, ", "))
	}
	return names, nil
}

func withoutName(s []string, v string) []string {
	out := s[:0]
	for _, x := range s {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

// namePattern is a psql/pg_dump name pattern (as for -n and -T), compiled.
type namePattern struct {
	schema *regexp.Regexp // nil when the pattern has no schema part
	name   *regexp.Regexp
}

// match reports whether a relation matches. An unqualified pattern, as in
// pg_dump, matches only relations visible on the search path.
func (p namePattern) match(schemaName, name string, visible bool) bool {
	if p.schema == nil {
		return visible && p.name.MatchString(name)
	}
	return p.schema.MatchString(schemaName) && p.name.MatchString(name)
}

// parseNamePattern compiles a pattern the way psql's processSQLNamePattern
// reads it: outside double quotes letters fold to lower case, * and ? are
// wildcards, . separates the schema from the name, $ is literal and other
// regular expression syntax works; inside double quotes everything is
// literal and "" is a quote. parts is 1 for schemas, 2 for tables.
func parseNamePattern(pat string, parts int) (namePattern, error) {
	var segs []string
	var cur strings.Builder
	inQuotes := false
	rs := []rune(pat)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == '"':
			if inQuotes && i+1 < len(rs) && rs[i+1] == '"' {
				cur.WriteString(regexp.QuoteMeta(`"`))
				i++
				continue
			}
			inQuotes = !inQuotes
		case inQuotes:
			cur.WriteString(regexp.QuoteMeta(string(r)))
		case r == '.':
			segs = append(segs, cur.String())
			cur.Reset()
		case r == '*':
			cur.WriteString(".*")
		case r == '?':
			cur.WriteString(".")
		case r == '$':
			cur.WriteString(`\$`)
		default:
			cur.WriteString(strings.ToLower(string(r)))
		}
	}
	segs = append(segs, cur.String())
	if inQuotes {
		return namePattern{}, fmt.Errorf("%q: unterminated double quote", pat)
	}
	if len(segs) > parts {
		return namePattern{}, fmt.Errorf("%q: too many dotted names", pat)
	}
	compile := func(s string) (*regexp.Regexp, error) {
		if s == "" {
			return nil, fmt.Errorf("%q: empty name", pat)
		}
		re, err := regexp.Compile("^(?:" + s + ")$")
		if err != nil {
			return nil, fmt.Errorf("%q: %v", pat, err)
		}
		return re, nil
	}
	var np namePattern
	var err error
	if np.name, err = compile(segs[len(segs)-1]); err != nil {
		return namePattern{}, err
	}
	if len(segs) == 2 {
		if np.schema, err = compile(segs[0]); err != nil {
			return namePattern{}, err
		}
	}
	return np, nil
}

// quotePattern quotes a name so that a pg_dump pattern matches exactly it.
func quotePattern(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// plural shows n things: 1 table, 2 tables.
func plural(n int64, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return strconv.FormatInt(n, 10) + " " + thing + "s"
}

func freeSpaceText(n int64) string {
	if n < 0 {
		return "free space unknown"
	}
	return byteSize(n) + " free"
}

// byteSize shows a size with a binary unit.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
