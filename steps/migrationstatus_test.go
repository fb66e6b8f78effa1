package steps

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pgcutover/cutover/schema"
	"github.com/pgcutover/cutover/steps/pgtest"
)

// djangoMigrationsDDL is the table Django 3.2's migrate creates with
// DEFAULT_AUTO_FIELD = BigAutoField.
const djangoMigrationsDDL = `CREATE TABLE IF NOT EXISTS django_migrations (
	id bigserial NOT NULL PRIMARY KEY,
	app varchar(255) NOT NULL,
	name varchar(255) NOT NULL,
	applied timestamptz NOT NULL)`

// setMigrations makes django_migrations in db hold exactly the given
// app.name migrations, applied a minute apart in that order, owned by the
// test role.
func setMigrations(t *testing.T, cl *pgtest.Cluster, db string, migrations ...string) {
	t.Helper()
	var b strings.Builder
	b.WriteString(djangoMigrationsDDL + ";\nALTER TABLE django_migrations OWNER TO app;\nTRUNCATE django_migrations;\n")
	for i, m := range migrations {
		app, name, ok := strings.Cut(m, ".")
		if !ok {
			t.Fatalf("migration %q is not app.name", m)
		}
		fmt.Fprintf(&b, "INSERT INTO django_migrations (app, name, applied) VALUES ('%s', '%s', timestamptz '2024-03-01 10:00:00+00' + interval '%d minutes');\n", app, name, i)
	}
	if err := cl.Exec(context.Background(), db, b.String()); err != nil {
		t.Fatal(err)
	}
}

