package plans_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pgcutover/cutover/engine"
	"github.com/pgcutover/cutover/schema"
)

var update = flag.Bool("update", false, "rewrite testdata/invalid/*.err from the current output")

// knownBugs are invalid plans whose golden file holds the output the
// validator should give but does not yet; -update leaves them alone.
var knownBugs = map[string]string{}

// repoPath is how diagnostics name a plan: relative to the repository root,
// whatever directory the tests run in.
func repoPath(file string) string {
	return "plans/" + filepath.ToSlash(file)
}

func load(t *testing.T, file string) schema.Diagnostics {
	t.Helper()
	_, ds := engine.Load(file)
	for i := range ds {
		if ds[i].File != file {
			t.Errorf("diagnostic names file %q, want %q: %s", ds[i].File, file, ds[i])
		}
		ds[i].File = repoPath(ds[i].File)
	}
	return ds
}

func glob(t *testing.T, pattern string, atLeast int) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < atLeast {
		t.Fatalf("%s matches %d files, want at least %d", pattern, len(files), atLeast)
	}
	sort.Strings(files)
	return files
}

// TestValidPlans loads every plan shipped in plans/: each must validate.
func TestValidPlans(t *testing.T) {
	for _, file := range glob(t, "*.yaml", 1) {
		t.Run(file, func(t *testing.T) {
			if ds := load(t, file); len(ds) > 0 {
				t.Errorf("%s does not validate:\n%s", repoPath(file), ds.Format())
			}
		})
	}
}

// TestInvalidPlans checks what `cutover validate` prints for each plan in
// testdata/invalid against the golden NN-name.err next to it.
func TestInvalidPlans(t *testing.T) {
	for _, file := range glob(t, "testdata/invalid/*.yaml", 30) {
		name := filepath.Base(file)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			golden := strings.TrimSuffix(file, ".yaml") + ".err"
			reason, buggy := knownBugs[name]
			got := load(t, file).Format()
			if *update && got != "" {
				if buggy {
					t.Logf("not rewriting %s (%s)", golden, reason)
				} else if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./plans -update to create it)", err)
			}
			if got != string(want) {
				if buggy {
					t.Skip(reason)
				}
				if got == "" {
					t.Fatalf("%s validates; it should not", repoPath(file))
				}
				t.Errorf("%s: output differs from %s\n--- got\n%s--- want\n%s", repoPath(file), golden, got, want)
			}
		})
	}
}

// TestGoldensHavePlans catches a golden file left behind by a renamed plan.
func TestGoldensHavePlans(t *testing.T) {
	for _, golden := range glob(t, "testdata/invalid/*.err", 30) {
		plan := strings.TrimSuffix(golden, ".err") + ".yaml"
		if _, err := os.Stat(plan); err != nil {
			t.Errorf("%s has no plan: %v", golden, err)
		}
	}
}

// TestInvalidPlanPositions checks every diagnostic of every invalid plan: a
// real position inside the file, a message, and sorted order.
func TestInvalidPlanPositions(t *testing.T) {
	for _, file := range glob(t, "testdata/invalid/*.yaml", 30) {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(src), "\n")
			ds := load(t, file)
			for i, d := range ds {
				if d.Line < 1 || d.Col < 1 {
					t.Errorf("%s: position %d:%d, want line and column >= 1", d, d.Line, d.Col)
				}
				if strings.TrimSpace(d.Msg) == "" {
					t.Errorf("%s:%d:%d: empty message", d.File, d.Line, d.Col)
				}
				if d.Line > len(lines) {
					t.Errorf("%s: line %d is past the end of the file (%d lines)", d, d.Line, len(lines))
				} else if n := len([]rune(lines[d.Line-1])) + 1; d.Col > n {
					t.Errorf("%s: column %d is past the end of the line (%d runes)", d, d.Col, n-1)
				}
				if i > 0 {
					p := ds[i-1]
					if p.Line > d.Line || (p.Line == d.Line && p.Col > d.Col) {
						t.Errorf("diagnostics out of order: %s before %s", p, d)
					}
				}
			}
		})
	}
}

// TestInvalidPlanSnippets checks that every diagnostic shows its source line
// with a caret under its column.
func TestInvalidPlanSnippets(t *testing.T) {
	for _, file := range glob(t, "testdata/invalid/*.yaml", 30) {
		name := filepath.Base(file)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			var problems []string
			for _, d := range load(t, file) {
				prefix := fmt.Sprintf(" %d | ", d.Line)
				lines := strings.Split(d.Snippet, "\n")
				if !strings.HasPrefix(d.Snippet, prefix) || len(lines) != 3 || lines[2] != "" {
					problems = append(problems, fmt.Sprintf("%s: snippet %q does not show line %d", d, d.Snippet, d.Line))
					continue
				}
				caret := strings.TrimPrefix(lines[1], strings.Repeat(" ", len(prefix)-2)+"| ")
				if n := len([]rune(caret)); n != d.Col || !strings.HasSuffix(caret, "^") {
					problems = append(problems, fmt.Sprintf("%s: caret line %q is not under column %d", d, lines[1], d.Col))
				}
			}
			if len(problems) == 0 {
				return
			}
			if reason, ok := knownBugs[name]; ok {
				t.Skip(reason)
			}
			t.Error(strings.Join(problems, "\n"))
		})
	}
}
