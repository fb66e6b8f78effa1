// Package engine compiles a decoded plan (CEL environment, type-checked
// expressions, step types) and runs it: guards, retries, asserts, the
// rollback saga, the commit point, finally, the honest dry run and the
// journal.
package engine

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"

	"github.com/pgcutover/cutover/schema"
	"github.com/pgcutover/cutover/steps"
)

// costLimit bounds the work one expression evaluation may do.
const costLimit = 1_000_000

// Program is a plan whose every expression has been compiled and
// type-checked. Nothing is compiled while it runs.
type Program struct {
	Plan    *schema.Plan
	Steps   []*Step
	Finally []*Step
	byID    map[string]*Step
	exprs   map[*schema.Expr]*Expr
}

// Step is one compiled step.
type Step struct {
	Decl     *schema.Step
	Type     *steps.Type
	Mutates  bool
	When     *Expr
	Asserts  []*Expr
	Rollback []*Step
	Index    int // position in the main steps (or finally) list
}

// Label names the step in messages.
func (s *Step) Label() string { return s.Decl.Label() }

// Expr is a compiled, type-checked expression.
type Expr struct {
	Decl *schema.Expr
	prg  cel.Program
	// vars are the qualified variables the expression reads, sorted, used
	// to name unknowns in a dry run and to show the values an assert saw.
	vars []string
}

// Compile decodes nothing: it takes a decoded plan, builds the plan's CEL
// environment and compiles and type-checks every expression, returning
// every problem found, positioned in the plan file.
func Compile(p *schema.Plan) (*Program, schema.Diagnostics) {
	c := &compiler{plan: p, prog: &Program{Plan: p, byID: map[string]*Step{}, exprs: map[*schema.Expr]*Expr{}}, assertEnvs: map[string]*cel.Env{}, cache: map[string]*compiled{}}
	c.build()
	ds := c.diags.Sort()
	if len(ds) > 0 {
		return nil, ds
	}
	return c.prog, nil
}

// Load reads, decodes and compiles a plan file.
// When decoding finds problems, the expressions of what could be decoded are
// still compiled, so that one run reports every problem.
func Load(file string) (*Program, schema.Diagnostics) {
	p, ds := schema.Load(file, steps.Types)
	if len(ds) == 0 {
		return Compile(p)
	}
	if p != nil {
		_, more := Compile(p)
		ds = schema.Cap(append(ds, more...).Sort())
	}
	return nil, ds
}

type compiler struct {
	plan       *schema.Plan
	prog       *Program
	env        *cel.Env
	assertEnvs map[string]*cel.Env
	diags      schema.Diagnostics
	params     map[string]schema.Kind
	targets    map[string]bool
	order      map[string]int // main step id -> index
	cache      map[string]*compiled
	others     map[string]string // ids of rollback and finally steps -> section
}

// targetFields are what expressions may read of a target; never the password.
var targetFields = map[string]*cel.Type{
	"host": cel.StringType, "port": cel.IntType, "dbname": cel.StringType, "user": cel.StringType, "sslmode": cel.StringType,
}

var runFields = map[string]*cel.Type{
	"id": cel.StringType, "dry_run": cel.BoolType, "started_at": cel.TimestampType, "status": cel.StringType,
}

var planFields = map[string]*cel.Type{"name": cel.StringType, "version": cel.IntType}

// CELType maps a declared kind to its CEL type.
func CELType(k schema.Kind) *cel.Type {
	switch k {
	case schema.String:
		return cel.StringType
	case schema.Int:
		return cel.IntType
	case schema.Bool:
		return cel.BoolType
	case schema.Double:
		return cel.DoubleType
	case schema.Duration:
		return cel.DurationType
	case schema.Timestamp:
		return cel.TimestampType
	case schema.StringList:
		return cel.ListType(cel.StringType)
	case schema.IntList:
		return cel.ListType(cel.IntType)
	case schema.StringMap:
		return cel.MapType(cel.StringType, cel.StringType)
	case schema.Rows:
		return cel.ListType(cel.MapType(cel.StringType, cel.DynType))
	}
	return cel.DynType
}

