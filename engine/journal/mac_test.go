package journal

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// writeKeyed creates a journal with n sample records MACed under key.
func writeKeyed(t *testing.T, n int, key []byte) string {
	t.Helper()
	w, err := Create(t.TempDir(), "run", nil)
	if err != nil {
		t.Fatal(err)
	}
	w.SetKey(key)
	for i := range n {
		if err := w.Append(sampleRecord(i+1), false); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.Path()
}

func TestMACVerifies(t *testing.T) {
	key := []byte("k3y-for-the-journal")
	path := writeKeyed(t, 5, key)
	rep, err := VerifyKey(path, key)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.MACs != 5 || !rep.MACChecked {
		t.Fatalf("report = %+v, want ok with 5 MACs checked", rep)
	}
	for i, l := range fileLines(t, path) {
		if len(l) == 0 {
			continue
		}
		if !bytes.Contains(l, []byte(`,"mac":"`)) || !bytes.HasSuffix(l, []byte("\"}\n")) {
			t.Errorf("line %d does not end with a mac: %s", i+1, l)
		}
	}
	// Without the key the chain still checks and the MACs are counted.
	if rep := mustVerify(t, path); !rep.OK || rep.MACs != 5 || rep.MACChecked {
		t.Fatalf("keyless report = %+v", rep)
	}
	if bytes.Contains(mustRead(t, path), key) {
		t.Fatal("the key itself is in the journal")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The chain cannot show an edit of the last line; the MAC can.
func TestMACDetectsLastLineEdit(t *testing.T) {
	key := []byte("k3y")
	path := writeKeyed(t, 3, key)
	lines := fileLines(t, path)
	lines[2] = bytes.Replace(lines[2], []byte(`"succeeded"`), []byte(`"failed"`), 1)
	writeFile(t, path, lines)
	if rep := mustVerify(t, path); !rep.OK {
		t.Fatalf("keyless verify should not see a last-line edit: %+v", rep)
	}
	rep, err := VerifyKey(path, key)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "line 3: mac does not match") {
		t.Fatalf("problems = %q, want line 3's mac", rep.Problems)
	}
}

func TestMACProblems(t *testing.T) {
	key := []byte("k3y")
	path := writeKeyed(t, 2, key)
	if rep, _ := VerifyKey(path, []byte("other")); rep.OK || len(rep.Problems) != 2 {
		t.Errorf("wrong key: %+v", rep)
	}
	plain := writeJournal(t, 2)
	rep, _ := VerifyKey(plain, key)
	if rep.OK || len(rep.Problems) != 2 || !strings.Contains(rep.Problems[0], "no mac") {
		t.Errorf("unkeyed journal verified with a key: %+v", rep)
	}
	if err := (&Writer{}).Append(map[string]any{"type": "x", "mac": "forged"}, false); err == nil || !strings.Contains(err.Error(), `"mac"`) {
		t.Errorf("a record with its own mac field: err = %v", err)
	}
}

func TestOpenContinuesAfterTornLine(t *testing.T) {
	key := []byte("k3y")
	path := writeKeyed(t, 3, key)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":4,"prev":"abc","type":"step.en`)
	f.Close()

	w, torn, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if torn == nil || torn.Line != 4 {
		t.Fatalf("torn = %+v, want line 4", torn)
	}
	w.SetKey(key)
	if err := w.Append(sampleRecord(4), true); err != nil {
		t.Fatal(err)
	}
	w.Close()
	rep, err := VerifyKey(path, key)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Records != 4 || rep.Torn != nil {
		t.Fatalf("after reopening: %+v", rep)
	}
	if bytes.Contains(mustRead(t, path), []byte("step.en`")) {
		t.Fatal("torn bytes left in the file")
	}
	// A journal without a torn line reopens as it is.
	w, torn, err = Open(path, nil)
	if err != nil || torn != nil {
		t.Fatalf("Open = %v, torn %+v", err, torn)
	}
	w.Append(sampleRecord(5), false)
	w.Close()
	if rep := mustVerify(t, path); !rep.OK || rep.Records != 5 {
		t.Fatalf("second reopen: %+v", rep)
	}
}

// BenchmarkAppendMAC is BenchmarkAppend with a key: the HMAC's cost.
func BenchmarkAppendMAC(b *testing.B) {
	w, err := Create(b.TempDir(), "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	w.SetKey([]byte("bench-key"))
	rec := sampleRecord(1)
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Append(rec, false); err != nil {
			b.Fatal(err)
		}
	}
}
