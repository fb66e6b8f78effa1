package steps

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pgcutover/cutover/schema"
)

// How an approval was given: the values of the approval step's `how` output.
const (
	// ApprovedByFlag means the step was pre-approved with --approve ID.
	ApprovedByFlag = "flag"
	// ApprovedByPrompt means a person answered the question on the terminal.
	ApprovedByPrompt = "prompt"
)

// ApprovalRequest is what an approval step asks for.
type ApprovalRequest struct {
	StepID  string
	Message string
	// Approvers, when not empty, are the only names allowed to approve: a
	// prompt is not shown to anyone else.
	Approvers []string
	// DryRun asks only what would happen: whether the step is pre-approved
	// and under which name, or whether there is a terminal to ask on. It
	// never prompts and never waits.
	DryRun bool
}

// Approval is the answer to an ApprovalRequest.
type Approval struct {
	// Approved is true for --approve and for a "yes" on the terminal.
	Approved bool
	// Approver is the name journaled: --approver, or the operator.
	Approver string
	// How is ApprovedByFlag or ApprovedByPrompt: how the answer was (or, in
	// a dry run, would be) given; empty when there is no way to ask.
	How string
}

// ApproveFunc answers approval requests for a run. It returns when ctx ends
// (the step's timeout, an interruption) with ctx's error.
type ApproveFunc func(ctx context.Context, req ApprovalRequest) (Approval, error)

func init() {
	Register(&Type{
		Name:    "approval",
		Summary: "A manual gate: a person approves on the terminal, or the step is pre-approved with --approve ID; the approver is journaled.",
		Doc: "Stops the run until a person approves `message`. On a terminal (standard input and standard error both terminals) " +
			"the live progress line is cleared, the message is shown and the question `Approve step <id>? Type \"yes\" to approve, " +
			"anything else refuses:` is asked; `yes` approves, any other answer (or end of input) refuses and the step fails " +
			"with `refused by <approver>`. Without a terminal the step must be pre-approved with `cutover run PLAN --approve <id>` " +
			"(repeatable, one id each, never a wildcard); otherwise it fails at once: `approval <id> needs --approve <id> (no terminal to ask on)`. " +
			"`cutover run` refuses an `--approve` that names no approval step of the plan (exit 2, nothing runs).\n\n" +
			"The approver is `--approver NAME`, or the operator (the OS user) without it; with `approvers` set, only those names may " +
			"approve, and nobody else is asked. The step's `timeout` (the plan's `defaults`, or 10m) bounds the wait: no answer in " +
			"time fails the step (`no answer within <timeout>`), and Ctrl-C interrupts it like any step; either way the run rolls back. " +
			"A refusal, a timeout or a name not in `approvers` is final: `retry` does not ask again.\n\n" +
			"The step changes nothing, yet it is declared mutating, for the dry run's sake: a read-only step really runs in a dry " +
			"run and would end `succeeded`, claiming an approval nobody gave. As a mutating step it never asks in a dry run; its " +
			"dry-run variant says what a real run would do (ask on the terminal; not ask, because `--approve` pre-approves it; " +
			"or fail for want of a terminal), ends `dry-run`, and leaves its outputs unknown, so guards over them are decided at " +
			"run time. It fails the dry run only when the approver the command line names is not in `approvers`. " +
			"Being mutating also makes its start an fsynced intent record, so the journal shows the question was asked even if " +
			"the machine dies while it waits; such a run is in doubt there, as after any mutating step (`idempotent: true` on the " +
			"step lets a resume ask again).",
		Inputs: []schema.Field{
			{Name: "message", Kind: schema.String, Required: true, Doc: "what the approver is asked, shown above the question and journaled, e.g. Switch production to the new database?"},
			{Name: "approvers", Kind: schema.StringList, Doc: "names allowed to approve (compared with --approver, or the operator); unset means anyone"},
		},
		Outputs: []schema.Output{
			{Name: "approver", Kind: schema.String, Doc: "who approved (or refused): --approver, or the operator"},
			{Name: "approved_at", Kind: schema.Timestamp, Doc: "when the approval was given (when the step ran, for --approve)"},
			{Name: "how", Kind: schema.String, Doc: "flag (pre-approved with --approve) or prompt (answered on the terminal)"},
		},
		Mutates: func(schema.Inputs) bool { return true },
		DryRun: "never asks: says whether a real run would ask on the terminal or is pre-approved with --approve, " +
			"ends dry-run, and its outputs are unknown",
		Example: "- id: go_ahead\n  type: approval\n  timeout: 30m\n" +
			"  with: {message: \"Switch production to the new database?\", approvers: [alice, bob]}\n",
		Impl: approvalStep{},
	})
}