func (c *compiler) errAt(e *schema.Expr, off int, format string, args ...any) {
	if off == 0 {
		off = len([]rune(e.Src)) - len([]rune(strings.TrimLeft(e.Src, " \t\n\r")))
	}
	p := e.PosAt(off)
	c.diags = append(c.diags, schema.Diagnostic{File: c.plan.File, Pos: p, Msg: fmt.Sprintf(format, args...), Snippet: e.Snippet(p)})
}

func (c *compiler) errStep(s *schema.Step, format string, args ...any) {
	c.diags = append(c.diags, schema.Diagnostic{File: c.plan.File, Pos: s.Pos, Msg: fmt.Sprintf(format, args...), Snippet: schema.Snippet(c.plan.Source, s.Pos)})
}

func (c *compiler) build() {
	p := c.plan
	c.params, c.targets, c.order = map[string]schema.Kind{}, map[string]bool{}, map[string]int{}
	var decls []cel.EnvOption
	for _, prm := range p.Params {
		c.params[prm.Name] = prm.Type
		decls = append(decls, cel.Variable("params."+prm.Name, CELType(prm.Type)))
	}
	for _, t := range p.Targets {
		c.targets[t.Name] = true
		for f, ty := range targetFields {
			decls = append(decls, cel.Variable("targets."+t.Name+"."+f, ty))
		}
	}
	for f, ty := range runFields {
		decls = append(decls, cel.Variable("run."+f, ty))
	}
	for f, ty := range planFields {
		decls = append(decls, cel.Variable("plan."+f, ty))
	}
	c.others = map[string]string{}
	for _, s := range p.Steps {
		for _, r := range s.Rollback {
			if r.ID != "" {
				c.others[r.ID] = "rollback"
			}
		}
	}
	for _, s := range p.Finally {
		if s.ID != "" {
			c.others[s.ID] = "finally"
		}
	}
	for i, s := range p.Steps {
		if s.ID == "" {
			continue
		}
		c.order[s.ID] = i
		decls = append(decls, cel.Variable("steps."+s.ID+".status", cel.StringType))
		if t, ok := steps.Lookup(s.Type); ok {
			for _, o := range t.Outputs {
				decls = append(decls, cel.Variable("steps."+s.ID+".outputs."+o.Name, CELType(o.Kind)))
			}
		}
	}
	decls = append(decls, ext.Strings(), cel.HomogeneousAggregateLiterals(), cel.EagerlyValidateDeclarations(true))
	env, err := cel.NewEnv(decls...)
	if err != nil {
		c.diags = append(c.diags, schema.Diagnostic{File: p.File, Pos: schema.Pos{Line: 1, Col: 1}, Msg: "building the expression environment: " + err.Error()})
		return
	}
	c.env = env
	for i, s := range p.Steps {
		cs := c.step(s, i, i)
		c.prog.Steps = append(c.prog.Steps, cs)
		if s.ID != "" {
			c.prog.byID[s.ID] = cs
		}
	}
	for i, s := range p.Finally {
		c.prog.Finally = append(c.prog.Finally, c.step(s, i, len(p.Steps)))
	}
}

// step compiles one step; visible is the number of main steps whose
// outputs its expressions may read.
func (c *compiler) step(s *schema.Step, index, visible int) *Step {
	t, _ := steps.Lookup(s.Type)
	cs := &Step{Decl: s, Type: t, Index: index}
	if t == nil {
		return cs
	}
	cs.Mutates = t.Mutates(s.With)
	scope := scope{visible: visible, self: s}
	if s.Section == schema.SectionRollback {
		scope.visible = c.order[s.Parent.ID] + 1
	}
	if s.When != nil {
		cs.When = c.compile(s.When, scope, cel.BoolType, "when")
	}
	if len(s.Assert) > 0 {
		as := scope
		as.assert = t
		if s.Section == schema.SectionSteps {
			as.visible = index + 1
		}
		for _, a := range s.Assert {
			if e := c.compile(a, as, cel.BoolType, "assert"); e != nil {
				cs.Asserts = append(cs.Asserts, e)
			}
		}
	}
	if t.Name == "assert" && len(s.Assert) == 0 {
		c.errStep(s, "step %s is an assert step with no assert expressions", s.Label())
	}
	c.inputs(s.With, t.Inputs, scope)
	for _, r := range s.Rollback {
		cs.Rollback = append(cs.Rollback, c.step(r, r.Index, index+1))
	}
	return cs
}

