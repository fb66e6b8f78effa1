package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// stepRecord is a typical journal record.
type stepRecord struct {
	Type       string         `json:"type"`
	Time       string         `json:"time"`
	Step       string         `json:"step,omitempty"`
	StepType   string         `json:"step_type,omitempty"`
	Phase      string         `json:"phase,omitempty"`
	Mutates    bool           `json:"mutates,omitempty"`
	Attempt    int            `json:"attempt,omitempty"`
	Status     string         `json:"status,omitempty"`
	Inputs     map[string]any `json:"inputs,omitempty"`
	Outputs    map[string]any `json:"outputs,omitempty"`
	Error      string         `json:"error,omitempty"`
	DurationMS float64        `json:"duration_ms,omitempty"`
}

func sampleRecord(i int) stepRecord {
	return stepRecord{
		Type:     "step.end",
		Time:     "2026-11-24T01:54:00.123456Z",
		Step:     fmt.Sprintf("copy_orders_%d", i),
		StepType: "sql",
		Phase:    "main",
		Mutates:  true,
		Attempt:  1,
		Status:   "succeeded",
		Inputs: map[string]any{
			"sql": "UPDATE orders SET region = $1 WHERE id BETWEEN $2 AND $3",
		},
		Outputs:    map[string]any{"rows": 125000, "lag_bytes": 0},
		DurationMS: 1234.5,
	}
}

