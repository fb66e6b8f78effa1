package steps

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgcutover/cutover/schema"
	"github.com/pgcutover/cutover/steps/pgtest"
)

func TestSmokeQuery(t *testing.T) {
	const canary = "Smoke-Canary-pw/9+z"
	cl := pgtest.Start(t, pgtest.Options{
		TLS:       pgtest.TLSEnforced,
		Roles:     []pgtest.Role{{Name: "app", Password: canary}},
		Databases: map[string]string{"appdb": "app"},
	})
	ctx := context.Background()
	if err := cl.Exec(ctx, "appdb", "CREATE TABLE widgets (id bigint PRIMARY KEY, name text, price numeric, seen timestamptz)"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Exec(ctx, "appdb", "INSERT INTO widgets VALUES (1, 'cog', 9.5, now()), (2, 'gear', 12, now())"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Exec(ctx, "appdb", "ALTER TABLE widgets OWNER TO app"); err != nil {
		t.Fatal(err)
	}
	ts := newTargets(t, map[string]string{"pw": canary}, &schema.Target{
		Name: "new", Host: cl.Host, Port: cl.Port, DBName: "appdb", User: "app", Password: "pw",
		SSLMode: "verify-full", SSLRootCert: cl.CAFile,
	})
	run := func(with map[string]any) (Outputs, error) {
		t.Helper()
		with["target"] = "new"
		c, _ := newCall(t, "smoke-query", with, ts)
		return smokeQuery{}.Run(ctx, c)
	}

	t.Run("rows become typed values", func(t *testing.T) {
		out, err := run(map[string]any{"sql": "SELECT id, name, price, seen, current_database() AS db FROM widgets WHERE id = $1", "args": []string{"2"}})
		if err != nil {
			t.Fatal(err)
		}
		rows := out["rows"].([]map[string]any)
		if len(rows) != 1 || rows[0]["id"] != int64(2) || rows[0]["name"] != "gear" || rows[0]["price"] != 12.0 || rows[0]["db"] != "appdb" {
			t.Errorf("rows = %#v", rows)
		}
		if _, ok := rows[0]["seen"].(time.Time); !ok {
			t.Errorf("timestamptz is %T, want time.Time", rows[0]["seen"])
		}
		if out["row_count"] != int64(1) || out["command_tag"] != "SELECT 1" {
			t.Errorf("row_count %v tag %v", out["row_count"], out["command_tag"])
		}
	})

	t.Run("a write in read-only mode is refused and explained", func(t *testing.T) {
		_, err := run(map[string]any{"sql": "UPDATE widgets SET price = 0"})
		if err == nil || !strings.Contains(err.Error(), "cannot execute UPDATE in a read-only transaction (SQLSTATE 25006): the query writes, but smoke-query runs read-only unless write: true") {
			t.Fatalf("err = %v", err)
		}
		if !IsPermanent(err) {
			t.Error("a read-only violation is not worth retrying")
		}
	})

	t.Run("a write is rolled back unless commit", func(t *testing.T) {
		out, err := run(map[string]any{"sql": "UPDATE widgets SET price = 0 WHERE id = 1", "write": true})
		if err != nil || out["row_count"] != int64(1) {
			t.Fatalf("out %v err %v", out, err)
		}
		out, _ = run(map[string]any{"sql": "SELECT price FROM widgets WHERE id = 1"})
		if p := out["rows"].([]map[string]any)[0]["price"]; p != 9.5 {
			t.Fatalf("price after a rolled-back write = %v, want 9.5", p)
		}
		if _, err := run(map[string]any{"sql": "UPDATE widgets SET price = 1 WHERE id = 1", "write": true, "commit": true}); err != nil {
			t.Fatal(err)
		}
		out, _ = run(map[string]any{"sql": "SELECT price FROM widgets WHERE id = 1"})
		if p := out["rows"].([]map[string]any)[0]["price"]; p != 1.0 {
			t.Fatalf("price after a committed write = %v, want 1", p)
		}
	})

	t.Run("statement timeout", func(t *testing.T) {
		_, err := run(map[string]any{"sql": "SELECT pg_sleep(5)", "statement_timeout": 100 * time.Millisecond})
		if err == nil || !strings.Contains(err.Error(), "statement_timeout reached") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("max_rows bounds what is kept", func(t *testing.T) {
		out, err := run(map[string]any{"sql": "SELECT g FROM generate_series(1, 50) g", "max_rows": 10})
		if err != nil || len(out["rows"].([]map[string]any)) != 10 {
			t.Fatalf("err %v rows %d", err, len(out["rows"].([]map[string]any)))
		}
	})

	t.Run("one connection for the whole run", func(t *testing.T) {
		if ts.Opened["new"] != 1 {
			t.Errorf("opened %d connections to the target, want 1", ts.Opened["new"])
		}
	})

	t.Run("a SQL error names the target and keeps the server's words", func(t *testing.T) {
		_, err := run(map[string]any{"sql": "SELECT * FROM nosuch"})
		if err == nil || err.Error() != `target new: relation "nosuch" does not exist (SQLSTATE 42P01)` {
			t.Fatalf("err = %v", err)
		}
		if strings.Contains(err.Error(), canary) {
			t.Error("password leaked")
		}
	})
}

func TestConnectFailuresSayWhatIsWrong(t *testing.T) {
	const canary = "Conn-Canary-pw/7+x"
	cl := pgtest.Start(t, pgtest.Options{
		TLS:       pgtest.TLSEnforced,
		Roles:     []pgtest.Role{{Name: "app", Password: canary}},
		Databases: map[string]string{"appdb": "app"},
	})
	tests := []struct {
		name     string
		db, pw   string
		want     string
		retrying bool
	}{
		{"missing database", "nosuchdb", canary, "connecting to target new: database nosuchdb does not exist on 127.0.0.1: ", false},
		{"wrong password", "appdb", "not-the-password", "connecting to target new: wrong password for user app: ", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTargets(t, map[string]string{"pw": tt.pw}, &schema.Target{
				Name: "new", Host: cl.Host, Port: cl.Port, DBName: tt.db, User: "app", Password: "pw",
				SSLMode: "verify-full", SSLRootCert: cl.CAFile,
			})
			c, _ := newCall(t, "smoke-query", map[string]any{"target": "new", "sql": "SELECT 1"}, ts)
			_, err := smokeQuery{}.Run(context.Background(), c)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("err = %v\nwant prefix %q", err, tt.want)
			}
			if IsPermanent(err) == tt.retrying {
				t.Errorf("permanent = %v; a %s cannot pass on retry", IsPermanent(err), tt.name)
			}
			if strings.Contains(err.Error(), canary) || strings.Contains(err.Error(), "not-the-password") {
				t.Error("the password is in the message")
			}
		})
	}
}
