package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/pgcutover/cutover/engine"
	"github.com/pgcutover/cutover/steps"
)

// approveFlag collects repeated --approve ID.
type approveFlag []string

func (a *approveFlag) String() string { return strings.Join(*a, ",") }

func (a *approveFlag) Set(s string) error {
	s = strings.TrimSpace(s)
	if s == "" {
		return errors.New("name the approval step to pre-approve")
	}
	if !slices.Contains(*a, s) {
		*a = append(*a, s)
	}
	return nil
}

// approvalSteps lists the labels of the plan's approval steps: main steps,
// their rollback blocks and finally, in plan order.
func approvalSteps(prog *engine.Program) []string {
	var out []string
	add := func(s *engine.Step) {
		if s.Decl.Type == "approval" {
			out = append(out, s.Label())
		}
	}
	for _, s := range prog.Steps {
		add(s)
		for _, rb := range s.Rollback {
			add(rb)
		}
	}
	for _, s := range prog.Finally {
		add(s)
	}
	return out
}

// checkApprove refuses an --approve that names no approval step of the
// plan: a typo must not leave the real gate to fail half-way through.
func checkApprove(prog *engine.Program, ids []string) error {
	gates := approvalSteps(prog)
	types := map[string]string{}
	for _, s := range prog.Steps {
		types[s.Label()] = s.Decl.Type
		for _, rb := range s.Rollback {
			types[rb.Label()] = rb.Decl.Type
		}
	}
	for _, s := range prog.Finally {
		types[s.Label()] = s.Decl.Type
	}
	list := "the plan has no approval steps"
	if len(gates) > 0 {
		list = "approval steps: " + strings.Join(gates, ", ")
	}
	for _, id := range ids {
		if slices.Contains(gates, id) {
			continue
		}
		if t, ok := types[id]; ok {
			return fmt.Errorf("--approve %s: step %s is a %s step, not an approval (%s)", id, id, t, list)
		}
		return fmt.Errorf("--approve %s: the plan has no step %s (%s)", id, id, list)
	}
	return nil
}

// approvals answers a run's approval steps: from --approve, or by asking on
// the terminal.
type approvals struct {
	pre      map[string]bool // step ids pre-approved with --approve
	approver string          // --approver, or the operator
	tty      bool            // stdin and the question's writer are terminals
	ask      io.Writer       // where the question goes (stderr)
	lines    *lineReader     // the answers (stdin)
	// flush discards what was typed on the terminal before the question.
	flush func()
	// pause, when set, clears the live progress line before a question.
	pause func()
}

func newApprovals(ids []string, approver string, in io.Reader, ask io.Writer) *approvals {
	if approver = strings.TrimSpace(approver); approver == "" {
		approver = operatorName()
	}
	a := &approvals{pre: map[string]bool{}, approver: approver, ask: ask, lines: newLineReader(in)}
	for _, id := range ids {
		a.pre[id] = true
	}
	a.tty = isTerminal(in) && isTerminal(ask)
	if f, ok := in.(*os.File); ok && a.tty {
		a.flush = func() { flushInput(f.Fd()) }
	}
	return a
}

// approve implements steps.ApproveFunc.
func (a *approvals) approve(ctx context.Context, req steps.ApprovalRequest) (steps.Approval, error) {
	if a.pre[req.StepID] {
		return steps.Approval{Approved: true, Approver: a.approver, How: steps.ApprovedByFlag}, nil
	}
	if !a.tty {
		if req.DryRun {
			return steps.Approval{Approver: a.approver}, nil
		}
		return steps.Approval{}, steps.Permanent(fmt.Errorf("approval %s needs --approve %s (no terminal to ask on)", req.StepID, req.StepID))
	}
	answer := steps.Approval{Approver: a.approver, How: steps.ApprovedByPrompt}
	if req.DryRun || len(req.Approvers) > 0 && !slices.Contains(req.Approvers, a.approver) {
		// A dry run never asks; nor is anyone asked whose yes would not
		// count (the step says why).
		return answer, nil
	}
	if a.pause != nil {
		a.pause()
	}
	// A line typed before the question is not its answer: neither what
	// the terminal holds nor what was read while nobody asked.
	if a.flush != nil {
		a.flush()
	}
	a.lines.drain()
	fmt.Fprintf(a.ask, "  approval %s (answering as %s):\n", req.StepID, a.approver)
	for _, line := range strings.Split(req.Message, "\n") {
		fmt.Fprintf(a.ask, "    %s\n", line)
	}
	fmt.Fprintf(a.ask, "  Approve step %s? Type \"yes\" to approve, anything else refuses: ", req.StepID)
	line, err := a.lines.next(ctx)
	if err != nil {
		fmt.Fprintln(a.ask) // the question's line stays unanswered
		return steps.Approval{}, err
	}
	if !strings.HasSuffix(line, "\n") {
		fmt.Fprintln(a.ask) // end of input: the terminal echoed no newline
	}
	answer.Approved = strings.EqualFold(strings.TrimSpace(line), "yes")
	return answer, nil
}

// lineReader reads lines in one goroutine, started by the first question,
// so that a question's wait ends with its context (the step's timeout,
// Ctrl-C) while the read goes on. The goroutine ends at end of input; on a
// terminal it lasts as long as the process.
type lineReader struct {
	r     io.Reader
	once  sync.Once
	lines chan string // closed at end of input
}

func newLineReader(r io.Reader) *lineReader { return &lineReader{r: r, lines: make(chan string)} }

func (l *lineReader) start() {
	l.once.Do(func() {
		go func() {
			defer close(l.lines)
			br := bufio.NewReader(l.r)
			for {
				line, err := br.ReadString('\n')
				if line != "" {
					l.lines <- line
				}
				if err != nil {
					return
				}
			}
		}()
	})
}

// drain drops lines read while no question was waiting.
func (l *lineReader) drain() {
	for {
		select {
		case _, ok := <-l.lines:
			if !ok {
				return
			}
		default:
			return
		}
	}
}

// next waits for a line; at end of input it returns "" (no answer is a
// refusal).
func (l *lineReader) next(ctx context.Context) (string, error) {
	l.start()
	select {
	case line := <-l.lines:
		return line, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// operatorName is who answers approvals by default: the operator the run
// journals, or "unknown".
func operatorName() string {
	if n := engine.Operator(); n != "" {
		return n
	}
	return "unknown"
}
