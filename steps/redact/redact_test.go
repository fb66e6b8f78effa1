package redact

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// tricky has characters that every encoding treats differently.
const tricky = `p@ss w/rd&<tag>"q"+ü%=?`

// encodedForms lists the forms of value that must be masked, by label.
func encodedForms(t *testing.T, value string) map[string]string {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(value); err != nil {
		t.Fatal(err)
	}
	plain := strings.TrimSpace(buf.String())
	html, err := json.Marshal(value)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte(value)
	return map[string]string{
		"raw":           value,
		"query":         url.QueryEscape(value),
		"path":          url.PathEscape(value),
		"json":          plain[1 : len(plain)-1],
		"json-html":     string(html[1 : len(html)-1]),
		"base64-std":    base64.StdEncoding.EncodeToString(b),
		"base64-url":    base64.URLEncoding.EncodeToString(b),
		"base64-rawstd": base64.RawStdEncoding.EncodeToString(b),
		"base64-rawurl": base64.RawURLEncoding.EncodeToString(b),
	}
}

// viaWriter masks in through a Writer, writing it in the given chunk sizes
// (the rest in one final write), then flushing.
func viaWriter(t *testing.T, s *Set, in string, chunks ...int) string {
	t.Helper()
	var out bytes.Buffer
	w := s.Writer(&out)
	for _, n := range chunks {
		n = min(n, len(in))
		if got, err := w.Write([]byte(in[:n])); err != nil || got != n {
			t.Fatalf("Write = %d, %v; want %d, nil", got, err, n)
		}
		in = in[n:]
	}
	if _, err := w.Write([]byte(in)); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestEncodedForms(t *testing.T) {
	values := []string{tricky, "hunter2", "correct horse battery staple", "a/b?c=d&e"}
	for _, value := range values {
		s := New()
		s.Add("db", value)
		for label, form := range encodedForms(t, value) {
			t.Run(label+"/"+value, func(t *testing.T) {
				in := "before\t" + form + "\tafter"
				want := "before\t[secret:db]\tafter"
				if got := s.String(in); got != want {
					t.Errorf("String(%q) = %q, want %q", in, got, want)
				}
				if got := string(s.Bytes([]byte(in))); got != want {
					t.Errorf("Bytes(%q) = %q, want %q", in, got, want)
				}
				if got := viaWriter(t, s, in); got != want {
					t.Errorf("Writer(%q) = %q, want %q", in, got, want)
				}
			})
		}
	}
}

func TestJSONRoundTripMasked(t *testing.T) {
	s := New()
	s.Add("pw", tricky)
	for _, escapeHTML := range []bool{false, true} {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(escapeHTML)
		if err := enc.Encode(map[string]string{"dsn": "postgres://u:" + tricky + "@h/db"}); err != nil {
			t.Fatal(err)
		}
		got := s.String(buf.String())
		if !json.Valid([]byte(got)) {
			t.Errorf("escapeHTML=%v: masked JSON is invalid: %s", escapeHTML, got)
		}
		if !strings.Contains(got, "[secret:pw]") {
			t.Errorf("escapeHTML=%v: secret not masked: %s", escapeHTML, got)
		}
	}
}

func TestSplitAcrossWrites(t *testing.T) {
	s := New()
	s.Add("token", tricky)
	s.Add("short", "xyz")
	for label, form := range encodedForms(t, tricky) {
		in := "<<" + form + ">>"
		want := s.String(in)
		if strings.Contains(want, form) {
			t.Fatalf("%s: String did not mask %q", label, form)
		}
		for split := 1; split < len(in); split++ {
			if got := viaWriter(t, s, in, split); got != want {
				t.Errorf("%s split at %d: got %q, want %q", label, split, got, want)
			}
		}
		ones := make([]int, len(in))
		for i := range ones {
			ones[i] = 1
		}
		if got := viaWriter(t, s, in, ones...); got != want {
			t.Errorf("%s one byte at a time: got %q, want %q", label, got, want)
		}
	}
}

func TestOverlapping(t *testing.T) {
	tests := []struct {
		name    string
		secrets [][2]string
		in      string
		want    string
	}{
		{
			name:    "contained, longer first",
			secrets: [][2]string{{"long", "password123"}, {"short", "password"}},
			in:      "a password123 b password c",
			want:    "a [secret:long] b [secret:short] c",
		},
		{
			name:    "contained, shorter first",
			secrets: [][2]string{{"short", "password"}, {"long", "password123"}},
			in:      "a password123 b password c",
			want:    "a [secret:long] b [secret:short] c",
		},
		{
			name:    "contained in the middle",
			secrets: [][2]string{{"inner", "ssw"}, {"outer", "password"}},
			in:      "password ssw",
			want:    "[secret:outer] [secret:inner]",
		},
		{
			name:    "overlapping, leftmost wins",
			secrets: [][2]string{{"x", "abcdef"}, {"y", "defghi"}},
			in:      "abcdefghi defghi",
			want:    "[secret:x]ghi [secret:y]",
		},
		{
			name:    "same value, two names",
			secrets: [][2]string{{"first", "s3cr3t"}, {"second", "s3cr3t"}},
			in:      "s3cr3t",
			want:    "[secret:first]",
		},
		{
			name:    "adjacent",
			secrets: [][2]string{{"a", "foo"}, {"b", "bar"}},
			in:      "foobarfoo",
			want:    "[secret:a][secret:b][secret:a]",
		},
		{
			name:    "one name, two values",
			secrets: [][2]string{{"pw", "old-pass"}, {"pw", "new-pass"}},
			in:      "old-pass new-pass",
			want:    "[secret:pw] [secret:pw]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New()
			for _, sec := range tt.secrets {
				s.Add(sec[0], sec[1])
			}
			if got := s.String(tt.in); got != tt.want {
				t.Errorf("String = %q, want %q", got, tt.want)
			}
			if got := string(s.Bytes([]byte(tt.in))); got != tt.want {
				t.Errorf("Bytes = %q, want %q", got, tt.want)
			}
			for split := 0; split <= len(tt.in); split++ {
				if got := viaWriter(t, s, tt.in, split); got != tt.want {
					t.Errorf("Writer split at %d = %q, want %q", split, got, tt.want)
				}
			}
		})
	}
}

