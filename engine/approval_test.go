package engine_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pgcutover/cutover/engine"
	"github.com/pgcutover/cutover/steps"
)

const approvalPlan = header + `
steps:
  - id: gate
    type: approval
    timeout: 5s
    with: {message: "Switch ${{ params.env }}?", approvers: [alice, bob]}
  - id: after
    type: assert
    assert: ["steps.gate.outputs.approver == 'alice'", "steps.gate.outputs.how == 'flag'"]
params:
  env: {type: string, default: production}
`

// runApprovalPlan runs prog with approve as the run's way to ask.
func runApprovalPlan(t *testing.T, prog *engine.Program, dry bool, approve steps.ApproveFunc) (*engine.Result, *recorder) {
	t.Helper()
	rec := &recorder{}
	res := engine.Run(context.Background(), prog, engine.Options{
		Params: map[string]any{"env": "production"}, DryRun: dry, JournalDir: t.TempDir(), Version: "test",
		Observe: rec.observe, Approve: approve,
	})
	return res, rec
}

// journalRecord returns the first journal line of the given type and step.
func journalRecord(t *testing.T, path, typ, step string) map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("journal line %q: %v", sc.Text(), err)
		}
		if m["type"] == typ && m["step"] == step {
			return m
		}
	}
	t.Fatalf("no %s record of %s in the journal", typ, step)
	return nil
}

func TestApprovalJournalsTheApprover(t *testing.T) {
	prog := compile(t, approvalPlan)
	var got []steps.ApprovalRequest
	approve := func(ctx context.Context, req steps.ApprovalRequest) (steps.Approval, error) {
		got = append(got, req)
		if _, ok := ctx.Deadline(); !ok {
			t.Error("the approval's wait is not bounded by the step's timeout")
		}
		return steps.Approval{Approved: true, Approver: "alice", How: steps.ApprovedByFlag}, nil
	}
	res, rec := runApprovalPlan(t, prog, false, approve)
	if res.Status != engine.StatusSucceeded {
		t.Fatalf("status %s: %v", res.Status, res.Err)
	}
	if len(got) != 1 || got[0].StepID != "gate" || got[0].Message != "Switch production?" || got[0].DryRun ||
		strings.Join(got[0].Approvers, ",") != "alice,bob" {
		t.Fatalf("requests = %+v", got)
	}
	end := journalRecord(t, res.Journal, engine.RecStepEnd, "gate")
	out, _ := end["outputs"].(map[string]any)
	if out["approver"] != "alice" || out["how"] != "flag" {
		t.Errorf("step.end outputs = %v", out)
	}
	at, _ := out["approved_at"].(string)
	if _, err := time.Parse(time.RFC3339Nano, at); err != nil {
		t.Errorf("approved_at %q is not a timestamp: %v", at, err)
	}
	start := journalRecord(t, res.Journal, engine.RecStepStart, "gate")
	if start["mutates"] != true {
		t.Errorf("step.start of the gate is not an intent record: %v", start)
	}
	in, _ := start["inputs"].(map[string]any)
	if in["message"] != "Switch production?" {
		t.Errorf("the journaled message is %v", in["message"])
	}
	equal(t, "ends", rec.ends(), []string{"main:gate=succeeded", "main:after=succeeded"})
}

func TestApprovalRefusedRollsBack(t *testing.T) {
	prog := compile(t, header+`
steps:
  - id: before
    type: assert
    assert: ["true"]
    rollback: [{type: assert, assert: ["true"]}]
  - id: gate
    type: approval
    retry: {attempts: 3, backoff: 1ms}
    with: {message: "Switch?"}
`)
	calls := 0
	res, rec := runApprovalPlan(t, prog, false, func(ctx context.Context, req steps.ApprovalRequest) (steps.Approval, error) {
		calls++
		return steps.Approval{Approver: "bob", How: steps.ApprovedByPrompt}, nil
	})
	if res.Status != engine.StatusRolledBack || res.Err == nil || !strings.Contains(res.Err.Error(), "step gate failed: refused by bob") {
		t.Fatalf("status %s: %v", res.Status, res.Err)
	}
	if calls != 1 {
		t.Errorf("asked %d times: a refusal must not be retried", calls)
	}
	end := rec.end("gate")
	if end.Outputs["approver"] != "bob" {
		t.Errorf("who refused is not journaled: %v", end.Outputs)
	}
	equal(t, "ends", rec.ends(), []string{"main:before=succeeded", "main:gate=failed", "rollback:before.rollback[0]=succeeded"})
}

func TestApprovalWithoutAWayToAsk(t *testing.T) {
	prog := compile(t, approvalPlan)
	res, rec := runApprovalPlan(t, prog, false, nil)
	if res.Status != engine.StatusRolledBack {
		t.Fatalf("status %s", res.Status)
	}
	if e := rec.end("gate").Error; e != "approval needs --approve or a terminal" {
		t.Errorf("error = %q", e)
	}
}

func TestApprovalTimesOutWithTheStep(t *testing.T) {
	prog := compile(t, header+`
steps:
  - id: gate
    type: approval
    timeout: 100ms
    with: {message: "Switch?"}
`)
	res, rec := runApprovalPlan(t, prog, false, func(ctx context.Context, req steps.ApprovalRequest) (steps.Approval, error) {
		<-ctx.Done()
		return steps.Approval{}, ctx.Err()
	})
	if res.Status != engine.StatusRolledBack {
		t.Fatalf("status %s", res.Status)
	}
	if e := rec.end("gate").Error; e != "timed out waiting for approval: no answer within 100ms" {
		t.Errorf("error = %q", e)
	}
}

func TestApprovalDryRunLeavesOutputsUnknown(t *testing.T) {
	prog := compile(t, approvalPlan)
	var got []steps.ApprovalRequest
	res, rec := runApprovalPlan(t, prog, true, func(ctx context.Context, req steps.ApprovalRequest) (steps.Approval, error) {
		got = append(got, req)
		return steps.Approval{Approver: "alice", How: steps.ApprovedByPrompt}, nil
	})
	if res.Status != engine.StatusSucceeded {
		t.Fatalf("status %s: %v", res.Status, res.Err)
	}
	if len(got) != 1 || !got[0].DryRun {
		t.Fatalf("a dry run sent %+v; it must only ask what would happen", got)
	}
	equal(t, "ends", rec.ends(), []string{"main:gate=dry-run", "main:after=succeeded"})
	if o := rec.end("gate").Outputs; o != nil {
		t.Errorf("dry-run outputs = %v, want none", o)
	}
	for _, a := range rec.end("after").Asserts {
		if a.Result != "unknown" {
			t.Errorf("assert %s = %s in a dry run, want unknown (decided at run time)", a.Expr, a.Result)
		}
	}
}
