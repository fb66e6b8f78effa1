package steps_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgcutover/cutover/steps"
)

// approvalCall builds the Call an approval step receives, with approve as
// the run's way to ask.
func approvalCall(t *testing.T, with map[string]any, approve steps.ApproveFunc) (*steps.Call, *bytes.Buffer) {
	t.Helper()
	typ, ok := steps.Lookup("approval")
	if !ok {
		t.Fatal("no step type approval")
	}
	out := &bytes.Buffer{}
	return &steps.Call{
		StepID:  "gate",
		Args:    steps.Args{Values: with, Fields: typ.Inputs},
		Out:     out,
		Approve: approve,
	}, out
}

// answer is a fake ApproveFunc that answers at once and keeps the requests.
type answer struct {
	approval steps.Approval
	err      error
	reqs     []steps.ApprovalRequest
}

func (a *answer) approve(ctx context.Context, req steps.ApprovalRequest) (steps.Approval, error) {
	a.reqs = append(a.reqs, req)
	return a.approval, a.err
}

// blocking is a fake ApproveFunc that waits for ctx, as a terminal nobody
// answers does.
func blocking(ctx context.Context, req steps.ApprovalRequest) (steps.Approval, error) {
	<-ctx.Done()
	return steps.Approval{}, ctx.Err()
}

func runApproval(t *testing.T, ctx context.Context, c *steps.Call) (steps.Outputs, error) {
	t.Helper()
	typ, _ := steps.Lookup("approval")
	return typ.Impl.Run(ctx, c)
}

func TestApprovalApproved(t *testing.T) {
	for _, how := range []string{steps.ApprovedByFlag, steps.ApprovedByPrompt} {
		t.Run(how, func(t *testing.T) {
			a := &answer{approval: steps.Approval{Approved: true, Approver: "alice", How: how}}
			c, _ := approvalCall(t, map[string]any{"message": "  Switch production?\n"}, a.approve)
			before := time.Now().UTC()
			out, err := runApproval(t, context.Background(), c)
			if err != nil {
				t.Fatalf("approved step failed: %v", err)
			}
			if out["approver"] != "alice" || out["how"] != how {
				t.Errorf("outputs = %v", out)
			}
			at, ok := out["approved_at"].(time.Time)
			if !ok || at.Before(before) || at.After(time.Now().UTC()) || at.Location() != time.UTC {
				t.Errorf("approved_at = %#v, want a UTC time.Time during the call", out["approved_at"])
			}
			if len(a.reqs) != 1 {
				t.Fatalf("Approve called %d times", len(a.reqs))
			}
			if r := a.reqs[0]; r.StepID != "gate" || r.Message != "Switch production?" || r.DryRun || r.Approvers != nil {
				t.Errorf("request = %+v", r)
			}
		})
	}
}

func TestApprovalRefused(t *testing.T) {
	a := &answer{approval: steps.Approval{Approver: "alice", How: steps.ApprovedByPrompt}}
	c, _ := approvalCall(t, map[string]any{"message": "Switch?"}, a.approve)
	out, err := runApproval(t, context.Background(), c)
	if err == nil || err.Error() != "refused by alice" {
		t.Fatalf("err = %v, want refused by alice", err)
	}
	if !steps.IsPermanent(err) {
		t.Error("a refusal is not permanent: retry would ask again")
	}
	if out["approver"] != "alice" || out["how"] != "prompt" {
		t.Errorf("outputs = %v: who refused must be journaled", out)
	}
	if _, ok := out["approved_at"]; ok {
		t.Error("a refusal has an approved_at")
	}
}

