// Package steps defines the contract every step type fulfils and holds the
// registry of step types. One declaration per type (inputs, outputs, whether
// it mutates, its dry-run behaviour and docs) feeds decoding, the JSON
// Schema, the generated docs and the CEL type checker.
package steps

import (
	"context"
	"errors"
	"io"
	"sort"
	"time"

	"github.com/pgcutover/cutover/schema"
)

// Type declares one step type.
type Type struct {
	Name    string
	Summary string // one line
	Doc     string // paragraphs for the generated docs
	Inputs  []schema.Field
	Outputs []schema.Output
	// Mutates reports whether a step of this type, with these inputs, may
	// change anything. Only literal inputs are visible here. Mutating steps
	// do not run in a dry run and get an fsynced intent record.
	Mutates func(in schema.Inputs) bool
	// DryRun says, for the docs, what a dry run does with the step.
	DryRun string
	// Example is a YAML snippet for the docs.
	Example string
	// AnnouncesEffect says that the step calls Call.Announce before any
	// effect: a step left in doubt by a crash that had not announced yet
	// changed nothing, and its rollback is not run.
	AnnouncesEffect bool
	Impl            Step
}

// Step runs a step of one type.
type Step interface {
	Run(ctx context.Context, c *Call) (Outputs, error)
}

// DryRunner is implemented by mutating step types that have a read-only
// variant to run instead in a dry run (run-command's dry_run_argv). ran is
// false when this step has no variant configured.
type DryRunner interface {
	DryRun(ctx context.Context, c *Call) (out Outputs, ran bool, err error)
}

// Outputs are a step's results, by declared output name, as CEL-compatible
// Go values (string, int64, bool, float64, time.Duration, time.Time,
// []string, []int64, []map[string]any).
type Outputs map[string]any

// Call is everything one execution of a step receives.
type Call struct {
	StepID string
	Args   Args
	DryRun bool
	// Out receives live output (a child process's stdout and stderr), already
	// masked. Never nil.
	Out io.Writer
	// Mask masks secret values in text that leaves the step (output tails).
	Mask func(string) string
	// MaskWriter wraps w so that secrets are masked as bytes stream through.
	// The returned flush func must be called when writing is done.
	MaskWriter func(w io.Writer) (io.Writer, func() error)
	// Started, when not nil, is told the pid of a child process the step
	// started, for the journal.
	Started func(pid int)
	// Announce, when not nil, durably journals outputs a step knows before
	// it changes anything (switch-config's backup path), so that a run
	// resumed after a crash can still roll the step back. A type that calls
	// it declares AnnouncesEffect.
	Announce func(out Outputs) error
	// Targets are the run's PostgreSQL targets and their shared connections.
	Targets *Targets
	// Secret reads a declared secret. Only steps that check secrets
	// (verify-secret) use it; values must never leave the step unmasked.
	Secret func(name string) (Secret, error)
	// Approve answers approval steps: from --approve, or by asking on the
	// operator's terminal. Nil when the run has no way to ask.
	Approve ApproveFunc
}

// Secret is a read secret and where it came from.
type Secret struct {
	Name   string
	Value  string
	From   string // env, file or command
	Source string // the variable, path or program
}

// Args are a step's resolved inputs: templates evaluated, secrets read.
// Missing inputs yield the field's declared default.
type Args struct {
	Values map[string]any
	Fields []schema.Field
}

func (a Args) get(name string) any {
	if v, ok := a.Values[name]; ok {
		return v
	}
	for _, f := range a.Fields {
		if f.Name == name {
			return f.Default
		}
	}
	return nil
}

// Has reports whether the plan set the input.
func (a Args) Has(name string) bool { _, ok := a.Values[name]; return ok }

// String returns a string input.
func (a Args) String(name string) string { s, _ := a.get(name).(string); return s }

// Int returns an integer input.
func (a Args) Int(name string) int64 {
	switch v := a.get(name).(type) {
	case int64:
		return v
	case int:
		return int64(v)
	}
	return 0
}

// Bool returns a boolean input.
func (a Args) Bool(name string) bool { b, _ := a.get(name).(bool); return b }

// Duration returns a duration input.
func (a Args) Duration(name string) time.Duration { d, _ := a.get(name).(time.Duration); return d }

// Strings returns a list-of-strings input.
func (a Args) Strings(name string) []string { s, _ := a.get(name).([]string); return s }

// Ints returns a list-of-integers input.
func (a Args) Ints(name string) []int64 {
	switch v := a.get(name).(type) {
	case []int64:
		return v
	case []int:
		out := make([]int64, len(v))
		for i, x := range v {
			out[i] = int64(x)
		}
		return out
	}
	return nil
}

// Map returns a map input.
func (a Args) Map(name string) map[string]string { m, _ := a.get(name).(map[string]string); return m }

// permanent marks an error that retrying cannot fix.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as one that a retry cannot fix (a wrong CA, a bad
// password, a missing binary): the engine fails the step at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

var registry = map[string]*Type{}

// Register adds a step type; it panics on a duplicate name, at init time.
func Register(t *Type) {
	if _, dup := registry[t.Name]; dup {
		panic("steps: duplicate step type " + t.Name)
	}
	if t.Mutates == nil {
		t.Mutates = func(schema.Inputs) bool { return false }
	}
	registry[t.Name] = t
}

// Lookup returns the step type with the given name.
func Lookup(name string) (*Type, bool) { t, ok := registry[name]; return t, ok }

// All returns every registered step type, sorted by name.
func All() []*Type {
	out := make([]*Type, 0, len(registry))
	for _, t := range registry {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Output returns the declared output with that name.
func (t *Type) Output(name string) (schema.Output, bool) {
	for _, o := range t.Outputs {
		if o.Name == name {
			return o, true
		}
	}
	return schema.Output{}, false
}

// OutputNames lists the declared outputs.
func (t *Type) OutputNames() []string {
	out := make([]string, len(t.Outputs))
	for i, o := range t.Outputs {
		out[i] = o.Name
	}
	return out
}

// Types is the registry seen through schema.StepTypes, for decoding.
var Types schema.StepTypes = registryTypes{}

type registryTypes struct{}

func (registryTypes) StepInputs(name string) ([]schema.Field, bool) {
	t, ok := registry[name]
	if !ok {
		return nil, false
	}
	return t.Inputs, true
}

func (registryTypes) StepTypeNames() []string {
	out := make([]string, 0, len(registry))
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
