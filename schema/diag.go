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

// MaxDiagnostics is how many problems are reported for one file; a file
// with more is almost certainly not a plan, and listing them all helps no one.
const MaxDiagnostics = 100

// Cap keeps the first MaxDiagnostics of sorted diagnostics and says how
// many more there were.
func Cap(ds Diagnostics) Diagnostics {
	if len(ds) <= MaxDiagnostics {
		return ds
	}
	last := ds[MaxDiagnostics-1]
	more := Diagnostic{File: last.File, Pos: last.Pos, Msg: fmt.Sprintf("… and more problems after these %d; fix these first", MaxDiagnostics)}
	return append(ds[:MaxDiagnostics:MaxDiagnostics], more)
}

// Snippet renders the source line at pos with a caret under its column.
func Snippet(src []byte, pos Pos) string { return snippetAt(src, nil, pos) }

// snippet returns the source line at pos with a caret under the column.
func snippet(src []byte, pos Pos) string { return snippetAt(src, nil, pos) }

// snippetAt is snippet with an optional index of line starts. Columns count
// runes; tabs are kept so the caret lines up; a long line is shown as a
// window around the column; a byte-order mark is not shown (YAML columns
// do not count it).
func snippetAt(src []byte, starts []int, pos Pos) string {
	if pos.Line < 1 {
		return ""
	}
	var line []byte
	if starts != nil {
		if pos.Line > len(starts) {
			return ""
		}
		line = src[starts[pos.Line-1]:]
		if j := bytes.IndexByte(line, '\n'); j >= 0 {
			line = line[:j]
		}
		line = bytes.TrimRight(line, "\r")
	} else if line = lineAt(src, pos.Line); line == nil {
		return ""
	}
	if pos.Line == 1 {
		line = bytes.TrimPrefix(line, []byte("\uFEFF"))
	}
	runes := []rune(strings.ToValidUTF8(string(line), "\uFFFD"))
	col := pos.Col
	prefix := ""
	const width = 120
	if col > width {
		cut := col - width/2
		runes = runes[min(cut, len(runes)):]
		col -= cut
		prefix = "…"
	}
	suffix := ""
	if len(runes) > width+width/2 {
		runes = runes[:width+width/2]
		suffix = "…"
	}
	var pad strings.Builder
	pad.WriteString(strings.Repeat(" ", len([]rune(prefix))))
	for i, r := range runes {
		if i >= col-1 {
			break
		}
		if r == '\t' {
			pad.WriteByte('\t')
		} else {
			pad.WriteByte(' ')
		}
	}
	num := fmt.Sprint(pos.Line)
	gutter := strings.Repeat(" ", len(num))
	return fmt.Sprintf(" %s | %s%s%s\n %s | %s^\n", num, prefix, string(runes), suffix, gutter, pad.String())
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
