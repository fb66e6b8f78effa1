package schema

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// MaxPlanBytes is the largest plan file the decoder reads. Real plans are a
// few kilobytes; a 1,000-step plan is well under one megabyte.
const MaxPlanBytes = 4 << 20

// maxNodes bounds the number of YAML nodes the decoder visits, counting every
// expansion of an alias, so that an alias bomb is refused in bounded time and
// memory.
const maxNodes = 1_000_000

// StepTypes tells the decoder which step types exist and which inputs each
// takes. The steps package implements it; schema does not import it.
type StepTypes interface {
	StepInputs(typ string) ([]Field, bool)
	StepTypeNames() []string
}

var (
	idPattern   = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
	envPattern  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// celReserved are words CEL will not accept as identifiers.
var celReserved = map[string]bool{
	"in": true, "as": true, "break": true, "const": true, "continue": true, "else": true,
	"for": true, "function": true, "if": true, "import": true, "let": true, "loop": true,
	"package": true, "namespace": true, "return": true, "var": true, "void": true,
	"while": true, "true": true, "false": true, "null": true,
	// names the expression context already uses
	"params": true, "steps": true, "run": true, "plan": true, "targets": true,
	"outputs": true, "rows": true, "status": true,
}

// SSLModes are the libpq sslmode values, weakest first.
var SSLModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// ParamTypes are the types a plan parameter may declare.
var ParamTypes = map[string]Kind{
	"string": String, "int": Int, "bool": Bool, "duration": Duration, "list": StringList,
}

// Load reads and decodes a plan file. Every problem is returned, sorted.
func Load(file string, types StepTypes) (*Plan, Diagnostics) {
	f, err := os.Open(file)
	if err != nil {
		return nil, Diagnostics{{File: file, Pos: Pos{1, 1}, Msg: "cannot read plan: " + unwrapPathError(err)}}
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, Diagnostics{{File: file, Pos: Pos{1, 1}, Msg: "cannot read plan: it is a directory"}}
	}
	src, err := io.ReadAll(io.LimitReader(f, MaxPlanBytes+1))
	if err != nil {
		return nil, Diagnostics{{File: file, Pos: Pos{1, 1}, Msg: "cannot read plan: " + unwrapPathError(err)}}
	}
	return Decode(file, src, types)
}

func unwrapPathError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// Decode decodes a plan from src. file names it in diagnostics.
func Decode(file string, src []byte, types StepTypes) (*Plan, Diagnostics) {
	d := &decoder{file: file, src: src, types: types, budget: maxNodes}
	p := d.plan()
	ds := Cap(d.diags.Sort())
	if len(ds) > 0 {
		return p, ds
	}
	return p, nil
}

type decoder struct {
	file    string
	src     []byte
	types   StepTypes
	diags   Diagnostics
	budget  int
	aborted bool
	lines   []int // byte offset of each line, built on the first diagnostic

	plan_   *Plan
	secrets map[string]bool
	targets map[string]bool
	ids     map[string]Pos
}

func (d *decoder) errAt(p Pos, format string, args ...any) {
	if len(d.diags) >= 10*MaxDiagnostics {
		d.aborted = true
		return
	}
	if d.lines == nil {
		d.lines = lineStarts(d.src)
	}
	d.diags = append(d.diags, Diagnostic{File: d.file, Pos: p, Msg: fmt.Sprintf(format, args...), Snippet: snippetAt(d.src, d.lines, p)})
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.errAt(posOf(n), format, args...)
}

func posOf(n *yaml.Node) Pos {
	if n == nil || n.Line == 0 {
		return Pos{1, 1}
	}
	return Pos{n.Line, n.Column}
}

func (d *decoder) plan() *Plan {
	if len(d.src) > MaxPlanBytes {
		d.errAt(Pos{1, 1}, "plan is larger than %d MiB; refusing to read it (is this the right file?)", MaxPlanBytes>>20)
		return nil
	}
	if !utf8.Valid(d.src) {
		d.errAt(firstInvalidUTF8(d.src), "plan is not valid UTF-8 text")
		return nil
	}
	if d.tabs() {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(d.src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			d.errAt(Pos{1, 1}, "plan is empty")
		} else {
			d.yamlError(err)
		}
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		d.errorf(&extra, "plan file holds more than one YAML document; put one plan in each file")
	} else if err != io.EOF {
		d.yamlError(err)
		return nil
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	root = d.resolve(root)
	if root == nil {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		d.errorf(root, "a plan is a mapping with apiVersion, kind, name, version and steps; found %s", describe(root))
		return nil
	}
	sum := sha256.Sum256(d.src)
	p := &Plan{File: d.file, Source: d.src, SHA256: hex.EncodeToString(sum[:])}
	d.plan_ = p
	d.secrets, d.targets, d.ids = map[string]bool{}, map[string]bool{}, map[string]Pos{}

	top := map[string]*yaml.Node{}
	topKeys := map[string]*yaml.Node{}
	d.mapping(root, "plan", []string{"apiVersion", "kind", "name", "version", "description", "params", "secrets", "targets", "defaults", "steps", "finally"},
		func(key string, k, v *yaml.Node) { top[key] = v; topKeys[key] = k })

	if v, ok := top["apiVersion"]; !ok {
		d.errAt(posOf(root), "missing apiVersion: %s", APIVersion)
	} else if s, ok := d.str(v, "apiVersion"); ok && s != APIVersion {
		d.errorf(v, "apiVersion is %q; this engine reads %q", s, APIVersion)
	}
	if v, ok := top["kind"]; !ok {
		d.errAt(posOf(root), "missing kind: Plan")
	} else if s, ok := d.str(v, "kind"); ok && s != "Plan" {
		d.errorf(v, "kind is %q; want Plan", s)
	}
	if v, ok := top["name"]; !ok {
		d.errAt(posOf(root), "missing name")
	} else if s, ok := d.str(v, "name"); ok {
		if !namePattern.MatchString(s) {
			d.errorf(v, "name %q must be lower case letters, digits, '.', '_' or '-'", s)
		}
		p.Name = s
	}
	if v, ok := top["version"]; !ok {
		d.errAt(posOf(root), "missing version (an integer bumped on every change)")
	} else if n, ok := d.int(v, "version"); ok {
		if n < 1 {
			d.errorf(v, "version must be 1 or more")
		}
		p.Version = int(n)
	}
	if v, ok := top["description"]; ok {
		p.Description, _ = d.str(v, "description")
	}
	if v, ok := top["params"]; ok {
		d.params(v)
	}
	if v, ok := top["secrets"]; ok {
		d.secretsSection(v)
	}
	if v, ok := top["targets"]; ok {
		d.targetsSection(v)
	}
	if v, ok := top["defaults"]; ok {
		d.defaults(v)
	}
	if p.Defaults.Retry.Attempts == 0 {
		p.Defaults.Retry = Retry{Attempts: 1, Backoff: time.Second, MaxBackoff: 30 * time.Second}
	}
	if v, ok := top["steps"]; !ok {
		d.errAt(posOf(root), "missing steps: a plan needs at least one step")
	} else {
		p.Steps = d.stepList(v, SectionSteps, nil)
		if len(p.Steps) == 0 && !d.aborted && v.Kind == yaml.SequenceNode {
			d.errorf(v, "steps is empty: a plan needs at least one step")
		}
	}
	if v, ok := top["finally"]; ok {
		p.Finally = d.stepList(v, SectionFinally, nil)
	}
	return p
}

// tabs reports tab characters in indentation, which YAML forbids and which
// yaml.v3 describes poorly.
func (d *decoder) tabs() bool {
	found := false
	line := 1
	for rest := d.src; len(rest) > 0; line++ {
		end := bytes.IndexByte(rest, '\n')
		l := rest
		if end >= 0 {
			l, rest = rest[:end], rest[end+1:]
		} else {
			rest = nil
		}
		for i, c := range l {
			if c == '\t' {
				d.errAt(Pos{line, i + 1}, "tab character in indentation; YAML indents with spaces")
				found = true
				if len(d.diags) >= MaxDiagnostics {
					return true
				}
				break
			}
			if c != ' ' {
				break
			}
		}
	}
	return found
}

var (
	yamlLine      = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	unknownAnchor = regexp.MustCompile(`^yaml: unknown anchor '(.*)' referenced$`)
)

// yamlError positions a YAML syntax error. yaml.v3 names only a line, and
// for parser errors the 0-based line where the enclosing construct began,
// so the line where the problem really is is found by parsing growing
// prefixes of the file from there: the first prefix that fails the same way
// ends at it.
func (d *decoder) yamlError(err error) {
	msg := err.Error()
	if m := unknownAnchor.FindStringSubmatch(msg); m != nil {
		if i := bytes.Index(d.src, []byte("*"+m[1])); i >= 0 {
			d.errAt(d.posAtOffset(i), "YAML: alias *%s refers to no anchor &%s", m[1], m[1])
			return
		}
	}
	m := yamlLine.FindStringSubmatch(msg)
	if m == nil {
		d.errAt(Pos{1, 1}, "YAML syntax: %s", strings.TrimPrefix(msg, "yaml: "))
		return
	}
	n, _ := strconv.Atoi(m[1])
	line := d.firstFailingLine(n, m[2])
	d.errAt(Pos{line, firstNonSpace(lineAt(d.src, line))}, "YAML syntax: %s", m[2])
}

func (d *decoder) firstFailingLine(from int, want string) int {
	starts := lineStarts(d.src)
	if from < 1 {
		from = 1
	}
	for l := from; l <= len(starts) && l < from+200; l++ {
		end := len(d.src)
		if l < len(starts) {
			end = starts[l]
		}
		var n yaml.Node
		err := yaml.Unmarshal(d.src[:end], &n)
		if err == nil {
			continue
		}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil && m[2] == want {
			return l
		}
	}
	if from+1 <= len(starts) {
		return from + 1
	}
	return max(from, 1)
}

// lineStarts returns the byte offset at which each line starts.
func lineStarts(src []byte) []int {
	starts := []int{0}
	for i, c := range src {
		if c == '\n' && i+1 < len(src) {
			starts = append(starts, i+1)
		}
	}
	return starts
}

func firstNonSpace(line []byte) int {
	col := 1
	for _, r := range string(line) {
		if r != ' ' && r != '\t' {
			return col
		}
		col++
	}
	return 1
}

func (d *decoder) posAtOffset(off int) Pos {
	line, col := 1, 1
	for _, r := range string(d.src[:off]) {
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return Pos{line, col}
}

func firstInvalidUTF8(b []byte) Pos {
	line, col := 1, 1
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size <= 1 {
			return Pos{line, col}
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		b = b[size:]
	}
	return Pos{line, col}
}

// resolve follows aliases and charges the node budget. It returns nil once
// the budget is spent.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	if d.aborted {
		return nil
	}
	for depth := 0; n != nil && n.Kind == yaml.AliasNode; depth++ {
		if depth > 100 {
			d.errorf(n, "alias chain is too deep")
			d.aborted = true
			return nil
		}
		n = n.Alias
	}
	d.budget -= 1 + len(n.Content)
	if d.budget < 0 {
		d.errorf(n, "plan expands to more than %d YAML nodes through aliases; refusing it (an alias bomb?)", maxNodes)
		d.aborted = true
		return nil
	}
	return n
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "nothing (null)"
		case "!!bool":
			return "a boolean (" + n.Value + ")"
		case "!!int":
			return "an integer (" + n.Value + ")"
		case "!!float":
			return "a number (" + n.Value + ")"
		}
		return fmt.Sprintf("the string %q", clip(n.Value, 40))
	}
	return "something else"
}