func (c *compiler) inputs(in schema.Inputs, fields []schema.Field, sc scope) {
	for _, f := range fields {
		if v := in[f.Name]; v != nil {
			c.value(v, f.Kind, sc)
		}
	}
}

func (c *compiler) value(v *schema.Value, k schema.Kind, sc scope) {
	for _, item := range v.List {
		c.value(item, item.Kind, sc)
	}
	for _, e := range v.Map {
		c.value(e.Val, e.Val.Kind, sc)
	}
	if v.Tmpl == nil {
		return
	}
	for _, part := range v.Tmpl.Parts {
		if part.Expr == nil {
			continue
		}
		var want *cel.Type
		switch k {
		case schema.Int:
			want = cel.IntType
		case schema.Bool:
			want = cel.BoolType
		case schema.Duration:
			want = cel.DurationType
		case schema.Double:
			want = cel.DoubleType
		}
		c.compile(part.Expr, sc, want, "template")
	}
}

// scope is what an expression may see.
type scope struct {
	visible int          // main steps [0, visible) are readable
	self    *schema.Step // the step the expression belongs to
	assert  *steps.Type  // set in assert: outputs.* and rows of this type
}

// compile parses, checks references, type-checks and plans one expression.
// want is nil for templates (any scalar).
func (c *compiler) compile(e *schema.Expr, sc scope, want *cel.Type, role string) *Expr {
	env, envName := c.env, ""
	if sc.assert != nil {
		env, envName = c.assertEnv(sc.assert), sc.assert.Name
		if env == nil {
			return nil
		}
	}
	key := envName + "\x00" + e.Src
	ce, cached := c.cache[key]
	if !cached {
		ce = c.parseCheck(env, e)
		c.cache[key] = ce
	}
	if ce.parseIss != nil {
		c.celErrors(e, ce.parseIss)
		return nil
	}
	if !c.checkRefs(e, ce.refs, sc) {
		return nil
	}
	if ce.checkIss != nil {
		c.celErrors(e, ce.checkIss)
		return nil
	}
	out := ce.checked.OutputType()
	switch {
	case want != nil:
		if !out.IsAssignableType(want) && out.Kind() != types.DynKind {
			what := "a " + want.String() + " expression"
			if role == "when" {
				what = "a bool expression (true runs the step)"
			}
			c.errAt(e, 0, "%s must be %s; `%s` is %s", e.Role, what, strings.TrimSpace(e.Src), out)
			return nil
		}
	default:
		switch out.Kind() {
		case types.StringKind, types.IntKind, types.UintKind, types.DoubleKind, types.BoolKind,
			types.DurationKind, types.TimestampKind, types.DynKind:
		default:
			c.errAt(e, 0, "${{ %s }} in %s is %s; a template must produce a string, number, bool, duration or timestamp", strings.TrimSpace(e.Src), e.Role, out)
			return nil
		}
	}
	if ce.prg == nil {
		prg, err := env.Program(ce.checked, cel.EvalOptions(cel.OptPartialEval), cel.CostLimit(costLimit), cel.InterruptCheckFrequency(100))
		if err != nil {
			c.errAt(e, 0, "%s: %v", e.Role, err)
			return nil
		}
		ce.prg = prg
	}
	prg, refs := ce.prg, ce.refs
	x := &Expr{Decl: e, prg: prg}
	seen := map[string]bool{}
	for _, r := range refs {
		if name := r.varName(); name != "" && !seen[name] {
			seen[name] = true
			x.vars = append(x.vars, name)
		}
	}
	sort.Strings(x.vars)
	c.prog.exprs[e] = x
	return x
}

