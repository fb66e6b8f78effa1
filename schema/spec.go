package schema

import "time"

// Kind is the type of a step input, a step output or a plan parameter, named
// the way CEL names it.
type Kind string

// The kinds a step may declare.
const (
	String     Kind = "string"
	Int        Kind = "int"
	Bool       Kind = "bool"
	Double     Kind = "double"
	Duration   Kind = "duration"
	Timestamp  Kind = "timestamp"
	StringList Kind = "list(string)"
	IntList    Kind = "list(int)"
	StringMap  Kind = "map(string, string)"
	Rows       Kind = "list(map(string, dyn))"
	Dyn        Kind = "dyn"
)

// Ref says what a string input names, so that decoding can check the name.
type Ref string

// The things an input may refer to by name.
const (
	RefNone   Ref = ""
	RefTarget Ref = "target" // a key of the plan's targets
	RefSecret Ref = "secret" // a key of the plan's secrets
)

// Field declares one input of a step type. The same declaration drives
// decoding, the JSON Schema, the docs and the CEL type checker.
type Field struct {
	Name     string
	Kind     Kind
	Doc      string
	Required bool
	Default  any      // documented default; the step applies it
	Enum     []string // allowed values of a string
	// Secret means the value (or each map value) may be {secret: name}.
	Secret bool
	// Ref means the string (or each list item) names a target or a secret.
	Ref Ref
	// Literal forbids ${{ }} templates in the value.
	Literal bool
}

// Output declares one output of a step type, visible to later steps as
// steps.<id>.outputs.<name>.
type Output struct {
	Name string
	Kind Kind
	Doc  string
}

// Inputs are a step's decoded `with` values, by field name. Fields the plan
// did not set are absent.
type Inputs map[string]*Value

// Value is one decoded input value with its position.
type Value struct {
	Kind Kind
	Pos  Pos
	// Tmpl is set for strings, and for any scalar written as a ${{ }} template.
	Tmpl *Template
	// Secret names the secret when the value was written {secret: name}.
	Secret string
	Int    int64
	Bool   bool
	Double float64
	Dur    time.Duration
	List   []*Value
	Map    []MapEntry
}

// MapEntry is one key of a map-valued input, in source order.
type MapEntry struct {
	Key string
	Pos Pos
	Val *Value
}

// Template is a string that may embed ${{ expr }} parts.
type Template struct {
	Raw   string
	Parts []TemplatePart
}

// TemplatePart is either literal text or an expression.
type TemplatePart struct {
	Lit  string
	Expr *Expr
}

// IsLiteral reports whether the template has no expressions.
func (t *Template) IsLiteral() bool {
	for _, p := range t.Parts {
		if p.Expr != nil {
			return false
		}
	}
	return true
}

// Single returns the expression when the template is exactly one ${{ }}
// and nothing else (ignoring surrounding spaces).
func (t *Template) Single() *Expr {
	var e *Expr
	for _, p := range t.Parts {
		switch {
		case p.Expr != nil && e == nil:
			e = p.Expr
		case p.Expr != nil:
			return nil
		case trimSpace(p.Lit) != "":
			return nil
		}
	}
	return e
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t' || s[0] == '\n') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t' || s[len(s)-1] == '\n') {
		s = s[:len(s)-1]
	}
	return s
}
