package engine

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"

	"github.com/pgcutover/cutover/schema"
)

// activation holds every variable by its qualified name
// (steps.tls.outputs.verified). A variable that is absent is unknown.
type activation struct {
	vars   map[string]any
	parent *activation
}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	for ; a != nil; a = a.parent {
		if v, ok := a.vars[name]; ok {
			return v, true
		}
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

func (a *activation) has(name string) bool { _, ok := a.ResolveName(name); return ok }

// result of an evaluation: a value, or unknown (dry run: decided at run
// time), or an error.
type result struct {
	val     ref.Val
	unknown bool
	missing []string // variables that were unknown
}

// eval evaluates x. In a dry run, variables that are not in the activation
// (outputs of steps that did not run) are unknown and the result may be
// unknown; in a real run they are an error that says which step did not run.
func (r *runner) eval(ctx context.Context, x *Expr, act *activation) (result, error) {
	var missing []string
	for _, v := range x.vars {
		if !act.has(v) {
			missing = append(missing, v)
		}
	}
	var in any = act
	if len(missing) > 0 {
		// Evaluated partially in real runs too: `a || b` is decided when b
		// is true although a reads a step that was skipped. Only an answer
		// that still depends on the missing values is an error.
		patterns := make([]*cel.AttributePatternType, len(missing))
		for i, m := range missing {
			patterns[i] = cel.AttributePattern(m)
		}
		pa, err := cel.PartialVars(act, patterns...)
		if err != nil {
			return result{}, err
		}
		in = pa
	}
	val, _, err := x.prg.ContextEval(ctx, in)
	if err != nil {
		return result{}, fmt.Errorf("evaluating `%s`: %v", strings.TrimSpace(x.Decl.Src), err)
	}
	if types.IsUnknown(val) {
		if !r.opts.DryRun {
			return result{}, fmt.Errorf("%s is not available: %s", missing[0], r.whyMissing(missing[0]))
		}
		return result{val: val, unknown: true, missing: missing}, nil
	}
	return result{val: val, missing: missing}, nil
}

// whyMissing explains why a variable has no value in a real run.
func (r *runner) whyMissing(name string) string {
	parts := strings.SplitN(name, ".", 4)
	if len(parts) >= 2 && parts[0] == "steps" {
		st := r.status[parts[1]]
		if st == "" {
			st = StepNotRun
		}
		return fmt.Sprintf("step %s has status %s, so it has no outputs (guard with steps.%s.status == 'succeeded')", parts[1], st, parts[1])
	}
	return "it has no value in this run"
}

// evalBool evaluates a guard or an assert into a Check.
func (r *runner) evalBool(ctx context.Context, x *Expr, act *activation, withValues bool) Check {
	c := Check{Expr: strings.TrimSpace(x.Decl.Src), Line: x.Decl.Pos().Line}
	res, err := r.eval(ctx, x, act)
	switch {
	case err != nil:
		c.Result, c.Error = "error", r.mask.String(err.Error())
	case res.unknown:
		c.Result = "unknown"
	default:
		b, ok := res.val.Value().(bool)
		if !ok {
			c.Result, c.Error = "error", fmt.Sprintf("`%s` produced %v, not a bool", c.Expr, res.val.Type())
		} else if b {
			c.Result = "true"
		} else {
			c.Result = "false"
		}
	}
	if withValues && (c.Result == "false" || c.Result == "error") {
		c.Values = map[string]any{}
		for _, v := range x.vars {
			if val, ok := act.ResolveName(v); ok {
				c.Values[v] = r.maskValue(val)
			}
		}
	}
	return c
}

// errUnknown says an input depends on something decided at run time.
type errUnknown struct{ what string }

func (e errUnknown) Error() string { return e.what + " is decided at run time" }

// resolve turns a decoded input value into the Go value a step receives.
func (r *runner) resolve(ctx context.Context, v *schema.Value, act *activation) (any, error) {
	if v.Secret != "" {
		return r.secret(v.Secret)
	}
	if v.Tmpl != nil && !v.Tmpl.IsLiteral() && v.Kind != schema.String && v.Kind != schema.Dyn {
		res, err := r.eval(ctx, r.prog.exprs[v.Tmpl.Single()], act)
		if err != nil {
			return nil, err
		}
		if res.unknown {
			return nil, errUnknown{"${{ " + strings.TrimSpace(v.Tmpl.Single().Src) + " }}"}
		}
		return convert(res.val, v.Kind)
	}
	switch v.Kind {
	case schema.String, schema.Dyn:
		return r.render(ctx, v.Tmpl, act)
	case schema.Int:
		return v.Int, nil
	case schema.Bool:
		return v.Bool, nil
	case schema.Duration:
		return v.Dur, nil
	case schema.Double:
		return v.Double, nil
	case schema.StringList:
		out := make([]string, 0, len(v.List))
		for _, item := range v.List {
			s, err := r.resolve(ctx, item, act)
			if err != nil {
				return nil, err
			}
			out = append(out, s.(string))
		}
		return out, nil
	case schema.IntList:
		out := make([]int64, 0, len(v.List))
		for _, item := range v.List {
			out = append(out, item.Int)
		}
		return out, nil
	case schema.StringMap:
		out := make(map[string]string, len(v.Map))
		for _, e := range v.Map {
			s, err := r.resolve(ctx, e.Val, act)
			if err != nil {
				return nil, err
			}
			out[e.Key] = s.(string)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported input kind %s", v.Kind)
}

// render evaluates a string template.
func (r *runner) render(ctx context.Context, t *schema.Template, act *activation) (string, error) {
	if t.IsLiteral() {
		return t.Raw, nil
	}
	var b strings.Builder
	for _, p := range t.Parts {
		if p.Expr == nil {
			b.WriteString(p.Lit)
			continue
		}
		res, err := r.eval(ctx, r.prog.exprs[p.Expr], act)
		if err != nil {
			return "", err
		}
		if res.unknown {
			return "", errUnknown{"${{ " + strings.TrimSpace(p.Expr.Src) + " }}"}
		}
		b.WriteString(toString(res.val))
	}
	return b.String(), nil
}

func toString(v ref.Val) string {
	switch x := v.Value().(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case time.Duration:
		return x.String()
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v.Value())
}

func convert(v ref.Val, k schema.Kind) (any, error) {
	switch k {
	case schema.Int:
		if i, ok := v.Value().(int64); ok {
			return i, nil
		}
	case schema.Bool:
		if b, ok := v.Value().(bool); ok {
			return b, nil
		}
	case schema.Duration:
		switch d := v.Value().(type) {
		case time.Duration:
			return d, nil
		case string:
			return time.ParseDuration(d)
		}
	case schema.Double:
		switch d := v.Value().(type) {
		case float64:
			return d, nil
		case int64:
			return float64(d), nil
		}
	}
	return nil, fmt.Errorf("expression produced %v, want %s", v.Type(), k)
}

// targetVars are what expressions see of each target: never the password.
func (r *runner) targetVars(vars map[string]any) {
	for _, d := range r.prog.Plan.Targets {
		t, _ := r.targets.Get(d.Name)
		pre := "targets." + d.Name + "."
		vars[pre+"host"], vars[pre+"port"], vars[pre+"dbname"], vars[pre+"user"], vars[pre+"sslmode"] = t.Host, int64(t.Port), t.DBName, t.User, t.SSLMode
	}
}
