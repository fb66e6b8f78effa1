package steps

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgcutover/cutover/steps/pgtest"
)

// BenchmarkSnapshot compares the snapshot step, verification and checksums
// included, with plain pg_dump invocations on the same database of at least
// 500 MB: pgbench's tables plus text, JSON and incompressible bytea tables
// large enough that parallel jobs matter. Each round runs every variant once,
// in rotating order; the metrics are the medians over the rounds.
//
// It builds the database first, which takes minutes, so it runs only with
// CUTOVER_BENCH_SNAPSHOT=1:
//
//	CUTOVER_BENCH_SNAPSHOT=1 go test ./steps -run '^$' -bench BenchmarkSnapshot -benchtime 3x -timeout 1h
//
// CUTOVER_BENCH_SNAPSHOT_SCALE sets pgbench's scale (default 20, about
// 750 MB in all); the other tables grow with it.
func BenchmarkSnapshot(b *testing.B) {
	if os.Getenv("CUTOVER_BENCH_SNAPSHOT") != "1" {
		b.Skip("set CUTOVER_BENCH_SNAPSHOT=1 to run: it builds a database of 500 MB or more and takes minutes")
	}
	scale := 20
	if s := os.Getenv("CUTOVER_BENCH_SNAPSHOT_SCALE"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("CUTOVER_BENCH_SNAPSHOT_SCALE=%q: want a positive integer", s)
		}
		scale = n
	}
	ctx := context.Background()
	cl := pgtest.Start(b, pgtest.Options{
		TLS:       pgtest.TLSEnforced,
		Roles:     []pgtest.Role{{Name: "app", Password: dumpCanary}},
		Databases: map[string]string{"bench": "app"},
		Settings:  map[string]string{"shared_buffers": "256MB", "max_wal_size": "8GB", "maintenance_work_mem": "256MB"},
	})
	start := time.Now()
	buildBenchDatabase(b, cl, scale)
	ts := dumpTargets(b, dbTarget(cl, "old", "bench", "app"))
	conn, err := ts.Conn(ctx, "old")
	if err != nil {
		b.Fatal(err)
	}
	var dbBytes, dataBytes int64
	if err := conn.QueryRow(ctx, `SELECT pg_database_size(current_database()),
		(SELECT sum(pg_table_size(oid)) FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace)::bigint`).Scan(&dbBytes, &dataBytes); err != nil {
		b.Fatal(err)
	}
	if dbBytes < 500<<20 {
		b.Fatalf("the database is %s; the benchmark needs 500 MiB or more (raise CUTOVER_BENCH_SNAPSHOT_SCALE)", byteSize(dbBytes))
	}
	b.Logf("database: %s (%s of table data; pgbench scale %d), built in %s; %d CPUs",
		byteSize(dbBytes), byteSize(dataBytes), scale, time.Since(start).Round(time.Second), runtime.NumCPU())

	jobs := max(2, runtime.NumCPU())
	tmp := b.TempDir()
	env, err := mustTarget(b, ts).LibpqEnv(tmp)
	if err != nil {
		b.Fatal(err)
	}
	env = append(CleanEnv(), env...)
	out := filepath.Join(b.TempDir(), "out")
	pgDump := func(args ...string) func() (int64, error) {
		return func() (int64, error) {
			cmd := exec.Command("pg_dump", append([]string{"-w", "-f", out}, args...)...)
			cmd.Env = env
			if msg, err := cmd.CombinedOutput(); err != nil {
				return 0, fmt.Errorf("pg_dump %s: %v: %s", strings.Join(args, " "), err, msg)
			}
			return treeSize(out)
		}
	}
	var stepLog string
	type variant struct {
		name string
		run  func() (int64, error)
	}
	variants := []variant{
		{"step", func() (int64, error) {
			c, live := newCall(b, "snapshot", map[string]any{"target": "old", "dir": out, "jobs": jobs}, ts)
			t0 := time.Now()
			o, err := snapshot{}.Run(ctx, c)
			stepLog = fmt.Sprintf("%s  (Run returned after %s)", strings.TrimSpace(live.String()), time.Since(t0).Round(time.Millisecond))
			if err != nil {
				return 0, err
			}
			if o["verified"] != true {
				return 0, fmt.Errorf("not verified: %v", o)
			}
			return o["bytes"].(int64), nil
		}},
		{"step-none", func() (int64, error) {
			c, _ := newCall(b, "snapshot", map[string]any{"target": "old", "dir": out, "jobs": jobs, "compress": "none"}, ts)
			o, err := snapshot{}.Run(ctx, c)
			if err != nil {
				return 0, err
			}
			return o["bytes"].(int64), nil
		}},
		{"pg_dump-Fc", pgDump("-Fc")},
		{"pg_dump-Fc-Z0", pgDump("-Fc", "-Z0")},
		{fmt.Sprintf("pg_dump-Fd-j%d", jobs), pgDump("-Fd", "-j", strconv.Itoa(jobs))},
		// The step's own pg_dump command alone, to tell its overhead apart.
		{fmt.Sprintf("pg_dump-Fd-j%d-Z1", jobs), pgDump("-Fd", "-j", strconv.Itoa(jobs), "-Z", "1")},
	}
	// The invocations the goal compares with: plain pg_dump as people run it.
	raw := []string{"pg_dump-Fc", "pg_dump-Fc-Z0", fmt.Sprintf("pg_dump-Fd-j%d", jobs)}
	times := map[string][]float64{}
	sizes := map[string]int64{}
	round := 0
	for b.Loop() {
		for i := range variants {
			v := variants[(i+round)%len(variants)]
			if err := os.RemoveAll(out); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			size, err := v.run()
			if err != nil {
				b.Fatalf("%s: %v", v.name, err)
			}
			times[v.name] = append(times[v.name], time.Since(t0).Seconds())
			sizes[v.name] = size
		}
		round++
	}
	os.RemoveAll(out)

	median := func(xs []float64) float64 {
		s := slices.Clone(xs)
		slices.Sort(s)
		return s[len(s)/2]
	}
	step := median(times["step"])
	fastest, fastestName := 0.0, ""
	var report strings.Builder
	for _, v := range variants {
		m := median(times[v.name])
		b.ReportMetric(m, "s/"+v.name)
		b.ReportMetric(float64(dbBytes)/(1<<20)/m, "MB/s-"+v.name)
		fmt.Fprintf(&report, "  %-16s %6.2f s  %7.1f MB/s of database  %9s written  rounds %v\n",
			v.name, m, float64(dbBytes)/(1<<20)/m, byteSize(sizes[v.name]), roundTimes(times[v.name]))
		if slices.Contains(raw, v.name) && (fastestName == "" || m < fastest) {
			fastest, fastestName = m, v.name
		}
	}
	fc := median(times["pg_dump-Fc"])
	b.ReportMetric(fc/step, "x-faster-than-Fc")
	b.ReportMetric(step/fastest, "x-of-fastest-raw")
	// Printed, not logged: the testing package trims a benchmark's log to ten lines.
	fmt.Printf("BenchmarkSnapshot: the step's own account of its last run:\n%s\n", stepLog)
	none := median(times["step-none"])
	own := median(times[fmt.Sprintf("pg_dump-Fd-j%d-Z1", jobs)])
	b.ReportMetric(step/own, "x-of-own-pg_dump")
	fmt.Printf("BenchmarkSnapshot: medians over %d rounds (step: pg_dump -Fd -j%d with its default compression, then pg_restore --list, chmod and SHA256SUMS; step-none: compress: none):\n%s"+
		"  step vs pg_dump -Fc: %.2fx faster (goal ≥ 1.5x)\n"+
		"  step vs fastest plain invocation (%s): %.2fx its time (goal ≤ 1.10x); step-none: %.2fx\n"+
		"  step vs its own pg_dump command alone: %.2fx (the verification and checksums)\n",
		round, jobs, report.String(), fc/step, fastestName, step/fastest, none/fastest, step/own)
}

