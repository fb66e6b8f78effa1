package steps

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgcutover/cutover/schema"
)

// Migration states, in the words migration-status reports.
const (
	migrationsFresh    = "fresh"
	migrationsPresent  = "present"
	migrationsSame     = "same"
	migrationsBehind   = "behind"
	migrationsAhead    = "ahead"
	migrationsDiverged = "diverged"
)

// migrationListMax bounds how many migration names a message spells out.
const migrationListMax = 10

func init() {
	Register(&Type{
		Name:    "migration-status",
		Summary: "Read Django's django_migrations on a target and compare the applied set with another target's.",
		Doc: "Reads `django_migrations` (the table Django's `migrate` keeps, found through the connection's search_path " +
			"as Django finds it) on the run's shared connection to `target`, and lists the applied migrations as " +
			"`app.name`. Nothing is written, and `manage.py` is not run: the step works the same in a dry run.\n\n" +
			"`state` is `fresh` when nothing is applied on `target` (no `django_migrations` table, or an empty one). " +
			"Without `compare_with` it is otherwise `present`. With `compare_with` (usually the source database) it " +
			"compares the two applied sets: `same` when they are equal, `behind` when `target` lacks migrations " +
			"`compare_with` has (run `migrate`, or the restore is incomplete), `ahead` when `target` has every " +
			"migration `compare_with` has and more (newer code already migrated it), `diverged` when each has " +
			"migrations the other lacks (different branches of the code migrated them). `missing` and `extra` " +
			"list the differences.\n\n" +
			"With `expect` other than `any`, the step fails when `state` differs, naming the migrations that make the " +
			"difference and what to do. Reading the table needs SELECT on it; a role that lacks it fails with the " +
			"server's words.",
		Inputs: []schema.Field{
			{Name: "target", Kind: schema.String, Ref: schema.RefTarget, Required: true, Doc: "the target whose migrations are read"},
			{Name: "compare_with", Kind: schema.String, Ref: schema.RefTarget, Doc: "another target (usually the source) to compare the applied set with"},
			{Name: "expect", Kind: schema.String, Enum: []string{"any", migrationsFresh, migrationsSame, migrationsBehind, migrationsAhead}, Default: "any",
				Doc: "fail unless state is this; any never fails on the state. same, behind and ahead need compare_with"},
		},
		Outputs: []schema.Output{
			{Name: "applied", Kind: schema.StringList, Doc: "the migrations applied on target, as app.name, sorted"},
			{Name: "latest", Kind: schema.String, Doc: "the most recently applied migration (by applied time, then id), as app.name; empty when fresh"},
			{Name: "count", Kind: schema.Int, Doc: "how many migrations are applied on target"},
			{Name: "state", Kind: schema.String, Doc: "fresh or present without compare_with; with it: fresh, same, behind, ahead or diverged"},
			{Name: "missing", Kind: schema.StringList, Doc: "migrations applied on compare_with but not on target, sorted"},
			{Name: "extra", Kind: schema.StringList, Doc: "migrations applied on target but not on compare_with, sorted"},
		},
		DryRun:  "runs (it is read-only)",
		Example: "- id: migrations\n  type: migration-status\n  with: {target: new, compare_with: old, expect: same}\n  assert: [\"steps.migrations.outputs.count > 0\"]\n",
		Impl:    migrationStatus{},
	})
}

type migrationStatus struct{}

func (migrationStatus) Run(ctx context.Context, c *Call) (Outputs, error) {
	a := c.Args
	name, other, expect := a.String("target"), a.String("compare_with"), a.String("expect")
	switch expect {
	case "any", migrationsFresh:
	case migrationsSame, migrationsBehind, migrationsAhead:
		if other == "" {
			return nil, Permanent(fmt.Errorf("expect: %s compares two targets: set compare_with (usually the source)", expect))
		}
	default:
		return nil, Permanent(fmt.Errorf("expect is %q; it must be any, fresh, same, behind or ahead", expect))
	}
	if c.Targets == nil {
		return nil, Permanent(fmt.Errorf("no target %q", name))
	}
	here, err := readMigrations(ctx, c.Targets, name)
	if err != nil {
		return nil, err
	}
	out := Outputs{
		"applied": here.sorted(), "latest": here.latest, "count": int64(len(here.set)),
		"state": migrationsPresent, "missing": []string{}, "extra": []string{},
	}
	if len(here.set) == 0 {
		out["state"] = migrationsFresh
	}
	var there *appliedMigrations
	if other != "" {
		there, err = readMigrations(ctx, c.Targets, other)
		if err != nil {
			return nil, err
		}
		missing, extra := here.diff(there)
		out["missing"], out["extra"] = missing, extra
		out["state"] = compareMigrations(len(here.set), missing, extra)
	}
	state := out["state"].(string)
	reportMigrations(c, name, other, out, here, there)
	if expect != "any" && state != expect {
		return out, Permanent(errors.New(migrationMismatch(name, other, expect, out)))
	}
	return out, nil
}

// appliedMigrations is a target's django_migrations.
type appliedMigrations struct {
	table  bool // the table exists
	set    map[string]bool
	latest string
}

