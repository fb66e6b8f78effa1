package schema

import (
	"bytes"
	"strconv"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Expr is one CEL expression found in a plan: a `when`, an `assert` item or
// the inside of a ${{ }} template.
type Expr struct {
	Src  string // the expression text
	Role string // what it is for, e.g. "when", "assert[1]", "with.argv[2]"
	File string
	pos  *scalarPos
	off  int // rune offset of Src within the scalar's value
}

// Pos is where the expression starts in the plan file.
func (e *Expr) Pos() Pos { return e.PosAt(0) }

// PosAt maps a rune offset within Src to a position in the plan file,
// whatever the YAML scalar style (plain, quoted, literal or folded).
func (e *Expr) PosAt(off int) Pos {
	if e.pos == nil {
		return Pos{1, 1}
	}
	return e.pos.at(e.off + off)
}

// Snippet renders the source line at pos with a caret.
func (e *Expr) Snippet(p Pos) string {
	if e.pos == nil {
		return ""
	}
	return snippet(e.pos.src, p)
}

// NewExpr makes an expression that is not backed by a plan file (tests,
// benchmarks and synthetic checks).
func NewExpr(src, role string) *Expr { return &Expr{Src: src, Role: role} }

// scalarPos maps rune offsets of a decoded scalar value back to the source.
type scalarPos struct {
	src   []byte
	node  *yaml.Node
	value []rune
	// memo of a computed mapping, built on first use
	mapped []Pos
}

func (s *scalarPos) at(off int) Pos {
	if s.mapped == nil {
		s.mapped = alignScalar(s.src, s.node, s.value)
	}
	if off < 0 {
		off = 0
	}
	if off >= len(s.mapped) {
		if len(s.mapped) == 0 {
			return Pos{s.node.Line, s.node.Column}
		}
		last := s.mapped[len(s.mapped)-1]
		return Pos{last.Line, last.Col + off - len(s.mapped) + 1}
	}
	return s.mapped[off]
}

// alignScalar walks the decoded value and the raw source side by side and
// records, for each rune of the value, where it came from. Source runes that
// the YAML scalar syntax consumes (indentation, line folding, quotes and
// escapes) are skipped.
func alignScalar(src []byte, n *yaml.Node, value []rune) []Pos {
	out := make([]Pos, len(value))
	line, col := n.Line, n.Column
	p := offsetOf(src, line, col)
	if p < 0 {
		for i := range out {
			out[i] = Pos{n.Line, n.Column + i}
		}
		return out
	}
	advance := func() {
		r, size := utf8.DecodeRune(src[p:])
		p += size
		if r == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	switch n.Style {
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		advance() // opening quote
	case yaml.LiteralStyle, yaml.FoldedStyle:
		for p < len(src) && src[p] != '\n' {
			advance()
		}
	}
	var found bool
	var q, ql, qc int
	for i, r := range value {
		// Quoted styles spell some runes with more than one source rune.
		if n.Style == yaml.DoubleQuotedStyle {
			for p < len(src) && src[p] == '\\' {
				produced, size := unescape(src[p:])
				if size == 0 {
					break
				}
				if produced < 0 { // an escaped line break: nothing
					for k := 0; k < size; k++ {
						advance()
					}
					for p < len(src) && (src[p] == ' ' || src[p] == '\t') {
						advance()
					}
					continue
				}
				if produced == r {
					out[i] = Pos{line, col}
					for k := 0; k < size; k++ {
						advance()
					}
					goto next
				}
				break
			}
		}
		if n.Style == yaml.SingleQuotedStyle && r == '\'' && p+1 < len(src) && src[p] == '\'' && src[p+1] == '\'' {
			out[i] = Pos{line, col}
			advance()
			advance()
			continue
		}
		// Look a little way ahead for the rune, skipping only syntax.
		q, ql, qc = p, line, col
		found = false
		for steps := 0; q < len(src) && steps < 256; steps++ {
			c, size := utf8.DecodeRune(src[q:])
			if c == r {
				found = true
				break
			}
			if c != ' ' && c != '\n' && c != '\r' && c != '\t' && c != '\\' && c != '"' && c != '\'' {
				break
			}
			q += size
			if c == '\n' {
				ql++
				qc = 1
			} else {
				qc++
			}
		}
		if found {
			p, line, col = q, ql, qc
		}
		out[i] = Pos{line, col}
		if p < len(src) {
			advance()
		}
	next:
	}
	return out
}

// unescape decodes the double-quoted YAML escape at the start of b: the rune
// it stands for (-1 for an escaped line break) and how many source runes it
// spans (0 if it is not an escape).
func unescape(b []byte) (rune, int) {
	if len(b) < 2 || b[0] != '\\' {
		return 0, 0
	}
	simple := map[byte]rune{'0': 0, 'a': 7, 'b': 8, 't': 9, '\t': 9, 'n': 10, 'v': 11, 'f': 12, 'r': 13, 'e': 27,
		' ': ' ', '"': '"', '/': '/', '\\': '\\', 'N': 0x85, '_': 0xA0, 'L': 0x2028, 'P': 0x2029}
	if r, ok := simple[b[1]]; ok {
		return r, 2
	}
	hex := map[byte]int{'x': 2, 'u': 4, 'U': 8}
	if n, ok := hex[b[1]]; ok && len(b) >= 2+n {
		v, err := strconv.ParseUint(string(b[2:2+n]), 16, 32)
		if err != nil {
			return 0, 0
		}
		return rune(v), 2 + n
	}
	if b[1] == '\n' {
		return -1, 2
	}
	if b[1] == '\r' && len(b) > 2 && b[2] == '\n' {
		return -1, 3
	}
	return 0, 0
}

// offsetOf returns the byte offset of a 1-based line and rune column.
func offsetOf(src []byte, line, col int) int {
	p := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(src[p:], '\n')
		if i < 0 {
			return -1
		}
		p += i + 1
	}
	for c := 1; c < col; c++ {
		if p >= len(src) || src[p] == '\n' {
			return -1
		}
		_, size := utf8.DecodeRune(src[p:])
		p += size
	}
	return p
}
