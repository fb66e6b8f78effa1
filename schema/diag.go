// Package schema decodes cutover plans (apiVersion cutover/v1) from YAML into
// typed values that keep the position of every node, and reports every
// problem it finds as a positioned diagnostic.
package schema

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
)

// Pos is a 1-based line and column in a plan file.
type Pos struct {
	Line int `json:"line"`
	Col  int `json:"col"`
}

// Diagnostic is one problem in a plan, positioned in its source file.
type Diagnostic struct {
	File    string `json:"file"`
	Pos            // where the problem is
	Msg     string `json:"message"`
	Snippet string `json:"snippet,omitempty"` // the source line and a caret under Pos
}

// String renders the diagnostic as "file:line:col: message".
func (d Diagnostic) String() string {
	return fmt.Sprintf("%s:%d:%d: %s", d.File, d.Line, d.Col, d.Msg)
}

// Diagnostics is a list of problems; it is an error when not empty.
type Diagnostics []Diagnostic

// Error renders every diagnostic on its own line, without snippets.
func (ds Diagnostics) Error() string {
	var b strings.Builder
	for i, d := range ds {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(d.String())
	}
	return b.String()
}

// Sort orders diagnostics by file, line and column, dropping exact duplicates.
func (ds Diagnostics) Sort() Diagnostics {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i], ds[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	out := ds[:0]
	for i, d := range ds {
		if i > 0 && d.File == ds[i-1].File && d.Pos == ds[i-1].Pos && d.Msg == ds[i-1].Msg {
			continue
		}
		out = append(out, d)
	}
	return out
}

// Format renders every diagnostic with its source snippet, as printed by
// `cutover validate`.
func (ds Diagnostics) Format() string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(d.String())
		b.WriteByte('\n')
		if d.Snippet != "" {
			b.WriteString(d.Snippet)
		}
	}
	return b.String()
}

// snippet returns the source line at pos with a caret under the column.
// Columns count runes; tabs are kept so the caret lines up.
func snippet(src []byte, pos Pos) string {
	if pos.Line < 1 {
		return ""
	}
	line := lineAt(src, pos.Line)
	if line == nil {
		return ""
	}
	if len(line) > 160 {
		line = line[:160]
	}
	text := strings.ToValidUTF8(string(line), "\uFFFD")
	var pad strings.Builder
	i := 0
	for _, r := range text {
		if i >= pos.Col-1 {
			break
		}
		if r == '\t' {
			pad.WriteByte('\t')
		} else {
			pad.WriteByte(' ')
		}
		i++
	}
	num := fmt.Sprint(pos.Line)
	gutter := strings.Repeat(" ", len(num))
	return fmt.Sprintf(" %s | %s\n %s | %s^\n", num, text, gutter, pad.String())
}

func lineAt(src []byte, n int) []byte {
	for i := 1; i < n; i++ {
		j := bytes.IndexByte(src, '\n')
		if j < 0 {
			return nil
		}
		src = src[j+1:]
	}
	if j := bytes.IndexByte(src, '\n'); j >= 0 {
		src = src[:j]
	}
	return bytes.TrimRight(src, "\r")
}
