package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgcutover/cutover/steps/pgtest"
)

// BenchmarkPreflight runs plans/preflight.yaml (a dry run, as cron would)
// and the same checks done by hand with psql, pg_isready and openssl,
// against one TLS-enforced cluster, and counts the connections each opens
// at the server (log_connections). Reported per run: wall time and
// connections.
func BenchmarkPreflight(b *testing.B) {
	cl := pgtest.Start(b, pgtest.Options{
		TLS: pgtest.TLSEnforced, Cert: pgtest.CertValid,
		Roles:     []pgtest.Role{{Name: "app", Password: pgPassword}},
		Databases: map[string]string{"appdb": "app"},
		Settings:  map[string]string{"log_connections": "on"},
	})
	bin := filepath.Join(b.TempDir(), "cutover")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	plan, _ := filepath.Abs(filepath.Join("..", "..", "plans", "preflight.yaml"))
	script, _ := filepath.Abs(filepath.Join("testdata", "bench-preflight.sh"))
	env := append(os.Environ(),
		"DATABASE_URL="+cl.URL("app", pgPassword, "appdb", "sslmode=verify-full", "sslrootcert="+cl.CAFile),
		"HOST="+cl.Host, "PORT="+itoa(cl.Port), "EXPECTED_DB=appdb",
		"CUTOVER_JOURNAL_DIR="+b.TempDir())
	connections := func() int { return strings.Count(readFile(b, cl.LogFile), "connection received") }
	cases := []struct {
		name string
		argv []string
	}{
		{"cutover", []string{bin, "run", plan, "--dry-run", "--param", "expected_db=appdb"}},
		{"bash-psql", []string{"bash", script}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			before := connections()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				cmd := exec.Command(c.argv[0], c.argv[1:]...)
				cmd.Env = env
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("%s: %v\n%s", c.name, err, out)
				}
			}
			elapsed := time.Since(start)
			// The server logs asynchronously; give it a moment.
			time.Sleep(100 * time.Millisecond)
			b.ReportMetric(float64(connections()-before)/float64(b.N), "conns/run")
			b.ReportMetric(float64(elapsed.Milliseconds())/float64(b.N), "ms/run")
		})
	}
}

func readFile(tb testing.TB, path string) string {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return string(data)
}

func itoa(n int) string { return strconv.Itoa(n) }