func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// pair is one key of a mapping after YAML merge keys (<<) are expanded.
type pair struct {
	k, v   *yaml.Node
	merged bool
}

// pairs flattens a mapping: keys written in the mapping win over merged
// ones whatever their order, and earlier merges win over later ones.
func (d *decoder) pairs(m *yaml.Node, what string) []pair {
	var own, merged []pair
	for i := 0; i+1 < len(m.Content) && !d.aborted; i += 2 {
		k, v := d.resolve(m.Content[i]), m.Content[i+1]
		if k == nil {
			return nil
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, "keys in %s must be plain strings", what)
			continue
		}
		if k.Tag != "!!merge" {
			own = append(own, pair{k: k, v: v})
			continue
		}
		mv := d.resolve(v)
		if mv == nil {
			return nil
		}
		var sources []*yaml.Node
		switch mv.Kind {
		case yaml.MappingNode:
			sources = append(sources, mv)
		case yaml.SequenceNode:
			for _, item := range mv.Content {
				if im := d.resolve(item); im != nil && im.Kind == yaml.MappingNode {
					sources = append(sources, im)
				}
			}
		default:
			d.errorf(v, "a merge key (<<) needs a mapping or a list of mappings")
		}
		for _, src := range sources {
			for _, p := range d.pairs(src, what) {
				p.merged = true
				merged = append(merged, p)
			}
		}
	}
	seen := map[string]bool{}
	for _, p := range own {
		seen[p.k.Value] = true
	}
	out := own
	for _, p := range merged {
		if !seen[p.k.Value] {
			seen[p.k.Value] = true
			out = append(out, p)
		}
	}
	return out
}