func TestMigrationStatus(t *testing.T) {
	const canary = "Migr-Canary-pw/3+q"
	cl := pgtest.Start(t, pgtest.Options{
		TLS:       pgtest.TLSEnforced,
		Roles:     []pgtest.Role{{Name: "app", Password: canary}},
		Databases: map[string]string{"olddb": "app", "newdb": "app", "emptydb": "app"},
	})
	target := func(name, db string) *schema.Target {
		return &schema.Target{
			Name: name, Host: cl.Host, Port: cl.Port, DBName: db, User: "app", Password: "pw",
			SSLMode: "verify-full", SSLRootCert: cl.CAFile,
		}
	}
	ts := newTargets(t, map[string]string{"pw": canary}, target("old", "olddb"), target("new", "newdb"), target("empty", "emptydb"))
	run := func(t *testing.T, with map[string]any) (Outputs, error, string) {
		t.Helper()
		c, live := newCall(t, "migration-status", with, ts)
		out, err := migrationStatus{}.Run(context.Background(), c)
		if err != nil && strings.Contains(err.Error(), canary) {
			t.Errorf("the password is in the error: %v", err)
		}
		if strings.Contains(live.String(), canary) || strings.Contains(fmt.Sprint(out), canary) {
			t.Error("the password is in the output")
		}
		return out, err, live.String()
	}
	base := []string{"contenttypes.0001_initial", "auth.0001_initial", "auth.0002_alter_permission_name_max_length", "shop.0001_initial"}

	tests := []struct {
		name     string
		old, new []string
		want     Outputs
	}{
		{
			name: "same", old: base, new: base,
			want: Outputs{"state": "same", "count": 4, "missing": []string{}, "extra": []string{}, "latest": "shop.0001_initial",
				"applied": []string{"auth.0001_initial", "auth.0002_alter_permission_name_max_length", "contenttypes.0001_initial", "shop.0001_initial"}},
		},
		{
			name: "behind", old: append(base[:4:4], "shop.0002_price"), new: base,
			want: Outputs{"state": "behind", "count": 4, "missing": []string{"shop.0002_price"}, "extra": []string{}},
		},
		{
			name: "ahead", old: base[:3], new: base,
			want: Outputs{"state": "ahead", "count": 4, "missing": []string{}, "extra": []string{"shop.0001_initial"}, "latest": "shop.0001_initial"},
		},
		{
			name: "diverged", old: append(base[:3:3], "shop.0001_initial_squashed"), new: base,
			want: Outputs{"state": "diverged", "count": 4, "missing": []string{"shop.0001_initial_squashed"}, "extra": []string{"shop.0001_initial"}},
		},
		{
			name: "empty table is fresh", old: base, new: nil,
			want: Outputs{"state": "fresh", "count": 0, "applied": []string{}, "latest": "", "missing": slices.Sorted(slices.Values(base)), "extra": []string{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setMigrations(t, cl, "olddb", tt.old...)
			setMigrations(t, cl, "newdb", tt.new...)
			out, err, live := run(t, map[string]any{"target": "new", "compare_with": "old"})
			if err != nil {
				t.Fatal(err)
			}
			wantOutputs(t, out, tt.want)
			if !strings.Contains(live, "migration-status new is ") && tt.want["state"] != "fresh" {
				t.Errorf("live output does not say the state:\n%s", live)
			}
		})
	}

	t.Run("no table is fresh, with or without compare_with", func(t *testing.T) {
		setMigrations(t, cl, "olddb", base...)
		out, err, live := run(t, map[string]any{"target": "empty", "expect": "fresh"})
		if err != nil {
			t.Fatal(err)
		}
		wantOutputs(t, out, Outputs{"state": "fresh", "count": 0, "applied": []string{}, "latest": "", "missing": []string{}, "extra": []string{}})
		if live != "migration-status empty: no django_migrations table\n" {
			t.Errorf("live output = %q", live)
		}
		out, err, _ = run(t, map[string]any{"target": "empty", "compare_with": "old"})
		if err != nil {
			t.Fatal(err)
		}
		wantOutputs(t, out, Outputs{"state": "fresh", "missing": slices.Sorted(slices.Values(base))})
	})

	t.Run("without compare_with a database with migrations is present", func(t *testing.T) {
		setMigrations(t, cl, "newdb", base...)
		out, err, live := run(t, map[string]any{"target": "new"})
		if err != nil {
			t.Fatal(err)
		}
		wantOutputs(t, out, Outputs{"state": "present", "count": 4, "latest": "shop.0001_initial", "missing": []string{}, "extra": []string{}})
		if live != "migration-status new: 4 applied, latest shop.0001_initial\n" {
			t.Errorf("live output = %q", live)
		}
	})

	t.Run("latest is by applied time, then id", func(t *testing.T) {
		setMigrations(t, cl, "newdb")
		// Inserted in id order z, a, b; a and b applied last, at the same time.
		if err := cl.Exec(context.Background(), "newdb", `INSERT INTO django_migrations (app, name, applied) VALUES
			('z', '0009_late_id_early_time', '2024-03-01 09:00+00'),
			('a', '0001_first', '2024-03-02 09:00+00'),
			('b', '0001_second', '2024-03-02 09:00+00')`); err != nil {
			t.Fatal(err)
		}
		out, err, _ := run(t, map[string]any{"target": "new"})
		if err != nil {
			t.Fatal(err)
		}
		wantOutputs(t, out, Outputs{"latest": "b.0001_second", "applied": []string{"a.0001_first", "b.0001_second", "z.0009_late_id_early_time"}})
	})

	t.Run("an unexpected state fails and says what to do", func(t *testing.T) {
		cases := []struct {
			name     string
			old, new []string
			with     map[string]any
			want     string
		}{
			{
				"behind, expected same", append(base[:4:4], "shop.0002_price", "shop.0003_stock"), base,
				map[string]any{"target": "new", "compare_with": "old", "expect": "same"},
				"target new is behind old, expected same; missing on new (applied on old): shop.0002_price, shop.0003_stock: " +
					"the restore into new is incomplete or old was migrated since: restore again, or run manage.py migrate against new with the code that runs on old",
			},
			{
				"diverged, expected ahead", append(base[:3:3], "shop.0001_initial_squashed"), base,
				map[string]any{"target": "new", "compare_with": "old", "expect": "ahead"},
				"target new is diverged from old, expected ahead; missing on new (applied on old): shop.0001_initial_squashed; extra on new (not applied on old): shop.0001_initial: " +
					"new and old were migrated by different code: restore new from old again before cutting over",
			},
			{
				"present, expected fresh", base, base,
				map[string]any{"target": "new", "expect": "fresh"},
				"target new is present, expected fresh: new already has 4 applied migrations (latest shop.0001_initial): " +
					"point the plan at an empty database, or drop and recreate new's database before restoring",
			},
			{
				"fresh, expected same", base, nil,
				map[string]any{"target": "new", "compare_with": "old", "expect": "same"},
				"target new is fresh, expected same: new has no applied migrations while old has 4: " +
					"nothing has been restored or migrated into new yet: run the restore (or manage.py migrate) first",
			},
			{
				"same, expected behind", base, base,
				map[string]any{"target": "new", "compare_with": "old", "expect": "behind"},
				"target new is the same as old, expected behind: set expect: same if that is what this point of the plan should see",
			},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				setMigrations(t, cl, "olddb", tc.old...)
				setMigrations(t, cl, "newdb", tc.new...)
				out, err, _ := run(t, tc.with)
				wantError(t, err, tc.want)
				if !IsPermanent(err) {
					t.Error("a state mismatch cannot pass on retry")
				}
				if out == nil || out["state"] == "" {
					t.Error("the outputs are not returned with the failure")
				}
			})
		}
	})

	t.Run("a long list is cut short", func(t *testing.T) {
		var many []string
		for i := 1; i <= 12; i++ {
			many = append(many, fmt.Sprintf("shop.%04d_step", i))
		}
		setMigrations(t, cl, "olddb", many...)
		setMigrations(t, cl, "newdb", many[:1]...)
		_, err, _ := run(t, map[string]any{"target": "new", "compare_with": "old", "expect": "same"})
		if err == nil || !strings.Contains(err.Error(), "applied on old): shop.0002_step, shop.0003_step, shop.0004_step, shop.0005_step, shop.0006_step, shop.0007_step, shop.0008_step, shop.0009_step, shop.0010_step, shop.0011_step and 1 more: ") {
			t.Errorf("err = %v", err)
		}
	})

	t.Run("comparing expectations need compare_with", func(t *testing.T) {
		_, err, _ := run(t, map[string]any{"target": "new", "expect": "same"})
		wantError(t, err, "expect: same compares two targets: set compare_with (usually the source)")
		if !IsPermanent(err) {
			t.Error("a plan mistake cannot pass on retry")
		}
	})

	t.Run("a role that cannot read the table is told what to grant", func(t *testing.T) {
		if err := cl.Exec(context.Background(), "newdb", "ALTER TABLE django_migrations OWNER TO postgres; REVOKE ALL ON django_migrations FROM app"); err != nil {
			t.Fatal(err)
		}
		_, err, _ := run(t, map[string]any{"target": "new"})
		wantError(t, err, "target new: permission denied for table django_migrations (SQLSTATE 42501): grant the role SELECT on django_migrations, or use the app's own role")
		if !IsPermanent(err) {
			t.Error("a missing privilege cannot pass on retry")
		}
	})

	t.Run("one connection per target for the whole run", func(t *testing.T) {
		for _, name := range []string{"old", "new", "empty"} {
			if ts.Opened[name] != 1 {
				t.Errorf("opened %d connections to %s, want 1", ts.Opened[name], name)
			}
		}
	})
}

func TestCompareMigrations(t *testing.T) {
	tests := []struct {
		count          int
		missing, extra []string
		want           string
	}{
		{0, nil, nil, "fresh"},
		{0, []string{"a.1"}, nil, "fresh"},
		{2, nil, nil, "same"},
		{2, []string{"a.3"}, nil, "behind"},
		{2, nil, []string{"a.2"}, "ahead"},
		{2, []string{"a.3"}, []string{"a.2"}, "diverged"},
	}
	for _, tt := range tests {
		if got := compareMigrations(tt.count, tt.missing, tt.extra); got != tt.want {
			t.Errorf("compareMigrations(%d, %v, %v) = %s, want %s", tt.count, tt.missing, tt.extra, got, tt.want)
		}
	}
}
