package steps

import (
	"context"

	"github.com/pgcutover/cutover/schema"
)

func init() {
	Register(&Type{
		Name:    "assert",
		Summary: "Check conditions over params and earlier steps' outputs; changes nothing.",
		Doc: "An assert step runs no action: its `assert` expressions are the whole step. " +
			"Use it to stop a plan early when a precondition is false, with a message that says why.",
		Inputs: []schema.Field{
			{Name: "message", Kind: schema.String, Doc: "shown when an assertion is false"},
		},
		DryRun:  "runs (it is read-only); expressions over outputs of steps that did not run are decided at run time",
		Example: "- id: prod_only\n  type: assert\n  with: {message: this plan only runs against production}\n  assert: [\"params.environment == 'production'\"]\n",
		Impl:    assertStep{},
	})
}

type assertStep struct{}

func (assertStep) Run(ctx context.Context, c *Call) (Outputs, error) { return Outputs{}, ctx.Err() }
