package engine

// Record is one journal line and one progress event. Records are written in
// order; the journal package adds "seq" and the hash chain ("prev").
type Record struct {
	Type string `json:"type"`
	Time string `json:"time"`

	// run.start
	RunID    string         `json:"run_id,omitempty"`
	Plan     *PlanInfo      `json:"plan,omitempty"`
	Params   map[string]any `json:"params,omitempty"`
	Operator string         `json:"operator,omitempty"`
	Host     string         `json:"host,omitempty"`
	Engine   string         `json:"engine,omitempty"`
	DryRun   *bool          `json:"dry_run,omitempty"`
	Argv     []string       `json:"argv,omitempty"` // the command line, secrets masked
	Cwd      string         `json:"cwd,omitempty"`
	// PID is cutover's own process id in run.start and resume, the step's
	// child in step.process.
	PID int `json:"pid,omitempty"`
	// MAC names the algorithm that MACs every record (run.start), when the
	// journal was written with a key.
	MAC string `json:"mac_algorithm,omitempty"`

	// resume
	Mode      string `json:"mode,omitempty"`     // rollback or retry-in-doubt
	InDoubt   string `json:"in_doubt,omitempty"` // the step a crash left in doubt
	TornBytes int    `json:"torn_bytes,omitempty"`

	// secrets
	Secrets []SecretInfo `json:"secrets,omitempty"`

	// step.start, step.retry, step.end, step.skip
	Step       string         `json:"step,omitempty"`
	StepType   string         `json:"step_type,omitempty"`
	Phase      string         `json:"phase,omitempty"` // main, rollback, finally
	RollbackOf string         `json:"rollback_of,omitempty"`
	Mutates    bool           `json:"mutates,omitempty"`
	Attempt    int            `json:"attempt,omitempty"`
	Status     string         `json:"status,omitempty"`
	Guard      *Check         `json:"guard,omitempty"`
	Asserts    []Check        `json:"asserts,omitempty"`
	Inputs     map[string]any `json:"inputs,omitempty"`
	Outputs    map[string]any `json:"outputs,omitempty"`
	Error      string         `json:"error,omitempty"`
	DurationMS float64        `json:"duration_ms,omitempty"`
	RetryIn    string         `json:"retry_in,omitempty"`
	// RollbackPlan lists, in order, the rollback steps a failure of this
	// step would run (dry run only).
	RollbackPlan []string `json:"rollback_plan,omitempty"`

	// rollback.begin, run.end
	Message  string   `json:"message,omitempty"`
	Pending  []string `json:"pending,omitempty"` // rollback.begin: steps whose rollback will run
	Kept     []string `json:"kept,omitempty"`    // rollback.begin: rollbacks not run, before the commit point
	NotRun   []string `json:"not_run,omitempty"` // run.end: steps never reached
	ExitCode *int     `json:"exit_code,omitempty"`
}

// PlanInfo identifies the plan a run executed.
type PlanInfo struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
	File    string `json:"file"`
	SHA256  string `json:"sha256"`
}

// SecretInfo says whether a secret could be read, never its value.
type SecretInfo struct {
	Name   string `json:"name"`
	From   string `json:"from"`
	Source string `json:"source"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
}

// Check is the result of a guard or an assert expression.
type Check struct {
	Expr   string `json:"expr"`
	Line   int    `json:"line"`
	Result string `json:"result"` // true, false, unknown (decided at run time) or error
	// Values are the variables the expression read, for a false assert.
	Values map[string]any `json:"values,omitempty"`
	Error  string         `json:"error,omitempty"`
}

// Record types.
const (
	RecRunStart      = "run.start"
	RecSecrets       = "secrets"
	RecStepStart     = "step.start"
	RecStepRetry     = "step.retry"
	RecStepProcess   = "step.process"
	RecStepAnnounce  = "step.announce"
	RecStepEnd       = "step.end"
	RecCommit        = "commit"
	RecRollbackBegin = "rollback.begin"
	RecRunEnd        = "run.end"
	RecResume        = "resume"
	RecLock          = "lock"
)

// Step statuses.
const (
	StepSucceeded = "succeeded"
	StepFailed    = "failed"
	StepSkipped   = "skipped"   // guard false
	StepUndecided = "undecided" // dry run: guard or inputs decided at run time
	StepDryRun    = "dry-run"   // dry run: mutating step's read-only variant ran
	StepWouldRun  = "would-run" // dry run: mutating step without a variant
	StepNotRun    = "not-run"   // never reached
	// StepInDoubt ends, when a run is resumed, a step the crashed runner
	// started but never ended.
	StepInDoubt = "in-doubt"
)

// Run statuses (DESIGN §4).
const (
	StatusSucceeded         = "succeeded"
	StatusFailed            = "failed" // dry run found a failing check
	StatusRolledBack        = "rolled-back"
	StatusRollbackFailed    = "rollback-failed"
	StatusFailedAfterCommit = "failed-after-commit"
	StatusAborted           = "aborted"
	StatusInDoubt           = "in-doubt"
	// StatusCouldNotStart: the run's locks are held by another run (or its
	// journal cannot be written); no step ran.
	StatusCouldNotStart = "could-not-start"
)

// Exit codes.
const (
	ExitOK          = 0
	ExitFailed      = 1
	ExitUsage       = 2
	ExitHuman       = 3
	ExitCannotStart = 4
)

// ExitCode maps a run status to the process exit code.
func ExitCode(status string) int {
	switch status {
	case StatusSucceeded:
		return ExitOK
	case StatusFailed, StatusRolledBack:
		return ExitFailed
	case StatusCouldNotStart:
		return ExitCannotStart
	}
	return ExitHuman
}