func (m *appliedMigrations) sorted() []string {
	out := make([]string, 0, len(m.set))
	for k := range m.set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// diff returns what other has and m lacks, and what m has and other lacks.
func (m *appliedMigrations) diff(other *appliedMigrations) (missing, extra []string) {
	missing, extra = []string{}, []string{}
	for k := range other.set {
		if !m.set[k] {
			missing = append(missing, k)
		}
	}
	for k := range m.set {
		if !other.set[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return missing, extra
}

// compareMigrations names the relation of a target's applied set to
// another's, given what it lacks and what it has in excess.
func compareMigrations(count int, missing, extra []string) string {
	switch {
	case count == 0:
		return migrationsFresh
	case len(missing) == 0 && len(extra) == 0:
		return migrationsSame
	case len(extra) == 0:
		return migrationsBehind
	case len(missing) == 0:
		return migrationsAhead
	}
	return migrationsDiverged
}

// readMigrations reads django_migrations on a target's shared connection.
func readMigrations(ctx context.Context, ts *Targets, name string) (*appliedMigrations, error) {
	conn, err := ts.Conn(ctx, name)
	if err != nil {
		return nil, err
	}
	m := &appliedMigrations{set: map[string]bool{}}
	if err := conn.QueryRow(ctx, "SELECT to_regclass('django_migrations') IS NOT NULL").Scan(&m.table); err != nil {
		return nil, queryError(name, err)
	}
	if !m.table {
		return m, nil
	}
	rows, err := conn.Query(ctx, "SELECT app, name FROM django_migrations ORDER BY applied NULLS FIRST, id")
	if err != nil {
		return nil, migrationsQueryError(name, err)
	}
	var app, mig string
	_, err = pgx.ForEachRow(rows, []any{&app, &mig}, func() error {
		key := app + "." + mig
		m.set[key] = true
		m.latest = key
		return nil
	})
	if err != nil {
		return nil, migrationsQueryError(name, err)
	}
	return m, nil
}

func migrationsQueryError(name string, err error) error {
	err = queryError(name, err)
	if strings.Contains(err.Error(), "SQLSTATE 42501") {
		return Permanent(fmt.Errorf("%w: grant the role SELECT on django_migrations, or use the app's own role", err))
	}
	return err
}

// reportMigrations writes one line per target read.
func reportMigrations(c *Call, name, other string, out Outputs, here, there *appliedMigrations) {
	describe := func(m *appliedMigrations) string {
		switch {
		case !m.table:
			return "no django_migrations table"
		case len(m.set) == 0:
			return "django_migrations is empty"
		}
		return fmt.Sprintf("%d applied, latest %s", len(m.set), m.latest)
	}
	say(c, "migration-status %s: %s", name, describe(here))
	if there != nil {
		say(c, "migration-status %s: %s", other, describe(there))
		say(c, "migration-status %s is %s", name, migrationStateWords(out["state"].(string), other))
	}
}

// migrationMismatch explains a state that is not the expected one, and what
// to do about it.
func migrationMismatch(name, other, expect string, out Outputs) string {
	state := out["state"].(string)
	missing, extra := out["missing"].([]string), out["extra"].([]string)
	var b strings.Builder
	fmt.Fprintf(&b, "target %s is %s, expected %s", name, migrationStateWords(state, other), expect)
	switch {
	case state == migrationsFresh && other != "":
		fmt.Fprintf(&b, ": %s has no applied migrations while %s has %d", name, other, len(missing))
	case state == migrationsFresh:
		fmt.Fprintf(&b, ": %s has no applied migrations", name)
	case expect == migrationsFresh:
		fmt.Fprintf(&b, ": %s already has %d applied migrations (latest %s)", name, out["count"], out["latest"])
	default:
		if len(missing) > 0 {
			fmt.Fprintf(&b, "; missing on %s (applied on %s): %s", name, other, migrationList(missing))
		}
		if len(extra) > 0 {
			fmt.Fprintf(&b, "; extra on %s (not applied on %s): %s", name, other, migrationList(extra))
		}
	}
	b.WriteString(": ")
	switch {
	case expect == migrationsFresh:
		fmt.Fprintf(&b, "point the plan at an empty database, or drop and recreate %s's database before restoring", name)
	case state == migrationsFresh:
		fmt.Fprintf(&b, "nothing has been restored or migrated into %s yet: run the restore (or manage.py migrate) first", name)
	case state == migrationsBehind:
		fmt.Fprintf(&b, "the restore into %s is incomplete or %s was migrated since: restore again, or run manage.py migrate against %s with the code that runs on %s", name, other, name, other)
	case state == migrationsAhead:
		fmt.Fprintf(&b, "%s was migrated by newer code than %s runs: deploy that code against %s too, or restore %s again", name, other, other, name)
	case state == migrationsDiverged:
		fmt.Fprintf(&b, "%s and %s were migrated by different code: restore %s from %s again before cutting over", name, other, name, other)
	default:
		fmt.Fprintf(&b, "set expect: %s if that is what this point of the plan should see", state)
	}
	return b.String()
}

// migrationStateWords puts a state into a sentence about the target.
func migrationStateWords(state, other string) string {
	switch state {
	case migrationsSame:
		return "the same as " + other
	case migrationsBehind:
		return "behind " + other
	case migrationsAhead:
		return "ahead of " + other
	case migrationsDiverged:
		return "diverged from " + other
	}
	return state
}

// migrationList spells out at most migrationListMax names.
func migrationList(names []string) string {
	if len(names) <= migrationListMax {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:migrationListMax], ", "), len(names)-migrationListMax)
}