func TestNoSecrets(t *testing.T) {
	s := New()
	in := "nothing to hide here"
	if got := s.String(in); got != in {
		t.Errorf("String = %q, want %q", got, in)
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = s.String(in) }); allocs != 0 {
		t.Errorf("String allocated %v times with no secrets", allocs)
	}
	b := []byte(in)
	if got := s.Bytes(b); &got[0] != &b[0] {
		t.Error("Bytes copied its input with no secrets")
	}
	if got := s.Len(); got != 0 {
		t.Errorf("Len = %d, want 0", got)
	}

	// The zero Set works too.
	var zero Set
	if got := zero.String(in); got != in {
		t.Errorf("zero Set String = %q", got)
	}

	// A Writer passes everything through immediately.
	var out bytes.Buffer
	w := s.Writer(&out)
	for _, chunk := range []string{"abc", "def", ""} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if out.String() != "abcdef" {
		t.Errorf("Writer wrote %q before Flush, want %q", out.String(), "abcdef")
	}
}

func TestAddIgnores(t *testing.T) {
	s := New()
	s.Add("empty", "")
	if s.Len() != 0 {
		t.Fatalf("Len = %d after adding an empty value", s.Len())
	}
	s.Add("pw", "hunter2")
	s.Add("pw", "hunter2")
	if s.Len() != 1 {
		t.Fatalf("Len = %d after adding the same secret twice", s.Len())
	}
	s.Add("pw", "other")
	s.Add("api", "hunter2")
	if s.Len() != 3 {
		t.Fatalf("Len = %d, want 3", s.Len())
	}
}

func TestWriterPrompt(t *testing.T) {
	s := New()
	s.Add("pw", "hunter2")
	tests := []struct {
		name      string
		write     string
		wantNow   string // written before Flush
		wantFinal string // written after Flush
	}{
		{"no candidate", "plain text\n", "plain text\n", "plain text\n"},
		{"whole secret", "pw=hunter2\n", "pw=[secret:pw]\n", "pw=[secret:pw]\n"},
		{"partial at end", "pw=hunt", "pw=", "pw=hunt"},
		{"partial encoded at end", "q=aHVudGVy", "q=", "q=aHVudGVy"},
		{"candidate byte, not a prefix", "hx", "hx", "hx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			w := s.Writer(&out)
			if n, err := w.Write([]byte(tt.write)); err != nil || n != len(tt.write) {
				t.Fatalf("Write = %d, %v", n, err)
			}
			if got := out.String(); got != tt.wantNow {
				t.Errorf("before Flush: %q, want %q", got, tt.wantNow)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != tt.wantFinal {
				t.Errorf("after Flush: %q, want %q", got, tt.wantFinal)
			}
		})
	}
}

// failWriter fails every write.
type failWriter struct{}

var errBroken = errors.New("broken pipe")

func (failWriter) Write([]byte) (int, error) { return 0, errBroken }

func TestWriterError(t *testing.T) {
	s := New()
	s.Add("pw", "hunter2")
	w := s.Writer(failWriter{})
	if _, err := w.Write([]byte("x hunter2 y")); !errors.Is(err, errBroken) {
		t.Fatalf("Write error = %v, want %v", err, errBroken)
	}
	if _, err := w.Write([]byte("more")); !errors.Is(err, errBroken) {
		t.Errorf("second Write error = %v, want sticky %v", err, errBroken)
	}
	if err := w.Flush(); !errors.Is(err, errBroken) {
		t.Errorf("Flush error = %v, want sticky %v", err, errBroken)
	}
}