// compiled is the shared result of parsing and checking one expression
// text in one environment: plans repeat expressions (outputs.exit_code == 0)
// and the parser is the costliest part of validation.
type compiled struct {
	parseIss *cel.Issues
	checkIss *cel.Issues
	refs     []varRef
	checked  *cel.Ast
	prg      cel.Program
}

func (c *compiler) parseCheck(env *cel.Env, e *schema.Expr) *compiled {
	ce := &compiled{}
	parsed, iss := env.Parse(e.Src)
	if iss != nil && iss.Err() != nil {
		ce.parseIss = iss
		return ce
	}
	ce.refs = collectRefs(parsed.NativeRep())
	checked, iss := env.Check(parsed)
	if iss != nil && iss.Err() != nil {
		ce.checkIss = iss
		return ce
	}
	ce.checked = checked
	return ce
}

func (c *compiler) assertEnv(t *steps.Type) *cel.Env {
	if env, ok := c.assertEnvs[t.Name]; ok {
		return env
	}
	var decls []cel.EnvOption
	for _, o := range t.Outputs {
		decls = append(decls, cel.Variable("outputs."+o.Name, CELType(o.Kind)))
		if o.Name == "rows" {
			decls = append(decls, cel.Variable("rows", CELType(o.Kind)))
		}
	}
	env, err := c.env.Extend(decls...)
	if err != nil {
		c.diags = append(c.diags, schema.Diagnostic{File: c.plan.File, Pos: schema.Pos{Line: 1, Col: 1}, Msg: "building the assert environment for " + t.Name + ": " + err.Error()})
		return nil
	}
	c.assertEnvs[t.Name] = env
	return env
}

func (c *compiler) celErrors(e *schema.Expr, iss *cel.Issues) {
	errs := iss.Errors()
	if len(errs) > 0 && strings.HasPrefix(errs[0].Message, "Syntax error") {
		errs = errs[:1] // the parser's later complaints are cascades of the first
	}
	for _, er := range errs {
		off := runeOffset(e.Src, er.Location.Line(), er.Location.Column())
		msg := strings.ReplaceAll(humanCEL(er.Message, e.Src), "\n", `\n`)
		c.errAt(e, off, "%s: %s", e.Role, msg)
	}
}

// runeOffset turns a CEL location (1-based line, 0-based column in code
// points) into a code point offset.
func runeOffset(src string, line, col int) int {
	off, l := 0, 1
	for _, r := range src {
		if l >= line {
			break
		}
		off++
		if r == '\n' {
			l++
		}
	}
	return off + col
}

// varRef is one dotted name an expression reads, such as
// steps.tls.outputs.verified, with the code point offset of each part.
type varRef struct {
	parts []string
	offs  []int
}

// varName is the declared variable the reference resolves to, or "".
func (r varRef) varName() string {
	n := len(r.parts)
	switch r.parts[0] {
	case "steps":
		if n >= 3 && r.parts[2] == "status" {
			return strings.Join(r.parts[:3], ".")
		}
		if n >= 4 && r.parts[2] == "outputs" {
			return strings.Join(r.parts[:4], ".")
		}
	case "targets":
		if n >= 3 {
			return strings.Join(r.parts[:3], ".")
		}
	case "params", "run", "plan", "outputs":
		if n >= 2 {
			return strings.Join(r.parts[:2], ".")
		}
	case "rows":
		return "rows"
	}
	return ""
}

