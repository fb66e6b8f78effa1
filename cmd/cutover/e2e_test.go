package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rogpeppe/go-internal/testscript"
)

// TestEndToEnd runs testdata/e2e: the reference cutover plan moving the demo
// Django app from the sandbox's old cluster to its new one, through the CLI.
// Each script gets its own sandbox (cutover sandbox up) and its own app port;
// the app is started by the plan's restart step (testdata/e2e restart.sh).
//
// Extra commands:
//
//	dbstate VAR FILE   write the tables, row counts and applied migrations of
//	                   the database whose URL is in $VAR to FILE
func TestEndToEnd(t *testing.T) {
	requireEndToEnd(t)
	plans, _ := filepath.Abs(filepath.Join("..", "..", "plans"))
	testscript.Run(t, testscript.Params{
		Dir:                 filepath.Join("testdata", "e2e"),
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("NO_COLOR", "1")
			env.Setenv("CUTOVER_JOURNAL_DIR", filepath.Join(env.WorkDir, "journal"))
			env.Setenv("PLANS", plans)
			env.Setenv("APP_DIR", filepath.Join(plans, "demo"))
			env.Setenv("PYTHONDONTWRITEBYTECODE", "1")
			vars, down, err := sandboxUp(filepath.Join(env.WorkDir, "sandbox"))
			if err != nil {
				return err
			}
			env.Defer(func() {
				if b, err := os.ReadFile(filepath.Join(env.WorkDir, "app.pid")); err == nil {
					if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
						_ = syscall.Kill(-pid, syscall.SIGKILL)
					}
				}
				down()
			})
			for k, v := range vars {
				env.Setenv(k, v)
			}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			env.Setenv("APP_PORT", strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
			l.Close()
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"grepjournal": cmdGrepJournal,
			"dbstate":     cmdDBState,
		},
	})
}

func cmdDBState(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: dbstate VAR FILE")
	}
	state, err := dbState(ts.Getenv(args[0]))
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(state), 0o644))
}

// dbState describes a database as the end-to-end tests compare it: its
// public tables with their row counts, and Django's applied migrations.
func dbState(url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return "", err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`)
	if err != nil {
		return "", err
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, tbl := range tables {
		var n int64
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s", pgx.Identifier{tbl}.Sanitize())).Scan(&n); err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "table %s %d\n", tbl, n)
	}
	if contains(tables, "django_migrations") {
		rows, err := conn.Query(ctx, `SELECT app || '.' || name FROM django_migrations`)
		if err != nil {
			return "", err
		}
		migs, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return "", err
		}
		sort.Strings(migs)
		for _, m := range migs {
			fmt.Fprintf(&b, "migration %s\n", m)
		}
	}
	return b.String(), nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