// mapping walks the keys of a mapping node, reporting duplicate and unknown
// keys, expanding YAML merge keys, and calling fn for each known key.
func (d *decoder) mapping(n *yaml.Node, what string, known []string, fn func(key string, k, v *yaml.Node)) bool {
	n = d.resolve(n)
	if n == nil {
		return false
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s must be a mapping; found %s", what, describe(n))
		return false
	}
	seen := map[string]*yaml.Node{}
	for _, p := range d.pairs(n, what) {
		k := p.k
		if prev, ok := seen[k.Value]; ok {
			d.errorf(k, "key %q is set twice in %s (first at line %d)", k.Value, what, prev.Line)
			continue
		}
		seen[k.Value] = k
		if !contains(known, k.Value) {
			d.errorf(k, "unknown key %q in %s%s", k.Value, what, suggest(k.Value, known))
			continue
		}
		fn(k.Value, k, p.v)
	}
	return true
}

// entries walks a mapping whose keys are user-chosen names.
func (d *decoder) entries(n *yaml.Node, what string, fn func(name string, k, v *yaml.Node)) {
	n = d.resolve(n)
	if n == nil {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s must be a mapping of names; found %s", what, describe(n))
		return
	}
	seen := map[string]int{}
	for _, p := range d.pairs(n, what) {
		k := p.k
		if line, ok := seen[k.Value]; ok {
			d.errorf(k, "%q is declared twice in %s (first at line %d)", k.Value, what, line)
			continue
		}
		seen[k.Value] = k.Line
		fn(k.Value, k, p.v)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest returns a "did you mean" hint, or else the allowed keys.
func suggest(got string, known []string) string {
	if hint := Suggest(got, known); hint != "" || len(known) == 0 {
		return hint
	}
	return " (allowed: " + strings.Join(known, ", ") + ")"
}

// Suggest returns a "did you mean" hint for got among known, or "".
func Suggest(got string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if dist := levenshtein(got, k); dist < bestD {
			best, bestD = k, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func levenshtein(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// scalar returns a resolved scalar node or reports what was found instead.
func (d *decoder) scalar(n *yaml.Node, what, want string) (*yaml.Node, bool) {
	n = d.resolve(n)
	if n == nil {
		return nil, false
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.errorf(n, "%s must be %s; found %s", what, want, describe(n))
		return nil, false
	}
	return n, true
}

// str accepts string scalars, and numbers written without quotes (dbname: 12).
func (d *decoder) str(n *yaml.Node, what string) (string, bool) {
	s, ok := d.scalar(n, what, "a string")
	if !ok {
		return "", false
	}
	if s.Tag == "!!bool" {
		d.errorf(s, "%s must be a string; found %s (quote it if you mean the text)", what, describe(s))
		return "", false
	}
	return s.Value, true
}

func (d *decoder) int(n *yaml.Node, what string) (int64, bool) {
	s, ok := d.scalar(n, what, "an integer")
	if !ok {
		return 0, false
	}
	if s.Tag != "!!int" {
		d.errorf(s, "%s must be an integer; found %s", what, describe(s))
		return 0, false
	}
	v, err := strconv.ParseInt(strings.ReplaceAll(s.Value, "_", ""), 0, 64)
	if err != nil {
		d.errorf(s, "%s: %q is not an integer that fits in 64 bits", what, s.Value)
		return 0, false
	}
	return v, true
}

func (d *decoder) bool(n *yaml.Node, what string) (bool, bool) {
	s, ok := d.scalar(n, what, "true or false")
	if !ok {
		return false, false
	}
	if s.Tag != "!!bool" {
		d.errorf(s, "%s must be true or false; found %s", what, describe(s))
		return false, false
	}
	return strings.EqualFold(s.Value, "true"), true
}

func (d *decoder) duration(n *yaml.Node, what string) (time.Duration, bool) {
	s, ok := d.scalar(n, what, "a duration such as 30s or 10m")
	if !ok {
		return 0, false
	}
	v, err := time.ParseDuration(s.Value)
	if err != nil || s.Tag != "!!str" {
		d.errorf(s, "%s must be a duration such as 30s or 10m; found %s", what, describe(s))
		return 0, false
	}
	if v < 0 {
		d.errorf(s, "%s must not be negative", what)
		return 0, false
	}
	return v, true
}

func (d *decoder) strList(n *yaml.Node, what string) ([]string, bool) {
	n = d.resolve(n)
	if n == nil {
		return nil, false
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, "%s must be a list of strings; found %s", what, describe(n))
		return nil, false
	}
	out := make([]string, 0, len(n.Content))
	ok := true
	for i, item := range n.Content {
		s, good := d.str(item, fmt.Sprintf("%s[%d]", what, i))
		ok = ok && good
		out = append(out, s)
	}
	return out, ok
}

func (d *decoder) params(n *yaml.Node) {
	d.entries(n, "params", func(name string, k, v *yaml.Node) {
		if !idPattern.MatchString(name) {
			d.errorf(k, "param name %q must match [a-z][a-z0-9_]* (it is used in CEL as params.%s)", name, name)
		}
		p := &Param{Name: name, Pos: posOf(k), Type: String}
		var def *yaml.Node
		d.mapping(v, "param "+name, []string{"type", "enum", "required", "default", "description"}, func(key string, kn, vn *yaml.Node) {
			switch key {
			case "type":
				if s, ok := d.str(vn, "type"); ok {
					if t, ok := ParamTypes[s]; ok {
						p.Type = t
					} else {
						d.errorf(vn, "param type %q is not one of string, int, bool, duration, list%s", s, Suggest(s, []string{"string", "int", "bool", "duration", "list"}))
					}
				}
			case "enum":
				p.Enum, _ = d.strList(vn, "enum")
			case "required":
				p.Required, _ = d.bool(vn, "required")
			case "default":
				def = vn
			case "description":
				p.Description, _ = d.str(vn, "description")
			}
		})
		if len(p.Enum) > 0 && p.Type != String {
			d.errorf(v, "enum is only allowed on string params")
		}
		if def != nil {
			if p.Required {
				d.errorf(def, "param %s is required, so a default would never be used", name)
			}
			if r := d.resolve(def); r != nil {
				text := r.Value
				if r.Kind == yaml.SequenceNode && p.Type == StringList {
					items, _ := d.strList(r, "default")
					p.Default = items
				} else if r.Kind != yaml.ScalarNode {
					d.errorf(r, "default of param %s must be a %s; found %s", name, p.Type, describe(r))
				} else if val, err := p.Convert(text); err != nil {
					d.errorf(r, "default of param %s: %v", name, err)
				} else {
					p.Default = val
				}
			}
		}
		d.plan_.Params = append(d.plan_.Params, p)
	})
}

func (d *decoder) secretsSection(n *yaml.Node) {
	d.entries(n, "secrets", func(name string, k, v *yaml.Node) {
		if !idPattern.MatchString(name) {
			d.errorf(k, "secret name %q must match [a-z][a-z0-9_]*", name)
		}
		s := &Secret{Name: name, Pos: posOf(k)}
		var fromNode *yaml.Node
		set := map[string]*yaml.Node{}
		d.mapping(v, "secret "+name, []string{"from", "name", "path", "argv"}, func(key string, kn, vn *yaml.Node) {
			set[key] = kn
			switch key {
			case "from":
				fromNode = vn
				s.From, _ = d.str(vn, "from")
			case "name":
				s.Env, _ = d.str(vn, "name")
			case "path":
				s.Path, _ = d.str(vn, "path")
			case "argv":
				s.Argv, _ = d.strList(vn, "argv")
			}
		})
		d.secrets[name] = true
		need := map[string]string{"env": "name", "file": "path", "command": "argv"}
		switch {
		case fromNode == nil:
			d.errorf(v, "secret %s needs from: env, file or command", name)
		case need[s.From] == "":
			d.errorf(fromNode, "secret %s: from must be env, file or command; found %q%s", name, s.From, Suggest(s.From, []string{"env", "file", "command"}))
		default:
			want := need[s.From]
			if set[want] == nil {
				d.errorf(v, "secret %s (from: %s) needs %s", name, s.From, want)
			}
			for key, kn := range set {
				if key != "from" && key != want {
					d.errorf(kn, "secret %s (from: %s) does not use %s", name, s.From, key)
				}
			}
			if s.From == "env" && s.Env != "" && !envPattern.MatchString(s.Env) {
				d.errorf(set["name"], "secret %s: %q is not an environment variable name", name, s.Env)
			}
			if s.From == "command" && set["argv"] != nil && len(s.Argv) == 0 {
				d.errorf(set["argv"], "secret %s: argv is empty", name)
			}
		}
		d.plan_.Secrets = append(d.plan_.Secrets, s)
	})
}

// secretRef decodes {secret: name} and checks that the secret is declared.
func (d *decoder) secretRef(n *yaml.Node, what string) (string, bool) {
	r := d.resolve(n)
	if r == nil {
		return "", false
	}
	if r.Kind != yaml.MappingNode {
		d.errorf(r, "%s must come from a secret: write {secret: name}; found %s", what, describe(r))
		return "", false
	}
	name := ""
	d.mapping(r, what, []string{"secret"}, func(key string, kn, vn *yaml.Node) {
		name, _ = d.str(vn, "secret")
		if name != "" && !d.secrets[name] {
			d.errorf(vn, "%s refers to undefined secret %q%s", what, name, Suggest(name, keys(d.secrets)))
		}
	})
	if name == "" {
		d.errorf(r, "%s: {secret: name} names no secret", what)
		return "", false
	}
	return name, true
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (d *decoder) targetsSection(n *yaml.Node) {
	d.entries(n, "targets", func(name string, k, v *yaml.Node) {
		if !idPattern.MatchString(name) {
			d.errorf(k, "target name %q must match [a-z][a-z0-9_]* (it is used in CEL as targets.%s)", name, name)
		}
		t := &Target{Name: name, Pos: posOf(k)}
		set := map[string]*yaml.Node{}
		what := "target " + name
		d.mapping(v, what, []string{"url", "host", "port", "dbname", "user", "password", "env_prefix", "sslmode", "sslrootcert", "sslcert", "sslkey"}, func(key string, kn, vn *yaml.Node) {
			set[key] = kn
			switch key {
			case "url":
				t.URL, _ = d.secretRef(vn, what+" url")
			case "password":
				t.Password, _ = d.secretRef(vn, what+" password")
			case "host":
				t.Host, _ = d.str(vn, "host")
			case "port":
				if p, ok := d.int(vn, "port"); ok {
					if p < 1 || p > 65535 {
						d.errorf(vn, "port %d is not between 1 and 65535", p)
					}
					t.Port = int(p)
				}
			case "dbname":
				t.DBName, _ = d.str(vn, "dbname")
			case "user":
				t.User, _ = d.str(vn, "user")
			case "env_prefix":
				if s, ok := d.str(vn, "env_prefix"); ok {
					if !envPattern.MatchString(s) {
						d.errorf(vn, "env_prefix %q is not the start of an environment variable name", s)
					}
					t.EnvPrefix = s
				}
			case "sslmode":
				if s, ok := d.str(vn, "sslmode"); ok {
					if !contains(SSLModes, s) {
						d.errorf(vn, "sslmode %q is not one of %s%s", s, strings.Join(SSLModes, ", "), Suggest(s, SSLModes))
					}
					t.SSLMode = s
				}
			case "sslrootcert":
				t.SSLRootCert, _ = d.str(vn, "sslrootcert")
			case "sslcert":
				t.SSLCert, _ = d.str(vn, "sslcert")
			case "sslkey":
				t.SSLKey, _ = d.str(vn, "sslkey")
			}
		})
		d.targets[name] = true
		parts := []string{}
		for _, key := range []string{"host", "port", "dbname", "user", "password"} {
			if set[key] != nil {
				parts = append(parts, key)
			}
		}
		ways := 0
		for _, on := range []bool{set["url"] != nil, len(parts) > 0, set["env_prefix"] != nil} {
			if on {
				ways++
			}
		}
		switch {
		case ways == 0:
			d.errorf(v, "target %s needs url: {secret: …}, connection parts (host, dbname, user, password) or env_prefix", name)
		case ways > 1:
			var used []string
			if set["url"] != nil {
				used = append(used, "url")
			}
			if len(parts) > 0 {
				used = append(used, "parts ("+strings.Join(parts, ", ")+")")
			}
			if set["env_prefix"] != nil {
				used = append(used, "env_prefix")
			}
			d.errorf(v, "target %s mixes %s; use one way", name, strings.Join(used, " and "))
		}
		if (set["sslcert"] == nil) != (set["sslkey"] == nil) {
			d.errorf(v, "target %s: sslcert and sslkey go together", name)
		}
		d.plan_.Targets = append(d.plan_.Targets, t)
	})
}

func (d *decoder) defaults(n *yaml.Node) {
	d.mapping(n, "defaults", []string{"timeout", "retry"}, func(key string, k, v *yaml.Node) {
		switch key {
		case "timeout":
			d.plan_.Defaults.Timeout, _ = d.duration(v, "defaults.timeout")
		case "retry":
			if r := d.retry(v); r != nil {
				d.plan_.Defaults.Retry = *r
			}
		}
	})
}

func (d *decoder) retry(n *yaml.Node) *Retry {
	r := &Retry{Attempts: 1, Backoff: time.Second, MaxBackoff: 30 * time.Second}
	ok := d.mapping(n, "retry", []string{"attempts", "backoff", "max_backoff"}, func(key string, k, v *yaml.Node) {
		switch key {
		case "attempts":
			if a, ok := d.int(v, "attempts"); ok {
				if a < 1 || a > 100 {
					d.errorf(v, "retry attempts must be between 1 and 100 (it counts the first attempt)")
				}
				r.Attempts = int(a)
			}
		case "backoff":
			r.Backoff, _ = d.duration(v, "backoff")
		case "max_backoff":
			r.MaxBackoff, _ = d.duration(v, "max_backoff")
		}
	})
	if !ok {
		return nil
	}
	return r
}

func (d *decoder) stepList(n *yaml.Node, section Section, parent *Step) []*Step {
	n = d.resolve(n)
	if n == nil {
		return nil
	}
	what := string(section)
	if parent != nil {
		what = "rollback of " + parent.Label()
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, "%s must be a list of steps; found %s", what, describe(n))
		return nil
	}
	out := make([]*Step, 0, len(n.Content))
	for i, item := range n.Content {
		if d.aborted {
			break
		}
		if s := d.step(item, section, i, parent); s != nil {
			out = append(out, s)
		}
	}
	return out
}

func (d *decoder) step(n *yaml.Node, section Section, index int, parent *Step) *Step {
	s := &Step{Section: section, Index: index, Parent: parent, Pos: posOf(n)}
	known := []string{"id", "name", "description", "type", "when", "with", "assert", "timeout", "retry", "commit", "idempotent", "rollback"}
	nodes := map[string]*yaml.Node{}
	keysAt := map[string]*yaml.Node{}
	if !d.mapping(n, "step", known, func(key string, k, v *yaml.Node) { nodes[key] = v; keysAt[key] = k }) {
		return nil
	}
	if v := nodes["id"]; v != nil {
		if id, ok := d.str(v, "id"); ok {
			switch {
			case !idPattern.MatchString(id):
				d.errorf(v, "step id %q must match [a-z][a-z0-9_]* so that CEL can name it (steps.%s)", id, strings.ReplaceAll(id, "-", "_"))
			case celReserved[id]:
				d.errorf(v, "step id %q is a reserved word in expressions; choose another", id)
			default:
				if prev, dup := d.ids[id]; dup {
					d.errorf(v, "step id %q is already used at line %d", id, prev.Line)
				} else {
					d.ids[id] = posOf(v)
				}
			}
			s.ID = id
		}
	} else if section == SectionSteps {
		d.errorf(n, "step needs an id")
	}
	if v := nodes["name"]; v != nil {
		s.Name, _ = d.str(v, "name")
	}
	if v := nodes["description"]; v != nil {
		s.Description, _ = d.str(v, "description")
	}
	var fields []Field
	known2 := false
	if v := nodes["type"]; v == nil {
		d.errorf(n, "step %s needs a type", s.Label())
	} else if t, ok := d.str(v, "type"); ok {
		s.Type = t
		fields, known2 = d.types.StepInputs(t)
		if !known2 {
			d.errorf(v, "unknown step type %q%s; run `cutover steps` for the list", t, Suggest(t, d.types.StepTypeNames()))
		}
	}
	if v := nodes["when"]; v != nil {
		s.When = d.exprScalar(v, "when")
	}
	if v := nodes["assert"]; v != nil {
		r := d.resolve(v)
		switch {
		case r == nil:
		case r.Kind == yaml.SequenceNode:
			for i, item := range r.Content {
				if e := d.exprScalar(item, fmt.Sprintf("assert[%d]", i)); e != nil {
					s.Assert = append(s.Assert, e)
				}
			}
		case r.Kind == yaml.ScalarNode:
			if e := d.exprScalar(r, "assert[0]"); e != nil {
				s.Assert = append(s.Assert, e)
			}
		default:
			d.errorf(r, "assert must be a list of expressions; found %s", describe(r))
		}
	}
	if v := nodes["timeout"]; v != nil {
		s.Timeout, _ = d.duration(v, "timeout")
	}
	if v := nodes["retry"]; v != nil {
		s.Retry = d.retry(v)
	}
	if v := nodes["commit"]; v != nil {
		s.Commit, _ = d.bool(v, "commit")
		if section != SectionSteps {
			d.errorf(keysAt["commit"], "commit: only steps in the main steps list can be a commit point")
		}
	}
	if v := nodes["idempotent"]; v != nil {
		s.Idempotent, _ = d.bool(v, "idempotent")
		if section != SectionSteps {
			d.errorf(keysAt["idempotent"], "idempotent: only a step in the main steps list can be retried by resume")
		}
	}
	if v := nodes["rollback"]; v != nil {
		if section != SectionSteps {
			d.errorf(keysAt["rollback"], "a %s step cannot have its own rollback block", section)
		} else {
			s.Rollback = d.stepList(v, SectionRollback, s)
		}
	}
	if known2 {
		s.With = d.inputs(nodes["with"], n, fields, s)
	}
	return s
}

// exprScalar turns a scalar into an expression positioned in the file.
func (d *decoder) exprScalar(n *yaml.Node, role string) *Expr {
	r, ok := d.scalar(n, role, "an expression")
	if !ok {
		return nil
	}
	src := r.Value
	if strings.TrimSpace(src) == "" {
		d.errorf(r, "%s is empty", role)
		return nil
	}
	return &Expr{Src: src, Role: role, File: d.file, pos: &scalarPos{src: d.src, node: r, value: []rune(src)}}
}

// inputs decodes a step's `with` mapping against its type's fields.
func (d *decoder) inputs(n, stepNode *yaml.Node, fields []Field, s *Step) Inputs {
	in := Inputs{}
	names := make([]string, len(fields))
	byName := map[string]Field{}
	for i, f := range fields {
		names[i] = f.Name
		byName[f.Name] = f
	}
	at := stepNode
	present := map[string]bool{}
	if n != nil {
		at = n
		d.mapping(n, "with of "+s.Type, names, func(key string, k, v *yaml.Node) {
			present[key] = true
			if val := d.value(v, byName[key], "with."+key); val != nil {
				in[key] = val
			}
		})
	}
	for _, f := range fields {
		if f.Required && !present[f.Name] {
			d.errorf(at, "step %s (%s) needs with.%s: %s", s.Label(), s.Type, f.Name, f.Doc)
		}
	}
	return in
}

// value decodes one input value according to its field declaration.
func (d *decoder) value(n *yaml.Node, f Field, role string) *Value {
	r := d.resolve(n)
	if r == nil {
		return nil
	}
	v := &Value{Kind: f.Kind, Pos: posOf(r)}
	switch f.Kind {
	case String, Dyn:
		if r.Kind == yaml.MappingNode && f.Secret {
			name, ok := d.secretRef(r, role)
			if !ok {
				return nil
			}
			v.Secret = name
			return v
		}
		s, ok := d.str(r, role)
		if !ok {
			return nil
		}
		return d.stringValue(v, r, s, f, role)
	case StringList:
		if r.Kind != yaml.SequenceNode {
			d.errorf(r, "%s must be a list of strings; found %s", role, describe(r))
			return nil
		}
		item := f
		item.Kind = String
		for i, c := range r.Content {
			if iv := d.value(c, item, fmt.Sprintf("%s[%d]", role, i)); iv != nil {
				v.List = append(v.List, iv)
			}
		}
		return v
	case IntList:
		if r.Kind == yaml.ScalarNode && r.Tag == "!!int" {
			// One integer is a list of one: expect_exit: 0, expect_status: 200.
			x, ok := d.int(r, role)
			if !ok {
				return nil
			}
			v.List = []*Value{{Kind: Int, Pos: posOf(r), Int: x}}
			return v
		}
		if r.Kind != yaml.SequenceNode {
			d.errorf(r, "%s must be a list of integers; found %s", role, describe(r))
			return nil
		}
		for i, c := range r.Content {
			if x, ok := d.int(c, fmt.Sprintf("%s[%d]", role, i)); ok {
				v.List = append(v.List, &Value{Kind: Int, Pos: posOf(c), Int: x})
			}
		}
		return v
	case StringMap:
		item := f
		item.Kind = String
		item.Enum = nil
		d.entries(r, role, func(name string, k, vn *yaml.Node) {
			if iv := d.value(vn, item, role+"."+name); iv != nil {
				v.Map = append(v.Map, MapEntry{Key: name, Pos: posOf(k), Val: iv})
			}
		})
		return v
	}
	// Scalars of other kinds: either the literal or a single ${{ }}.
	if r.Kind == yaml.ScalarNode && r.Tag == "!!str" && strings.Contains(r.Value, "${{") && !f.Literal {
		t := d.template(r, r.Value, role)
		if t == nil {
			return nil
		}
		if t.Single() == nil {
			d.errorf(r, "%s is a %s; a template here must be exactly one ${{ expression }}", role, f.Kind)
			return nil
		}
		v.Tmpl = t
		return v
	}
	var ok bool
	switch f.Kind {
	case Int:
		v.Int, ok = d.int(r, role)
	case Bool:
		v.Bool, ok = d.bool(r, role)
	case Duration:
		v.Dur, ok = d.duration(r, role)
	case Double:
		var s *yaml.Node
		if s, ok = d.scalar(r, role, "a number"); ok {
			var err error
			if v.Double, err = strconv.ParseFloat(s.Value, 64); err != nil || (s.Tag != "!!float" && s.Tag != "!!int") {
				d.errorf(s, "%s must be a number; found %s", role, describe(s))
				ok = false
			}
		}
	default:
		d.errorf(r, "%s: unsupported input kind %s", role, f.Kind)
	}
	if !ok {
		return nil
	}
	return v
}

func (d *decoder) stringValue(v *Value, r *yaml.Node, s string, f Field, role string) *Value {
	if f.Literal || f.Ref != RefNone {
		v.Tmpl = &Template{Raw: s, Parts: []TemplatePart{{Lit: s}}}
	} else {
		v.Tmpl = d.template(r, s, role)
		if v.Tmpl == nil {
			return nil
		}
	}
	if !v.Tmpl.IsLiteral() {
		return v
	}
	switch f.Ref {
	case RefTarget:
		if !d.targets[s] {
			d.errorf(r, "%s refers to undefined target %q%s", role, s, Suggest(s, keys(d.targets)))
		}
	case RefSecret:
		if !d.secrets[s] {
			d.errorf(r, "%s refers to undefined secret %q%s", role, s, Suggest(s, keys(d.secrets)))
		}
	}
	if len(f.Enum) > 0 && !contains(f.Enum, s) {
		d.errorf(r, "%s is %q; want one of %s%s", role, s, strings.Join(f.Enum, ", "), Suggest(s, f.Enum))
	}
	return v
}

// template splits a string into literal text and ${{ expr }} parts.
func (d *decoder) template(r *yaml.Node, s, role string) *Template {
	t := &Template{Raw: s}
	if !strings.Contains(s, "${{") {
		t.Parts = []TemplatePart{{Lit: s}}
		return t
	}
	sp := &scalarPos{src: d.src, node: r, value: []rune(s)}
	runes := []rune(s)
	i, lit := 0, []rune{}
	for i < len(runes) {
		if i+2 < len(runes) && runes[i] == '$' && runes[i+1] == '{' && runes[i+2] == '{' {
			start := i + 3
			end := closeTemplate(runes, start)
			if end < 0 {
				d.errAt(sp.at(i), "%s: ${{ is not closed by }}", role)
				return nil
			}
			if len(lit) > 0 {
				t.Parts = append(t.Parts, TemplatePart{Lit: string(lit)})
				lit = lit[:0]
			}
			src := string(runes[start:end])
			if strings.TrimSpace(src) == "" {
				d.errAt(sp.at(i), "%s: empty ${{ }}", role)
				return nil
			}
			t.Parts = append(t.Parts, TemplatePart{Expr: &Expr{Src: src, Role: role, File: d.file, pos: sp, off: start}})
			i = end + 2
			continue
		}
		lit = append(lit, runes[i])
		i++
	}
	if len(lit) > 0 {
		t.Parts = append(t.Parts, TemplatePart{Lit: string(lit)})
	}
	return t
}

// closeTemplate finds the "}}" that ends a template, skipping quoted strings.
func closeTemplate(r []rune, i int) int {
	var quote rune
	for ; i+1 < len(r); i++ {
		c := r[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '}' && r[i+1] == '}':
			return i
		}
	}
	return -1
}