// collectRefs finds every select chain rooted at an identifier.
func collectRefs(a *celast.AST) []varRef {
	info := a.SourceInfo()
	off := func(id int64) int {
		if r, ok := info.GetOffsetRange(id); ok {
			return int(r.Start)
		}
		return 0
	}
	var out []varRef
	// A leading dot (.steps.x) names the same root-scoped variable.
	root := func(name string) string { return strings.TrimPrefix(name, ".") }
	var walk func(e celast.Expr, bound map[string]bool)
	walk = func(e celast.Expr, bound map[string]bool) {
		switch e.Kind() {
		case celast.IdentKind:
			if !bound[e.AsIdent()] {
				out = append(out, varRef{parts: []string{root(e.AsIdent())}, offs: []int{off(e.ID())}})
			}
		case celast.SelectKind:
			// Flatten a.b.c; if the chain is rooted at an identifier, record it.
			var parts []string
			var offs []int
			cur := e
			for cur.Kind() == celast.SelectKind {
				sel := cur.AsSelect()
				parts = append([]string{sel.FieldName()}, parts...)
				offs = append([]int{off(cur.ID()) + 1}, offs...)
				cur = sel.Operand()
			}
			if cur.Kind() == celast.IdentKind && !bound[cur.AsIdent()] {
				out = append(out, varRef{parts: append([]string{root(cur.AsIdent())}, parts...), offs: append([]int{off(cur.ID())}, offs...)})
				return
			}
			walk(cur, bound)
		case celast.CallKind:
			call := e.AsCall()
			if call.IsMemberFunction() {
				walk(call.Target(), bound)
			}
			for _, a := range call.Args() {
				walk(a, bound)
			}
		case celast.ListKind:
			for _, el := range e.AsList().Elements() {
				walk(el, bound)
			}
		case celast.MapKind:
			for _, en := range e.AsMap().Entries() {
				me := en.AsMapEntry()
				walk(me.Key(), bound)
				walk(me.Value(), bound)
			}
		case celast.StructKind:
			for _, f := range e.AsStruct().Fields() {
				walk(f.AsStructField().Value(), bound)
			}
		case celast.ComprehensionKind:
			comp := e.AsComprehension()
			walk(comp.IterRange(), bound)
			inner := map[string]bool{comp.IterVar(): true, comp.AccuVar(): true}
			if comp.HasIterVar2() {
				inner[comp.IterVar2()] = true
			}
			for k := range bound {
				inner[k] = true
			}
			walk(comp.AccuInit(), bound)
			walk(comp.LoopCondition(), inner)
			walk(comp.LoopStep(), inner)
			walk(comp.Result(), inner)
		}
	}
	walk(a.Expr(), map[string]bool{})
	return out
}

