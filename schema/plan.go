package schema

import (
	"strconv"
	"time"
)

// APIVersion is the only plan format this engine reads.
const APIVersion = "cutover/v1"

// Plan is a decoded, structurally valid plan. Expressions are not yet
// compiled; the engine does that.
type Plan struct {
	File        string
	Source      []byte
	SHA256      string // hex sha256 of Source
	Name        string
	Version     int
	Description string
	Params      []*Param
	Secrets     []*Secret
	Targets     []*Target
	Defaults    Defaults
	Steps       []*Step
	Finally     []*Step
}

// Param declares one typed plan input.
type Param struct {
	Name        string
	Pos         Pos
	Type        Kind // String, Int, Bool, Duration or StringList
	Enum        []string
	Required    bool
	Default     any // converted to Type; nil when none
	Description string
}

// Secret declares where a secret value comes from. Values are never stored in
// the plan.
type Secret struct {
	Name string
	Pos  Pos
	From string   // env, file or command
	Env  string   // from: env
	Path string   // from: file
	Argv []string // from: command
}

// Target declares a PostgreSQL connection. Exactly one of URL, the parts
// (Host…), or EnvPrefix is used.
type Target struct {
	Name        string
	Pos         Pos
	URL         string // secret name holding a connection URL
	Host        string
	Port        int
	DBName      string
	User        string
	Password    string // secret name
	EnvPrefix   string
	SSLMode     string
	SSLRootCert string
	SSLCert     string
	SSLKey      string
}

// Defaults apply to every step that does not set its own.
type Defaults struct {
	Timeout time.Duration
	Retry   Retry
}

// Retry says how often a failing step is attempted and how long to wait.
type Retry struct {
	Attempts   int           // total attempts, at least 1
	Backoff    time.Duration // wait before the second attempt
	MaxBackoff time.Duration // cap on the doubling wait
}

// Section says where a step is declared.
type Section string

// The sections a step can appear in.
const (
	SectionSteps    Section = "steps"
	SectionRollback Section = "rollback"
	SectionFinally  Section = "finally"
)

// Step is one decoded step.
type Step struct {
	ID      string // empty for rollback and finally steps without one
	Name    string
	Type    string
	Pos     Pos
	Section Section
	Index   int   // position within its section (or rollback block)
	Parent  *Step // the step whose rollback block holds this one
	When    *Expr
	Assert  []*Expr
	With    Inputs
	Timeout time.Duration // 0: the plan default
	Retry   *Retry        // nil: the plan default
	Commit  bool
	// Idempotent declares that running the step again after it was
	// interrupted is safe: `cutover resume --retry-in-doubt` may re-run it.
	Idempotent  bool
	Rollback    []*Step
	Description string
}

// Label is how messages name the step: its id, or its section and index.
func (s *Step) Label() string {
	if s.ID != "" {
		return s.ID
	}
	if s.Parent != nil {
		return s.Parent.Label() + ".rollback[" + strconv.Itoa(s.Index) + "]"
	}
	return string(s.Section) + "[" + strconv.Itoa(s.Index) + "]"
}