func TestValue(t *testing.T) {
	s := New()
	s.Add("pw", "hunter2")
	in := map[string]any{
		"dsn":     "postgres://u:hunter2@h",
		"n":       42,
		"list":    []any{"hunter2", 1.5, []string{"a", "hunter2"}},
		"env":     map[string]string{"PGPASSWORD": "hunter2", "hunter2": "key"},
		"nested":  map[string]any{"deep": []any{map[string]any{"x": "hunter2"}}},
		"nilList": []string(nil),
	}
	want := map[string]any{
		"dsn":     "postgres://u:[secret:pw]@h",
		"n":       42,
		"list":    []any{"[secret:pw]", 1.5, []string{"a", "[secret:pw]"}},
		"env":     map[string]string{"PGPASSWORD": "[secret:pw]", "[secret:pw]": "key"},
		"nested":  map[string]any{"deep": []any{map[string]any{"x": "[secret:pw]"}}},
		"nilList": []string(nil),
	}
	got := s.Value(in)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Value =\n%#v\nwant\n%#v", got, want)
	}
	// The input is not modified.
	if in["dsn"] != "postgres://u:hunter2@h" || in["list"].([]any)[0] != "hunter2" {
		t.Error("Value modified its input")
	}
	if got := s.Value(7); got != 7 {
		t.Errorf("Value(7) = %v", got)
	}
}

// TestAgree checks that String, Bytes and Writer (under random chunking)
// give the same result on random text built from pieces of the secrets.
func TestAgree(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := "abc"
	randStr := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(b)
	}
	for round := range 200 {
		s := New()
		for i := range 1 + r.IntN(4) {
			s.Add(fmt.Sprint("s", i), randStr(1+r.IntN(6)))
		}
		in := randStr(r.IntN(60))
		want := s.String(in)
		if got := string(s.Bytes([]byte(in))); got != want {
			t.Fatalf("round %d: Bytes(%q) = %q, String = %q", round, in, got, want)
		}
		var chunks []int
		for range r.IntN(8) {
			chunks = append(chunks, r.IntN(10))
		}
		if got := viaWriter(t, s, in, chunks...); got != want {
			t.Fatalf("round %d: Writer(%q, %v) = %q, String = %q", round, in, chunks, got, want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func TestConcurrent(t *testing.T) {
	s := New()
	var out syncBuffer
	w := s.Writer(&out)
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		name, value := fmt.Sprint("k", i), fmt.Sprintf("secret-value-%03d", i)
		wg.Go(func() {
			s.Add(name, value)
			_ = s.String("x " + value + " y")
			_ = s.Bytes([]byte(value))
			_ = s.Value([]any{value})
			_ = s.Len()
		})
		wg.Go(func() {
			if _, err := w.Write([]byte("line " + name + "\n")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if s.Len() != n {
		t.Errorf("Len = %d, want %d", s.Len(), n)
	}
	for i := range n {
		value := fmt.Sprintf("secret-value-%03d", i)
		if got, want := s.String(value), fmt.Sprintf("[secret:k%d]", i); got != want {
			t.Errorf("String(%q) = %q, want %q", value, got, want)
		}
	}
	if got := strings.Count(out.buf.String(), "\n"); got != n {
		t.Errorf("Writer wrote %d lines, want %d", got, n)
	}
}

// benchText returns about 4 KiB of log-like text mentioning each secret a few
// times.
func benchText(secrets []string) string {
	var b strings.Builder
	for i := 0; b.Len() < 4096; i++ {
		fmt.Fprintf(&b, "2026-11-24T01:54:%02d.123Z step=copy_rows table=public.orders rows=%d ", i%60, i*1000)
		if i%8 == 0 {
			fmt.Fprintf(&b, "dsn=postgres://app:%s@db.internal/app", secrets[i/8%len(secrets)])
		}
		b.WriteString("\n")
	}
	return b.String()[:4096]
}

func benchSet() (*Set, []string) {
	secrets := []string{"Tr0ub4dor&3", "correct-horse-battery-staple", "AKIAIOSFODNN7EXAMPLE"}
	s := New()
	for i, v := range secrets {
		s.Add(fmt.Sprint("secret", i), v)
	}
	return s, secrets
}

func BenchmarkString(b *testing.B) {
	s, secrets := benchSet()
	text := benchText(secrets)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		_ = s.String(text)
	}
}

func BenchmarkBytes(b *testing.B) {
	s, secrets := benchSet()
	text := []byte(benchText(secrets))
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		_ = s.Bytes(text)
	}
}

func BenchmarkWriter(b *testing.B) {
	s, secrets := benchSet()
	text := []byte(benchText(secrets))
	w := s.Writer(discard{})
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := w.Write(text); err != nil {
			b.Fatal(err)
		}
	}
}

// discard is io.Discard without its ReadFrom fast path.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
