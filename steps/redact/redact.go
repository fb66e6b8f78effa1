// Package redact masks secret values in text before it reaches a terminal,
// a log or the run journal.
//
// A secret is registered once, by name, with [Set.Add]. From then on every
// occurrence of its value, and of the usual encodings of its value (URL query
// and path escaping, JSON string escaping, the four base64 alphabets), is
// replaced by "[secret:NAME]".
//
// Matching is leftmost-longest: text is scanned from the start and, at each
// position, the longest registered form that begins there is replaced. When
// two secrets overlap without one containing the other, the leftmost one is
// masked and the remainder of the other is left as is.
package redact

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Set holds the secret values to mask. Safe for concurrent use.
//
// The zero value is an empty set ready to use.
type Set struct {
	mu sync.Mutex            // serializes Add
	st atomic.Pointer[state] // nil until the first secret is added
}

// secret is one registered name and value.
type secret struct {
	name, value string
}

// pattern is one form of a secret and its replacement.
type pattern struct {
	old, repl string
}

// state is an immutable snapshot of a Set. Add builds a new one and swaps it
// in, so readers never lock.
type state struct {
	secrets  []secret
	replacer *strings.Replacer
	// patterns are sorted longest first; byFirst indexes them by first byte,
	// keeping that order.
	patterns []pattern
	byFirst  [256][]int
}

// New returns an empty Set.
func New() *Set {
	return &Set{}
}

// Add registers a secret by name. Empty values are ignored, and adding the
// same name and value again has no effect. Adding a new value under a name
// that is already registered masks both values.
//
// The value is masked in these forms: as is, [url.QueryEscape],
// [url.PathEscape], JSON string escaping (without the quotes; both with and
// without HTML escaping), and base64 in the standard, URL, raw standard and
// raw URL encodings. Each form is replaced by "[secret:NAME]".
func (s *Set) Add(name, value string) {
	if value == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var secrets []secret
	if old := s.st.Load(); old != nil {
		if slices.Contains(old.secrets, secret{name, value}) {
			return
		}
		secrets = slices.Clone(old.secrets)
	}
	secrets = append(secrets, secret{name, value})
	s.st.Store(build(secrets))
}

// Len returns the number of registered secrets, counting each distinct name
// and value pair once.
func (s *Set) Len() int {
	st := s.st.Load()
	if st == nil {
		return 0
	}
	return len(st.secrets)
}

// String returns in with every secret masked. If no secret is registered it
// returns in unchanged without allocating.
func (s *Set) String(in string) string {
	st := s.st.Load()
	if st == nil {
		return in
	}
	return st.replacer.Replace(in)
}

// Bytes returns in with every secret masked. When nothing needs masking
// (including when no secret is registered) in itself is returned; otherwise
// the result is a new slice and in is not modified.
func (s *Set) Bytes(in []byte) []byte {
	st := s.st.Load()
	if st == nil {
		return in
	}
	out, _, hit := st.scan(nil, in, true)
	if !hit {
		return in
	}
	return out
}

// Value returns a deep copy of v with every string inside it masked. It
// descends into string, []string, []any, map[string]any and
// map[string]string, masking map keys as well as values; any other value is
// returned as is. Nil slices and maps stay nil.
func (s *Set) Value(v any) any {
	switch x := v.(type) {
	case string:
		return s.String(x)
	case []string:
		if x == nil {
			return x
		}
		out := make([]string, len(x))
		for i, e := range x {
			out[i] = s.String(e)
		}
		return out
	case []any:
		if x == nil {
			return x
		}
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = s.Value(e)
		}
		return out
	case map[string]any:
		if x == nil {
			return x
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[s.String(k)] = s.Value(e)
		}
		return out
	case map[string]string:
		if x == nil {
			return x
		}
		out := make(map[string]string, len(x))
		for k, e := range x {
			out[s.String(k)] = s.String(e)
		}
		return out
	}
	return v
}

// build makes the state for a list of secrets.
func build(secrets []secret) *state {
	st := &state{secrets: secrets}
	seen := make(map[string]bool)
	for _, sec := range secrets {
		repl := "[secret:" + sec.name + "]"
		for _, form := range forms(sec.value) {
			if form == "" || seen[form] {
				continue // the first secret to register a form keeps it
			}
			seen[form] = true
			st.patterns = append(st.patterns, pattern{old: form, repl: repl})
		}
	}
	// strings.Replacer prefers the earliest argument that matches at a
	// position, so longest first makes it replace the longest form.
	slices.SortFunc(st.patterns, func(a, b pattern) int {
		if len(a.old) != len(b.old) {
			return len(b.old) - len(a.old)
		}
		return strings.Compare(a.old, b.old)
	})
	oldnew := make([]string, 0, 2*len(st.patterns))
	for i, p := range st.patterns {
		oldnew = append(oldnew, p.old, p.repl)
		st.byFirst[p.old[0]] = append(st.byFirst[p.old[0]], i)
	}
	st.replacer = strings.NewReplacer(oldnew...)
	return st
}

// forms returns value and its encoded forms, possibly with duplicates.
func forms(value string) []string {
	b := []byte(value)
	return []string{
		value,
		url.QueryEscape(value),
		url.PathEscape(value),
		jsonEscape(value, false),
		jsonEscape(value, true),
		base64.StdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b),
		base64.RawURLEncoding.EncodeToString(b),
	}
}

// jsonEscape returns value as encoding/json writes it inside a string,
// without the surrounding quotes.
func jsonEscape(value string, escapeHTML bool) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(escapeHTML)
	if err := enc.Encode(value); err != nil {
		return "" // cannot happen for a string
	}
	out := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	return string(out[1 : len(out)-1])
}

// scan masks data, appending the result to out, with the same
// leftmost-longest semantics as the state's strings.Replacer.
//
// Unless final is set, scan stops at the first position where a form could
// begin but data ends before it can be decided, and returns that position as
// n: data[n:] must be held back until more data arrives. Everything before n
// is decided. hit reports whether anything was replaced; when it is false out
// is not written to and data[:n] is the result.
func (st *state) scan(out, data []byte, final bool) (res []byte, n int, hit bool) {
	last := 0 // data[last:i] is decided and not yet copied to out
	i := 0
	for i < len(data) {
		cands := st.byFirst[data[i]]
		if len(cands) == 0 {
			i++
			continue
		}
		rest := data[i:]
		match := -1
		for _, pi := range cands {
			old := st.patterns[pi].old
			if len(old) <= len(rest) {
				if string(rest[:len(old)]) == old {
					match = pi
					break
				}
			} else if !final && string(rest) == old[:len(rest)] {
				// A longer form may still match here: undecided.
				if hit {
					out = append(out, data[last:i]...)
				}
				return out, i, hit
			}
		}
		if match < 0 {
			i++
			continue
		}
		if !hit {
			hit = true
			out = slices.Grow(out, len(data))
		}
		p := st.patterns[match]
		out = append(out, data[last:i]...)
		out = append(out, p.repl...)
		i += len(p.old)
		last = i
	}
	if hit {
		out = append(out, data[last:]...)
	}
	return out, len(data), hit
}