func roundTimes(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', 2, 64)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func mustTarget(tb testing.TB, ts *Targets) *Target {
	tb.Helper()
	t, err := ts.Get("old")
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// buildBenchDatabase fills database bench of cl as app: pgbench's tables at
// the given scale, documents of repetitive text, JSON events with an index,
// and blobs of random (incompressible) bytes.
func buildBenchDatabase(tb testing.TB, cl *pgtest.Cluster, scale int) {
	tb.Helper()
	pgbench := filepath.Join(cl.BinDir, "pgbench")
	cmd := exec.Command(pgbench, "-i", "-q", "-s", strconv.Itoa(scale), "-h", cl.SocketDir, "-p", strconv.Itoa(cl.Port), "-U", "app", "bench")
	cmd.Env = CleanEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	rows := func(per int) int { return per * scale }
	sql := fmt.Sprintf(`SET ROLE app;
CREATE TABLE docs (id bigserial PRIMARY KEY, title text, body text, created timestamptz DEFAULT now());
INSERT INTO docs (title, body)
  SELECT md5(random()::text), repeat(md5(random()::text) || ' ' || md5(random()::text), 1 + (random() * 8)::int)
  FROM generate_series(1, %d);
CREATE TABLE events (id bigserial PRIMARY KEY, kind int, payload jsonb, at timestamptz);
INSERT INTO events (kind, payload, at)
  SELECT (random() * 10)::int,
         jsonb_build_object('user', md5(random()::text), 'amount', random() * 1000, 'tags', ARRAY[md5(random()::text), md5(random()::text)]),
         now() - random() * interval '300 days'
  FROM generate_series(1, %d);
CREATE INDEX events_at ON events (at);
CREATE TABLE blobs (id bigserial PRIMARY KEY, data bytea);
ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL;
INSERT INTO blobs (data)
  SELECT (SELECT decode(string_agg(md5(random()::text || g || i), ''), 'hex') FROM generate_series(1, 8 + i %% 24) g)
  FROM generate_series(1, %d) i;
RESET ROLE;`, rows(20000), rows(35000), rows(10000))
	if err := cl.Exec(context.Background(), "bench", sql); err != nil {
		tb.Fatal(err)
	}
	if err := cl.Exec(context.Background(), "bench", "VACUUM ANALYZE"); err != nil {
		tb.Fatal(err)
	}
}

// treeSize is the size of a file, or of the files of a directory.
func treeSize(path string) (int64, error) {
	var n int64
	err := filepath.Walk(path, func(_ string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n, err
}
