package engine_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/pgcutover/cutover/engine"
	"github.com/pgcutover/cutover/schema"
	"github.com/pgcutover/cutover/steps"
)

// FuzzPlanDecode feeds arbitrary bytes through the decoder and, when they
// decode cleanly, through the compiler. Neither may panic, and every problem
// must be reported at a real position with a message.
func FuzzPlanDecode(f *testing.F) {
	for _, pattern := range []string{"../plans/*.yaml", "../plans/testdata/invalid/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		plan, ds := schema.Decode("fuzz.yaml", data, steps.Types)
		checkFuzzDiags(t, "decode", ds)
		if plan == nil {
			if len(ds) == 0 {
				t.Fatal("decode returned neither a plan nor diagnostics")
			}
			return
		}
		// A partial plan is compiled too (engine.Load reports both).
		_, ds = engine.Compile(plan)
		checkFuzzDiags(t, "compile", ds)
	})
}

func checkFuzzDiags(t *testing.T, stage string, ds schema.Diagnostics) {
	t.Helper()
	for _, d := range ds {
		if d.Line < 1 || d.Col < 1 {
			t.Errorf("%s: diagnostic at line %d col %d, want both >= 1: %s", stage, d.Line, d.Col, d)
		}
		if d.Msg == "" {
			t.Errorf("%s: diagnostic with an empty message at %d:%d", stage, d.Line, d.Col)
		}
		if d.File != "fuzz.yaml" {
			t.Errorf("%s: diagnostic names file %q, want fuzz.yaml: %s", stage, d.File, d)
		}
	}
}