func TestApprovalTimeout(t *testing.T) {
	c, _ := approvalCall(t, map[string]any{"message": "Switch?"}, blocking)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	out, err := runApproval(t, ctx, c)
	if err == nil || err.Error() != "timed out waiting for approval: no answer within 150ms" {
		t.Fatalf("err = %v", err)
	}
	if !steps.IsPermanent(err) {
		t.Error("a timeout is not permanent")
	}
	if out != nil {
		t.Errorf("outputs = %v", out)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestApprovalAnswerAfterDeadlineDoesNotCount(t *testing.T) {
	late := func(ctx context.Context, req steps.ApprovalRequest) (steps.Approval, error) {
		<-ctx.Done()
		return steps.Approval{Approved: true, Approver: "alice", How: steps.ApprovedByPrompt}, nil
	}
	c, _ := approvalCall(t, map[string]any{"message": "Switch?"}, late)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := runApproval(t, ctx, c); err == nil || !strings.Contains(err.Error(), "no answer within") {
		t.Fatalf("err = %v, want a timeout", err)
	}
}

func TestApprovalInterrupted(t *testing.T) {
	c, _ := approvalCall(t, map[string]any{"message": "Switch?"}, blocking)
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(20*time.Millisecond, func() { cancel(errors.New("interrupt received")) })
	_, err := runApproval(t, ctx, c)
	if err == nil || err.Error() != "interrupted (interrupt received) while waiting for approval" {
		t.Fatalf("err = %v", err)
	}

	ctx, plain := context.WithCancel(context.Background())
	plain()
	if _, err := runApproval(t, ctx, c); err == nil || err.Error() != "interrupted while waiting for approval" {
		t.Fatalf("err = %v", err)
	}
}

func TestApprovalApprovers(t *testing.T) {
	cases := []struct {
		name      string
		approvers []string
		approver  string
		want      string // error; empty for success
	}{
		{"listed", []string{"alice", "bob"}, "bob", ""},
		{"not listed", []string{"alice", "bob"}, "mallory", "mallory is not one of the approvers of gate: alice, bob"},
		{"case matters", []string{"alice"}, "Alice", "Alice is not one of the approvers of gate: alice"},
		{"set but empty", []string{" ", ""}, "alice", "approvers is set but empty: nobody may approve"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := &answer{approval: steps.Approval{Approved: true, Approver: tc.approver, How: steps.ApprovedByFlag}}
			c, _ := approvalCall(t, map[string]any{"message": "Switch?", "approvers": tc.approvers}, a.approve)
			_, err := runApproval(t, context.Background(), c)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("err = %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("err = %v, want %q", err, tc.want)
			case tc.want != "" && !steps.IsPermanent(err):
				t.Errorf("%v is not permanent", err)
			}
			if tc.name == "listed" && (len(a.reqs) != 1 || strings.Join(a.reqs[0].Approvers, ",") != "alice,bob") {
				t.Errorf("the request does not carry the approvers: %+v", a.reqs)
			}
			if tc.name == "set but empty" && len(a.reqs) != 0 {
				t.Error("asked although nobody may approve")
			}
		})
	}
}

func TestApprovalNeedsAWayToAsk(t *testing.T) {
	c, _ := approvalCall(t, map[string]any{"message": "Switch?"}, nil)
	_, err := runApproval(t, context.Background(), c)
	if err == nil || err.Error() != "approval needs --approve or a terminal" || !steps.IsPermanent(err) {
		t.Fatalf("err = %v", err)
	}
	c, _ = approvalCall(t, map[string]any{"message": " "}, (&answer{}).approve)
	if _, err := runApproval(t, context.Background(), c); err == nil || !strings.Contains(err.Error(), "message is empty") {
		t.Fatalf("empty message: err = %v", err)
	}
	// The Approve func's own error (no terminal) is the step's.
	noTTY := errors.New("approval gate needs --approve gate (no terminal to ask on)")
	c, _ = approvalCall(t, map[string]any{"message": "Switch?"}, (&answer{err: steps.Permanent(noTTY)}).approve)
	if _, err := runApproval(t, context.Background(), c); !errors.Is(err, noTTY) || !steps.IsPermanent(err) {
		t.Fatalf("err = %v", err)
	}
}

func TestApprovalDryRunNeverAsks(t *testing.T) {
	typ, _ := steps.Lookup("approval")
	if !typ.Mutates(nil) {
		t.Fatal("approval is not mutating: a dry run would really run it and call it succeeded")
	}
	dr, ok := typ.Impl.(steps.DryRunner)
	if !ok {
		t.Fatal("approval has no dry-run variant")
	}
	cases := []struct {
		name     string
		approval steps.Approval
		nilFunc  bool
		with     map[string]any
		want     string // the line written to Out
		err      string
	}{
		{name: "pre-approved", approval: steps.Approval{Approved: true, Approver: "alice", How: steps.ApprovedByFlag},
			want: "would not ask for approval: Switch? (pre-approved with --approve gate, approver alice)\n"},
		{name: "terminal", approval: steps.Approval{Approver: "alice", How: steps.ApprovedByPrompt},
			want: "would ask for approval: Switch? (on the terminal, answering as alice)\n"},
		{name: "no terminal", approval: steps.Approval{Approver: "alice"},
			want: "would ask for approval: Switch? (but there is no terminal to ask on: a real run needs --approve gate)\n"},
		{name: "no func", nilFunc: true,
			want: "would ask for approval: Switch? (but this run has no way to ask: approval needs --approve or a terminal)\n"},
		{name: "approver not listed", approval: steps.Approval{Approved: true, Approver: "mallory", How: steps.ApprovedByFlag},
			with: map[string]any{"message": "Switch?", "approvers": []string{"alice"}},
			err:  "mallory is not one of the approvers of gate: alice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := &answer{approval: tc.approval}
			fn := steps.ApproveFunc(a.approve)
			if tc.nilFunc {
				fn = nil
			}
			with := tc.with
			if with == nil {
				with = map[string]any{"message": "Switch?"}
			}
			c, out := approvalCall(t, with, fn)
			c.DryRun = true
			o, ran, err := dr.DryRun(context.Background(), c)
			if !ran {
				t.Error("ran = false: the dry run would not say what it would ask")
			}
			if o != nil {
				t.Errorf("outputs = %v; a dry run must leave them unknown", o)
			}
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Errorf("Out = %q\nwant  %q", out.String(), tc.want)
			}
			for _, r := range a.reqs {
				if !r.DryRun {
					t.Errorf("a dry run sent a real request: %+v", r)
				}
			}
			// Run with DryRun set (never reached through the engine) does
			// not ask either.
			a.reqs = nil
			if _, err := typ.Impl.Run(context.Background(), c); err != nil {
				t.Fatal(err)
			}
			for _, r := range a.reqs {
				if !r.DryRun {
					t.Errorf("Run in a dry run sent a real request: %+v", r)
				}
			}
		})
	}
}
