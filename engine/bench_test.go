package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/pgcutover/cutover/schema"
	"github.com/pgcutover/cutover/steps"
	"github.com/pgcutover/cutover/steps/redact"
)

// bigPlan writes a plan of n run-command steps, each with a guard over the
// previous step's outputs, an assert and a template.
func bigPlan(n int) []byte {
	var b strings.Builder
	b.WriteString("apiVersion: cutover/v1\nkind: Plan\nname: big\nversion: 1\nparams:\n  environment: {type: string, enum: [staging, production], default: staging}\nsteps:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - id: s%d\n    type: run-command\n", i)
		if i > 0 {
			fmt.Fprintf(&b, "    when: \"steps.s%d.outputs.exit_code == 0 && params.environment != 'production'\"\n", i-1)
		}
		fmt.Fprintf(&b, "    with: {argv: [echo, \"step ${{ params.environment }} %d\"], read_only: true}\n", i)
		b.WriteString("    assert: [\"outputs.exit_code == 0\"]\n")
		b.WriteString("    rollback: [{type: run-command, with: {argv: [echo, undo]}}]\n")
	}
	return []byte(b.String())
}

// mustCompile decodes and compiles a plan, failing the benchmark on any
// diagnostic.
func mustCompile(b *testing.B, src string) *Program {
	b.Helper()
	p, ds := schema.Decode("bench.yaml", []byte(src), steps.Types)
	if len(ds) > 0 {
		b.Fatal(ds)
	}
	prog, ds := Compile(p)
	if len(ds) > 0 {
		b.Fatal(ds)
	}
	return prog
}

// BenchmarkValidate1000Steps measures decode + compile + type-check of a
// 1,000-step plan (3,000 expressions), as `cutover validate` does.
func BenchmarkValidate1000Steps(b *testing.B) {
	src := bigPlan(1000)
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		p, ds := schema.Decode("big.yaml", src, steps.Types)
		if len(ds) > 0 {
			b.Fatal(ds)
		}
		if _, ds := Compile(p); len(ds) > 0 {
			b.Fatal(ds)
		}
	}
}

func guardRunner(b *testing.B, dry bool) (*runner, *Expr) {
	b.Helper()
	prog := mustCompile(b, string(bigPlan(3)))
	r := &runner{prog: prog, opts: Options{DryRun: dry}, mask: redact.New(), vars: map[string]any{}, status: map[string]string{}}
	r.act = &activation{vars: r.vars}
	r.vars["params.environment"] = "staging"
	if !dry {
		r.vars["steps.s1.outputs.exit_code"] = int64(0)
	}
	return r, prog.Steps[2].When
}

// BenchmarkGuardEval measures one `when` evaluation:
// steps.s1.outputs.exit_code == 0 && params.environment != 'production'.
func BenchmarkGuardEval(b *testing.B) {
	r, when := guardRunner(b, false)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if c := r.evalBool(ctx, when, r.act, false); c.Result != "true" {
			b.Fatal(c)
		}
	}
}

// BenchmarkGuardEvalDryRun measures the same guard with the step output
// unknown: CEL partial evaluation, result "decided at run time".
func BenchmarkGuardEvalDryRun(b *testing.B) {
	r, when := guardRunner(b, true)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if c := r.evalBool(ctx, when, r.act, false); c.Result != "unknown" {
			b.Fatal(c)
		}
	}
}

// BenchmarkRun100AssertSteps measures a whole run of 100 trivial steps
// (assert steps with a guard and a template-free check): the engine's
// per-step overhead, journal included (no fsync: nothing mutates).
func BenchmarkRun100AssertSteps(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("apiVersion: cutover/v1\nkind: Plan\nname: trivial\nversion: 1\nparams:\n  n: {type: int, default: 1}\nsteps:\n")
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&sb, "  - id: a%d\n    type: assert\n    when: \"params.n > 0\"\n    assert: [\"params.n == 1\"]\n", i)
	}
	prog := mustCompile(b, sb.String())
	dir := b.TempDir()
	params := map[string]any{"n": int64(1)}
	b.ReportAllocs()
	for b.Loop() {
		res := Run(context.Background(), prog, Options{Params: params, JournalDir: dir})
		if res.ExitCode != 0 {
			b.Fatal(res.Err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/step")
}

// BenchmarkRun100Commands runs 100 `true` run-command steps in process:
// fork/exec, the intent record fsync and the engine together.
func BenchmarkRun100Commands(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("apiVersion: cutover/v1\nkind: Plan\nname: trivial\nversion: 1\nsteps:\n")
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&sb, "  - id: s%d\n    type: run-command\n    with: {argv: [\"true\"]}\n", i)
	}
	prog := mustCompile(b, sb.String())
	dir := b.TempDir()
	b.ReportAllocs()
	for b.Loop() {
		if res := Run(context.Background(), prog, Options{JournalDir: dir}); res.ExitCode != 0 {
			b.Fatal(res.Err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/step")
}