type approvalStep struct{}

// request builds the request from the step's inputs.
func (approvalStep) request(c *Call) (ApprovalRequest, error) {
	req := ApprovalRequest{StepID: c.StepID, Message: strings.TrimSpace(c.Args.String("message"))}
	if req.Message == "" {
		return req, Permanent(errors.New("message is empty: say what the approver is asked"))
	}
	if c.Args.Has("approvers") {
		for _, n := range c.Args.Strings("approvers") {
			if n = strings.TrimSpace(n); n != "" {
				req.Approvers = append(req.Approvers, n)
			}
		}
		if len(req.Approvers) == 0 {
			// An allow-list that came out empty (a param, say) admits
			// nobody rather than everybody.
			return req, Permanent(errors.New("approvers is set but empty: nobody may approve"))
		}
	}
	return req, nil
}

// allowed checks the approver against the allow-list.
func allowed(req ApprovalRequest, a Approval) error {
	if a.Approver == "" {
		return errors.New("the approval names no approver")
	}
	if len(req.Approvers) > 0 && !slices.Contains(req.Approvers, a.Approver) {
		return fmt.Errorf("%s is not one of the approvers of %s: %s", a.Approver, req.StepID, strings.Join(req.Approvers, ", "))
	}
	return nil
}

// DryRun says what a real run would do, without asking anyone.
func (s approvalStep) DryRun(ctx context.Context, c *Call) (Outputs, bool, error) {
	req, err := s.request(c)
	if err != nil {
		return nil, true, err
	}
	if c.Approve == nil {
		fmt.Fprintf(c.Out, "would ask for approval: %s (but this run has no way to ask: approval needs --approve or a terminal)\n", req.Message)
		return nil, true, nil
	}
	req.DryRun = true
	a, err := c.Approve(ctx, req)
	if err != nil {
		return nil, true, err
	}
	switch {
	case a.Approved:
		if err := allowed(req, a); err != nil {
			return nil, true, Permanent(err)
		}
		fmt.Fprintf(c.Out, "would not ask for approval: %s (pre-approved with --approve %s, approver %s)\n", req.Message, req.StepID, a.Approver)
	case a.How == ApprovedByPrompt:
		if err := allowed(req, a); err != nil {
			return nil, true, Permanent(err)
		}
		fmt.Fprintf(c.Out, "would ask for approval: %s (on the terminal, answering as %s)\n", req.Message, a.Approver)
	default:
		fmt.Fprintf(c.Out, "would ask for approval: %s (but there is no terminal to ask on: a real run needs --approve %s)\n", req.Message, req.StepID)
	}
	return nil, true, nil
}

// Run asks for the approval and waits for the answer.
func (s approvalStep) Run(ctx context.Context, c *Call) (Outputs, error) {
	if c.DryRun {
		// The engine runs DryRun for mutating steps; never prompt anyway.
		_, _, err := s.DryRun(ctx, c)
		return nil, err
	}
	req, err := s.request(c)
	if err != nil {
		return nil, err
	}
	if c.Approve == nil {
		return nil, Permanent(errors.New("approval needs --approve or a terminal"))
	}
	var wait time.Duration
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl).Round(time.Millisecond)
	}
	a, err := c.Approve(ctx, req)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err() // an answer that came as the wait ended does not count
	}
	if err != nil {
		switch {
		case ctx.Err() == nil:
			return nil, err
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return nil, Permanent(fmt.Errorf("timed out waiting for approval: no answer within %s", wait))
		}
		why := "interrupted"
		if cause := context.Cause(ctx); cause != nil && cause != context.Canceled {
			why += " (" + cause.Error() + ")"
		}
		return nil, Permanent(errors.New(why + " while waiting for approval"))
	}
	out := Outputs{"approver": a.Approver, "how": a.How}
	if err := allowed(req, a); err != nil {
		return out, Permanent(err)
	}
	if !a.Approved {
		return out, Permanent(fmt.Errorf("refused by %s", a.Approver))
	}
	if a.How != ApprovedByFlag && a.How != ApprovedByPrompt {
		return out, Permanent(fmt.Errorf("approval given in an unknown way %q", a.How))
	}
	out["approved_at"] = time.Now().UTC()
	return out, nil
}