// checkRefs explains, better than the type checker can, a reference to a
// step, param, target or field that is not there or not visible here.
func (c *compiler) checkRefs(e *schema.Expr, refs []varRef, sc scope) bool {
	ok := true
	bad := func(r varRef, i int, format string, args ...any) {
		if i >= len(r.offs) {
			i = len(r.offs) - 1
		}
		c.errAt(e, r.offs[i], "%s: %s", e.Role, fmt.Sprintf(format, args...))
		ok = false
	}
	for _, r := range refs {
		p := r.parts
		switch p[0] {
		case "steps":
			if len(p) < 2 {
				bad(r, 0, "name a step: steps.<id>.status or steps.<id>.outputs.<name>")
				continue
			}
			id := p[1]
			idx, exists := c.order[id]
			if !exists {
				if where, ok := c.others[id]; ok {
					bad(r, 1, "step %s is a %s step; expressions can only read steps of the main steps list", id, where)
				} else {
					bad(r, 1, "no step has id %q%s", id, schema.Suggest(id, c.visibleIDs(len(c.plan.Steps))))
				}
				continue
			}
			target := c.plan.Steps[idx]
			if idx >= sc.visible {
				switch {
				case target == sc.self:
					bad(r, 1, "step %s cannot read its own results here; only its assert and rollback can", id)
				default:
					bad(r, 1, "step %s runs later (line %d); an expression can only read steps that ran before it", id, target.Pos.Line)
				}
				continue
			}
			if len(p) < 3 || (p[2] != "status" && p[2] != "outputs") {
				i := 2
				if len(p) < 3 {
					i = 1
				}
				bad(r, i, "steps.%s has status and outputs.<name>", id)
				continue
			}
			if p[2] == "status" {
				continue
			}
			t, _ := steps.Lookup(target.Type)
			if t == nil {
				ok = false
				continue
			}
			if len(p) < 4 {
				bad(r, 2, "name an output: steps.%s.outputs.<name> (%s declares: %s)", id, t.Name, listOr(t.OutputNames()))
				continue
			}
			if _, has := t.Output(p[3]); !has {
				bad(r, 3, "step %s (%s) has no output %q%s; it declares: %s", id, t.Name, p[3], schema.Suggest(p[3], t.OutputNames()), listOr(t.OutputNames()))
			}
		case "params":
			if len(p) < 2 {
				bad(r, 0, "name a param: params.<name>")
			} else if _, has := c.params[p[1]]; !has {
				bad(r, 1, "no param %q is declared%s", p[1], schema.Suggest(p[1], sortedKeys(c.params)))
			}
		case "targets":
			switch {
			case len(p) < 3:
				bad(r, 0, "name a target field: targets.<name>.host (host, port, dbname, user, sslmode)")
			case !c.targets[p[1]]:
				bad(r, 1, "no target %q is declared%s", p[1], schema.Suggest(p[1], sortedKeys(c.targets)))
			case p[2] == "password":
				bad(r, 2, "expressions never see a target's password")
			case targetFields[p[2]] == nil:
				bad(r, 2, "a target has no field %q (host, port, dbname, user, sslmode)%s", p[2], schema.Suggest(p[2], sortedKeys(targetFields)))
			}
		case "run":
			if len(p) < 2 || runFields[p[1]] == nil {
				bad(r, min(1, len(p)-1), "run has id, dry_run, started_at and status")
			}
		case "plan":
			if len(p) < 2 || planFields[p[1]] == nil {
				bad(r, min(1, len(p)-1), "plan has name and version")
			}
		case "secrets":
			bad(r, 0, "expressions cannot read secrets; pass a secret to a secret-capable input as {secret: name}")
		case "outputs", "rows":
			if sc.assert == nil {
				bad(r, 0, "%s is only available in assert; elsewhere use steps.<id>.outputs.<name>", p[0])
				continue
			}
			if p[0] == "outputs" {
				if len(p) < 2 {
					bad(r, 0, "name an output: outputs.<name>")
				} else if _, has := sc.assert.Output(p[1]); !has {
					bad(r, 1, "%s has no output %q%s; it declares: %s", sc.assert.Name, p[1], schema.Suggest(p[1], sc.assert.OutputNames()), listOr(sc.assert.OutputNames()))
				}
			} else if _, has := sc.assert.Output("rows"); !has {
				bad(r, 0, "%s returns no rows", sc.assert.Name)
			}
		}
	}
	return ok
}

func (c *compiler) visibleIDs(n int) []string {
	var out []string
	for _, s := range c.plan.Steps[:n] {
		if s.ID != "" {
			out = append(out, s.ID)
		}
	}
	return out
}

func listOr(names []string) string {
	if len(names) == 0 {
		return "nothing"
	}
	return strings.Join(names, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var (
	celOverload = regexp.MustCompile(`^found no matching overload for '(_[^']*_|[^']*)' applied to '\((.*)\)'$`)
	celOperator = map[string]string{
		"_==_": "==", "_!=_": "!=", "_<_": "<", "_<=_": "<=", "_>_": ">", "_>=_": ">=",
		"_+_": "+", "_-_": "-", "_*_": "*", "_/_": "/", "_%_": "%", "_&&_": "&&", "_||_": "||",
		"!_": "!", "-_": "unary -", "@in": "in", "_[_]": "[]", "_?_:_": "?:",
	}
	singleEquals = regexp.MustCompile(`(^|[^=!<>])=([^=]|$)`)
)

// humanCEL rewrites the CEL checker's and parser's wording where it speaks
// of internals (operator overloads) and adds a hint for common slips.
func humanCEL(msg, src string) string {
	msg = strings.ReplaceAll(msg, " (in container '')", "")
	if m := celOverload.FindStringSubmatch(msg); m != nil {
		op, ok := celOperator[m[1]]
		if !ok {
			return fmt.Sprintf("%s cannot take arguments of types (%s)", strings.Trim(m[1], "_"), m[2])
		}
		return fmt.Sprintf("%s cannot be applied to (%s): the types must match; convert with int(), string() or double()", op, m[2])
	}
	if strings.HasPrefix(msg, "Syntax error") && singleEquals.MatchString(src) {
		msg += " (to compare, write ==)"
	}
	return msg
}