// writeJournal creates a journal with n sample records and returns its path.
func writeJournal(t *testing.T, n int) string {
	t.Helper()
	w, err := Create(t.TempDir(), "run", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := w.Append(sampleRecord(i+1), i%2 == 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.Path()
}

// fileLines returns the lines of a file, each with its newline.
func fileLines(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(data, []byte("\n"))
}

func writeFile(t *testing.T, path string, lines [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustVerify(t *testing.T, path string) Report {
	t.Helper()
	rep, err := Verify(path)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	w, err := Create(dir, "20261124T015400123Z-abcdef", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "20261124T015400123Z-abcdef.jsonl"); w.Path() != want {
		t.Errorf("Path = %q, want %q", w.Path(), want)
	}
	recs := []any{
		map[string]any{"type": "run.start", "run_id": "x"},
		sampleRecord(1),
		struct{}{},
		json.RawMessage(`{"type": "run.end", "exit_code": 0}`),
	}
	for _, r := range recs {
		if err := w.Append(r, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := w.Append(sampleRecord(2), false); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}

	for path, want := range map[string]os.FileMode{dir: 0o700, w.Path(): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode = %v, want %v", path, got, want)
		}
	}

	got, torn, err := Read(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	if torn != nil {
		t.Errorf("torn = %+v, want nil", torn)
	}
	if len(got) != len(recs) {
		t.Fatalf("read %d records, want %d", len(got), len(recs))
	}
	wantTypes := []string{"run.start", "step.end", "", "run.end"}
	prev := ""
	for i, r := range got {
		if r.Line != i+1 || r.Seq != i+1 {
			t.Errorf("record %d: Line %d, Seq %d", i, r.Line, r.Seq)
		}
		if r.Prev != prev {
			t.Errorf("record %d: Prev %q, want %q", i, r.Prev, prev)
		}
		prev = hashLine(r.Raw)
		if r.Type != wantTypes[i] {
			t.Errorf("record %d: Type %q, want %q", i, r.Type, wantTypes[i])
		}
		wantPrefix := fmt.Sprintf(`{"seq":%d,"prev":"%s"`, r.Seq, r.Prev)
		if !bytes.HasPrefix(r.Raw, []byte(wantPrefix)) {
			t.Errorf("record %d: line %s does not start with %s", i, r.Raw, wantPrefix)
		}
	}
	var step stepRecord
	if err := json.Unmarshal(got[1].Raw, &step); err != nil {
		t.Fatal(err)
	}
	if want := sampleRecord(1); step.Step != want.Step || step.Inputs["sql"] != want.Inputs["sql"] {
		t.Errorf("decoded step record = %+v", step)
	}
	if string(got[3].Fields["exit_code"]) != "0" {
		t.Errorf("Fields[exit_code] = %s", got[3].Fields["exit_code"])
	}
	if string(got[2].Raw) != `{"seq":3,"prev":"`+got[2].Prev+`"}` {
		t.Errorf("empty record line = %s", got[2].Raw)
	}

	rep := mustVerify(t, w.Path())
	if !rep.OK || rep.Records != len(recs) || rep.Torn != nil || len(rep.Problems) != 0 {
		t.Errorf("Verify = %+v", rep)
	}
}

func TestAppendRejects(t *testing.T) {
	w, err := Create(t.TempDir(), "run", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	tests := []struct {
		name string
		rec  any
	}{
		{"number", 42},
		{"array", []int{1}},
		{"string", "x"},
		{"null", nil},
		{"seq key", map[string]any{"seq": 1}},
		{"prev key", map[string]any{"type": "x", "prev": "y"}},
		{"unmarshalable", map[string]any{"f": func() {}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := w.Append(tt.rec, false); err == nil {
				t.Error("Append succeeded")
			}
		})
	}
	// Nested seq and prev keys, and the words as values, are fine.
	if err := w.Append(map[string]any{"type": "seq", "x": map[string]any{"seq": 1, "prev": "prev"}}, false); err != nil {
		t.Errorf("Append = %v", err)
	}
	if rep := mustVerify(t, w.Path()); !rep.OK || rep.Records != 1 {
		t.Errorf("Verify = %+v", rep)
	}
}

func TestCreateErrors(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, "run", nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, err := Create(dir, "run", nil); err == nil {
		t.Error("Create of an existing journal succeeded")
	}
	for _, id := range []string{"", ".hidden", "a/b", `a\b`, "..", "a\x00b"} {
		if _, err := Create(dir, id, nil); err == nil {
			t.Errorf("Create(%q) succeeded", id)
		}
	}
}

func TestEditDetected(t *testing.T) {
	path := writeJournal(t, 5)
	orig := fileLines(t, path)
	const edited = 3 // a middle line, 1-based
	line := orig[edited-1]
	for pos := range len(line) - 1 { // every byte but the newline
		lines := slices.Clone(orig)
		changed := slices.Clone(line)
		if changed[pos] == 'x' {
			changed[pos] = 'y'
		} else {
			changed[pos] = 'x'
		}
		lines[edited-1] = changed
		writeFile(t, path, lines)
		rep := mustVerify(t, path)
		if rep.OK {
			t.Fatalf("byte %d edited: Verify OK", pos)
		}
		if !slices.ContainsFunc(rep.Problems, func(p string) bool {
			return strings.Contains(p, fmt.Sprintf("line %d", edited))
		}) {
			t.Fatalf("byte %d edited: no problem names line %d: %q", pos, edited, rep.Problems)
		}
	}
}

func TestRemovalDetected(t *testing.T) {
	tests := []struct {
		name   string
		remove int // 0-based line index
		want   []string
	}{
		{
			name:   "first",
			remove: 0,
			want: []string{
				"line 1: seq is 2, want 1",
				"line 1: prev is not empty",
			},
		},
		{
			name:   "middle",
			remove: 2,
			want: []string{
				"line 3: seq is 4, want 3",
				"line 3: prev does not match line 2 (record edited or removed?)",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeJournal(t, 5)
			lines := fileLines(t, path)
			writeFile(t, path, slices.Delete(lines, tt.remove, tt.remove+1))
			rep := mustVerify(t, path)
			if rep.OK || rep.Records != 4 {
				t.Errorf("Verify = %+v", rep)
			}
			if len(rep.Problems) != len(tt.want) {
				t.Fatalf("problems = %q, want %d", rep.Problems, len(tt.want))
			}
			for i, want := range tt.want {
				if !strings.HasPrefix(rep.Problems[i], want) {
					t.Errorf("problem %d = %q, want prefix %q", i, rep.Problems[i], want)
				}
			}
		})
	}
}

func TestReorderAndDuplicateDetected(t *testing.T) {
	path := writeJournal(t, 4)
	lines := fileLines(t, path)
	lines[1], lines[2] = lines[2], lines[1]
	writeFile(t, path, lines)
	if rep := mustVerify(t, path); rep.OK {
		t.Errorf("reordered: Verify = %+v", rep)
	}
	lines = fileLines(t, writeJournal(t, 4))
	lines = slices.Insert(lines, 2, lines[1])
	writeFile(t, path, lines)
	if rep := mustVerify(t, path); rep.OK {
		t.Errorf("duplicated: Verify = %+v", rep)
	}
}

func TestTorn(t *testing.T) {
	path := writeJournal(t, 4)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := fileLines(t, path)
	lastStart := len(orig) - len(lines[3])
	tests := []struct {
		name      string
		data      []byte
		wantBytes int
	}{
		{"one byte of the last line", orig[:lastStart+1], 1},
		{"half the last line", orig[:lastStart+len(lines[3])/2], len(lines[3]) / 2},
		{"all but the newline", orig[:len(orig)-1], len(lines[3]) - 1},
		{"zero filled", append(slices.Clone(orig[:lastStart]), make([]byte, 100)...), 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			recs, torn, err := Read(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 3 {
				t.Errorf("read %d records, want 3", len(recs))
			}
			want := Torn{Line: 4, Bytes: tt.wantBytes}
			if torn == nil || *torn != want {
				t.Errorf("torn = %+v, want %+v", torn, want)
			}
			rep := mustVerify(t, path)
			if !rep.OK || rep.Records != 3 || rep.Torn == nil || *rep.Torn != want {
				t.Errorf("Verify = %+v", rep)
			}
		})
	}
}

func TestCorruptMiddleLine(t *testing.T) {
	path := writeJournal(t, 4)
	lines := fileLines(t, path)
	tests := []struct {
		name string
		line []byte
		want string
	}{
		{"truncated", lines[1][:20], "line 2: invalid JSON"},
		{"empty", []byte{}, "line 2: invalid JSON"},
		{"not an object", []byte("[1,2]"), "line 2: not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := slices.Clone(lines)
			bad[1] = append(slices.Clone(tt.line), '\n')
			writeFile(t, path, bad)
			_, _, err := Read(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Read error = %v, want it to contain %q", err, tt.want)
			}
			rep := mustVerify(t, path)
			if rep.OK || len(rep.Problems) == 0 || !strings.HasPrefix(rep.Problems[0], tt.want) {
				t.Errorf("Verify = %+v", rep)
			}
		})
	}
}

func TestEmptyJournal(t *testing.T) {
	path := writeJournal(t, 0)
	recs, torn, err := Read(path)
	if err != nil || torn != nil || len(recs) != 0 {
		t.Errorf("Read = %v, %v, %v", recs, torn, err)
	}
	if rep := mustVerify(t, path); !rep.OK || rep.Records != 0 {
		t.Errorf("Verify = %+v", rep)
	}
	if _, err := Verify(filepath.Join(t.TempDir(), "missing.jsonl")); err == nil {
		t.Error("Verify of a missing file succeeded")
	}
}

const canary = "CANARY-s3cr3t-7f1e"

func TestMask(t *testing.T) {
	tests := []struct {
		name     string
		mask     func([]byte) []byte
		wantText string // must appear in the decoded record's "dsn"
	}{
		{
			name:     "plain",
			mask:     func(b []byte) []byte { return bytes.ReplaceAll(b, []byte(canary), []byte("[secret:pw]")) },
			wantText: "postgres://app:[secret:pw]@db/app",
		},
		{
			// Masking the whole line leaves an unescaped quote.
			name:     "breaks JSON",
			mask:     func(b []byte) []byte { return bytes.ReplaceAll(b, []byte(canary), []byte(`[mask "pw"]`)) },
			wantText: `postgres://app:[mask "pw"]@db/app`,
		},
		{
			// Masking the whole line splits it in two.
			name:     "adds a newline",
			mask:     func(b []byte) []byte { return bytes.ReplaceAll(b, []byte(canary), []byte("\n")) },
			wantText: "postgres://app:\n@db/app",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := Create(t.TempDir(), "run", tt.mask)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Append(map[string]any{"type": "run.start"}, false); err != nil {
				t.Fatal(err)
			}
			rec := map[string]any{
				"type":   "step.end",
				"dsn":    "postgres://app:" + canary + "@db/app",
				"big":    json.Number("123456789012345678901234567890"),
				"nested": map[string]any{canary: []any{"x" + canary, 1.5, true, nil}},
			}
			if err := w.Append(rec, true); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(w.Path())
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(data, []byte(canary)) {
				t.Fatalf("canary in journal:\n%s", data)
			}
			recs, torn, err := Read(w.Path())
			if err != nil || torn != nil || len(recs) != 2 {
				t.Fatalf("Read = %d records, %v, %v\n%s", len(recs), torn, err, data)
			}
			r := recs[1]
			if r.Seq != 2 || r.Type != "step.end" {
				t.Errorf("Seq %d, Type %q", r.Seq, r.Type)
			}
			if !bytes.HasPrefix(r.Raw, []byte(`{"seq":2,"prev":"`)) {
				t.Errorf("line does not start with seq and prev: %s", r.Raw)
			}
			var dsn string
			if err := json.Unmarshal(r.Fields["dsn"], &dsn); err != nil || dsn != tt.wantText {
				t.Errorf("dsn = %q, %v; want %q", dsn, err, tt.wantText)
			}
			if got := string(r.Fields["big"]); got != "123456789012345678901234567890" {
				t.Errorf("big = %s, want the number unchanged", got)
			}
			if rep := mustVerify(t, w.Path()); !rep.OK {
				t.Errorf("Verify = %+v", rep)
			}
		})
	}
}

func TestNewRunID(t *testing.T) {
	re := regexp.MustCompile(`^\d{8}T\d{9}Z-[0-9a-f]{6}$`)
	base := time.Date(2026, 11, 24, 1, 54, 0, 123_456_789, time.UTC)
	if id := NewRunID(base); !strings.HasPrefix(id, "20261124T015400123Z-") || !re.MatchString(id) {
		t.Errorf("NewRunID = %q", id)
	}
	east := time.FixedZone("east", 5*3600)
	if id := NewRunID(base.In(east)); !strings.HasPrefix(id, "20261124T015400123Z-") {
		t.Errorf("NewRunID in another zone = %q, want UTC", id)
	}
	times := []time.Time{
		time.Date(2025, 12, 31, 23, 59, 59, 999_000_000, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 1_000_000, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC),
		time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC),
	}
	var ids []string
	for _, tm := range times {
		id := NewRunID(tm)
		if !re.MatchString(id) {
			t.Errorf("NewRunID(%v) = %q", tm, id)
		}
		ids = append(ids, id)
	}
	if !slices.IsSorted(ids) {
		t.Errorf("ids do not sort by time: %q", ids)
	}
	if a, b := NewRunID(base), NewRunID(base); a == b {
		t.Errorf("two ids for the same time are equal: %q", a)
	}
}

func TestDefaultDir(t *testing.T) {
	tests := []struct {
		name, journal, xdg, home, want string
	}{
		{"explicit", "/j", "/x", "/h", "/j"},
		{"xdg", "", "/x", "/h", "/x/cutover/journal"},
		{"relative xdg ignored", "", "x", "/h", "/h/.local/state/cutover/journal"},
		{"home", "", "", "/h", "/h/.local/state/cutover/journal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CUTOVER_JOURNAL_DIR", tt.journal)
			t.Setenv("XDG_STATE_HOME", tt.xdg)
			t.Setenv("HOME", tt.home)
			if got := DefaultDir(); got != filepath.FromSlash(tt.want) {
				t.Errorf("DefaultDir = %q, want %q", got, tt.want)
			}
		})
	}
}

// makeRuns creates empty journal files for ids in a new directory.
func makeRuns(t *testing.T, ids ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, id := range ids {
		w, err := Create(dir, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	return dir
}

func TestList(t *testing.T) {
	dir := makeRuns(t, "20261124T015400123Z-bbbbbb", "20261124T015400123Z-aaaaaa", "20251124T000000000Z-cccccc")
	for _, name := range []string{"notes.txt", ".hidden.jsonl"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.jsonl"), 0o700); err != nil {
		t.Fatal(err)
	}
	got, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"20251124T000000000Z-cccccc", "20261124T015400123Z-aaaaaa", "20261124T015400123Z-bbbbbb"}
	if !slices.Equal(got, want) {
		t.Errorf("List = %q, want %q", got, want)
	}
	if got, err := List(filepath.Join(dir, "missing")); err != nil || len(got) != 0 {
		t.Errorf("List of a missing dir = %q, %v", got, err)
	}
}

func TestResolve(t *testing.T) {
	dir := makeRuns(t, "20261124T015400123Z-aaaaaa", "20261124T015400123Z-bbbbbb", "20261125T000000000Z-cccccc")
	outside := filepath.Join(t.TempDir(), "copy.jsonl")
	if err := os.WriteFile(outside, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		arg     string
		want    string // path, relative to dir unless absolute
		wantErr string
	}{
		{arg: "20261124T015400123Z-aaaaaa", want: "20261124T015400123Z-aaaaaa.jsonl"},
		{arg: "20261124T015400123Z-aaaaaa.jsonl", want: "20261124T015400123Z-aaaaaa.jsonl"},
		{arg: "20261124T015400123Z-b", want: "20261124T015400123Z-bbbbbb.jsonl"},
		{arg: "20261125", want: "20261125T000000000Z-cccccc.jsonl"},
		{arg: outside, want: outside},
		{arg: "20261124", wantErr: "run id prefix 20261124 is ambiguous: 20261124T015400123Z-aaaaaa, 20261124T015400123Z-bbbbbb"},
		{arg: "2027", wantErr: "no run 2027 in " + dir},
		{arg: "", wantErr: "no run id given"},
		{arg: filepath.Join(dir, "nope.jsonl"), wantErr: "no journal file"},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			got, err := Resolve(dir, tt.arg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Resolve error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			if !filepath.IsAbs(want) {
				want = filepath.Join(dir, want)
			}
			if got != want {
				t.Errorf("Resolve = %q, want %q", got, want)
			}
		})
	}
}

func TestConcurrentAppend(t *testing.T) {
	w, err := Create(t.TempDir(), "run", func(b []byte) []byte {
		return bytes.ReplaceAll(b, []byte(canary), []byte("[secret:pw]"))
	})
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, each = 8, 50
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				rec := map[string]any{"type": "step.end", "g": g, "i": i, "secret": canary}
				if err := w.Append(rec, i%10 == 0); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, w.Path())
	if !rep.OK || rep.Records != goroutines*each || rep.Torn != nil {
		t.Fatalf("Verify = %+v", rep)
	}
	recs, _, err := Read(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[string]bool)
	for _, r := range recs {
		key := string(r.Fields["g"]) + "/" + string(r.Fields["i"])
		if seen[key] {
			t.Errorf("record %s written twice", key)
		}
		seen[key] = true
	}
}

// benchmarkAppend appends a sample step record of about 300 bytes.
func benchmarkAppend(b *testing.B, sync bool) {
	w, err := Create(b.TempDir(), "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	rec := sampleRecord(1)
	body, err := json.Marshal(rec)
	if err != nil {
		b.Fatal(err)
	}
	// The line adds {"seq":N,"prev":"<64 hex digits>", and a newline.
	b.SetBytes(int64(len(body) + len(`"seq":100000,"prev":"",`) + 64 + 1))
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Append(rec, sync); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppend(b *testing.B)      { benchmarkAppend(b, false) }
func BenchmarkAppendFsync(b *testing.B) { benchmarkAppend(b, true) }

// A complete last line (with its newline) that is not JSON cannot come from
// a crash mid-write: records are written whole. It is corruption.
func TestCorruptLastLineIsNotTorn(t *testing.T) {
	path := writeJournal(t, 4)
	lines := fileLines(t, path)
	bad := slices.Clone(lines)
	bad[3] = []byte("{\"seq\":4,\x00\x00\n")
	writeFile(t, path, bad)
	if _, _, err := Read(path); err == nil || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("Read error = %v, want one naming line 4", err)
	}
}
