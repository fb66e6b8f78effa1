package main

import (
	"bufio"
	"bytes"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"

	"gopkg.in/yaml.v3"

	"github.com/pgcutover/cutover/engine"
	"github.com/pgcutover/cutover/schema"
)

// initPlanTemplate is the plan `cutover init` writes, after the reference
// plan plans/django-managed-postgres.yaml. Its actions are delimited by
// [[ ]], so that the plan's own ${{ }} templates stay as they are.
//
//go:embed init_plan.yaml.tmpl
var initPlanTemplate string

var initTmpl = template.Must(template.New("init_plan.yaml.tmpl").
	Delims("[[", "]]").
	Option("missingkey=error").
	Funcs(template.FuncMap{"q": yamlScalar}).
	Parse(initPlanTemplate))

var (
	// envNameRe is what schema accepts as an environment variable name
	// (and so as an env_prefix).
	envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// planNameRe is what schema accepts as a plan name.
	planNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
	// pyModuleRe is a dotted Python module path.
	pyModuleRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
	// settingsRe finds manage.py's
	// os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings').
	settingsRe = regexp.MustCompile(`os\.environ\.setdefault\(\s*["']DJANGO_SETTINGS_MODULE["']\s*,\s*["']([^"'\n]+)["']\s*,?\s*\)`)
	// shellSafeRe matches words a POSIX shell reads as they are.
	shellSafeRe = regexp.MustCompile(`^[A-Za-z0-9_./:=@%+,-]+$`)
)

// envKeys are the variables an env_prefix target reads, after its prefix.
var envKeys = []string{"HOST", "PORT", "NAME", "USER", "PASSWORD", "SSLMODE", "SSLROOTCERT"}

// dbEndpoint says where a generated plan reads one database's connection
// settings: variables with a prefix (DB_HOST, DB_NAME, …) or one variable
// holding a DATABASE_URL-style URL. Exactly one of the two is set.
type dbEndpoint struct {
	EnvPrefix string
	URLSecret string
}

// describe says where the settings come from, for messages.
func (e dbEndpoint) describe() string {
	if e.URLSecret != "" {
		return "the URL in $" + e.URLSecret
	}
	return e.EnvPrefix + "HOST, " + e.EnvPrefix + "NAME, " + e.EnvPrefix + "USER, " + e.EnvPrefix + "PASSWORD, …"
}

// vars are the environment variables the endpoint is read from.
func (e dbEndpoint) vars() []string {
	if e.URLSecret != "" {
		return []string{e.URLSecret}
	}
	var vs []string
	for _, k := range envKeys {
		vs = append(vs, e.EnvPrefix+k)
	}
	return vs
}

// initConfig is everything the plan template needs.
type initConfig struct {
	Name        string
	ProjectDir  string
	Python      string
	Settings    string // DJANGO_SETTINGS_MODULE; empty when unknown
	EnvFile     string
	HealthURL   string // empty: no health check step
	RestartCmd  string // empty: no restart step
	Source      dbEndpoint
	Target      dbEndpoint
	GitWorkTree bool     // the project is inside a git work tree
	OutHint     string   // how the plan's header names the file
	EnvKeys     []string // envKeys, for the template
}

// initDefaults fills what a zero initConfig leaves empty with the defaults
// of `cutover init`'s flags.
func (c *initConfig) initDefaults() {
	if c.ProjectDir == "" {
		c.ProjectDir = "."
	}
	if c.Python == "" {
		c.Python = "python3"
	}
	if c.EnvFile == "" {
		c.EnvFile = filepath.Join(c.ProjectDir, ".env")
	}
	if c.Source == (dbEndpoint{}) {
		c.Source.EnvPrefix = "OLD_DB_"
	}
	if c.Target == (dbEndpoint{}) {
		c.Target.EnvPrefix = "DB_"
	}
	if c.Name == "" {
		c.Name = defaultPlanName(c.ProjectDir)
	}
	if c.OutHint == "" {
		c.OutHint = "cutover.yaml"
	}
	c.EnvKeys = envKeys
}

// check reports the first input that would make a wrong or unsafe plan.
func (c *initConfig) check() error {
	if !planNameRe.MatchString(c.Name) {
		return fmt.Errorf("--name %q: a plan name is lower case letters, digits, '.', '_' or '-', starting with a letter or digit", c.Name)
	}
	for _, e := range []struct {
		side string
		ep   dbEndpoint
	}{{"source", c.Source}, {"target", c.Target}} {
		switch {
		case e.ep.EnvPrefix != "" && e.ep.URLSecret != "":
			return fmt.Errorf("--%s-env-prefix and --%s-url-secret exclude each other: the %s database is read one way", e.side, e.side, e.side)
		case e.ep.URLSecret != "" && !envNameRe.MatchString(e.ep.URLSecret):
			return fmt.Errorf("--%s-url-secret %q is not an environment variable name", e.side, e.ep.URLSecret)
		case e.ep.URLSecret == "" && !envNameRe.MatchString(e.ep.EnvPrefix):
			return fmt.Errorf("--%s-env-prefix %q is not the start of an environment variable name", e.side, e.ep.EnvPrefix)
		}
	}
	src := map[string]bool{}
	for _, v := range c.Source.vars() {
		src[v] = true
	}
	for _, v := range c.Target.vars() {
		if src[v] {
			return fmt.Errorf("the old and the new database would both be read from $%s: give them different --source-… and --target-… names", v)
		}
	}
	if c.Settings != "" && !pyModuleRe.MatchString(c.Settings) {
		return fmt.Errorf("--settings %q is not a Python module path (mysite.settings)", c.Settings)
	}
	if strings.TrimSpace(c.Python) == "" {
		return errors.New("--python is empty")
	}
	if c.HealthURL != "" {
		u, err := url.Parse(c.HealthURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--health-url %q is not an http:// or https:// URL", c.HealthURL)
		}
	}
	return nil
}

// renderInitPlan renders the plan for c. It does not validate it.
func renderInitPlan(c initConfig) ([]byte, error) {
	var b bytes.Buffer
	if err := initTmpl.Execute(&b, c); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// validateInitPlan loads a rendered plan as `cutover validate` would; name
// is how diagnostics call the file.
func validateInitPlan(data []byte, name string) (*engine.Program, schema.Diagnostics, error) {
	f, err := os.CreateTemp("", "cutover-init-*.yaml")
	if err != nil {
		return nil, nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, nil, err
	}
	if err := f.Close(); err != nil {
		return nil, nil, err
	}
	prog, ds := engine.Load(f.Name())
	for i := range ds {
		if ds[i].File == f.Name() {
			ds[i].File = name
		}
	}
	return prog, ds, nil
}

// yamlScalar renders s as one YAML scalar that reads back as exactly s
// anywhere a value may stand, flow collections included: plain when that is
// unambiguous, quoted otherwise. yaml.v3 decides, as it would inside [ ].
func yamlScalar(s string) (string, error) {
	seq := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}}}
	out, err := yaml.Marshal(seq)
	if err != nil {
		return "", err
	}
	v := strings.TrimSuffix(string(out), "\n")
	if !strings.HasPrefix(v, "[") || !strings.HasSuffix(v, "]") || strings.Contains(v, "\n") {
		return "", fmt.Errorf("cannot write %q as one YAML scalar", s)
	}
	return v[1 : len(v)-1], nil
}

// shellWord quotes s for a POSIX shell when it needs it.
func shellWord(s string) string {
	if shellSafeRe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// defaultPlanName derives a plan name from the project directory's name.
func defaultPlanName(project string) string {
	dir := project
	if abs, err := filepath.Abs(project); err == nil {
		dir = abs
	}
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(filepath.Base(dir)) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if b.Len() > 0 && !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	base := strings.TrimSuffix(b.String(), "-")
	if base == "" {
		base = "django"
	}
	return base + "-cutover"
}

// detectSettings reads DJANGO_SETTINGS_MODULE from manage.py's
// os.environ.setdefault call; "" when it has none.
func detectSettings(manage []byte) string {
	m := settingsRe.FindSubmatch(manage)
	if m == nil || !pyModuleRe.Match(m[1]) {
		return ""
	}
	return string(m[1])
}

// inGitWorkTree says whether dir or a parent holds .git.
func inGitWorkTree(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		if _, err := os.Lstat(filepath.Join(abs, ".git")); err == nil {
			return true
		}
		parent := filepath.Dir(abs)
		if parent == abs {
			return false
		}
		abs = parent
	}
}

// prompter asks for values on a terminal.
type prompter struct {
	in  *bufio.Reader
	out io.Writer
}

// ask prints question and reads one line; check, when set, must accept the
// answer, else the question is asked again (three times at most). An empty
// answer or the end of input gives "".
func (p *prompter) ask(question string, check func(string) error) (string, error) {
	for try := 0; ; try++ {
		fmt.Fprintf(p.out, "%s: ", question)
		line, err := p.in.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		v := strings.TrimSpace(line)
		if v == "" {
			if errors.Is(err, io.EOF) {
				fmt.Fprintln(p.out)
			}
			return "", nil
		}
		if check == nil {
			return v, nil
		}
		cerr := check(v)
		if cerr == nil {
			return v, nil
		}
		if try == 2 || errors.Is(err, io.EOF) {
			return "", cerr
		}
		fmt.Fprintf(p.out, "  %v\n", cerr)
	}
}

// promptMissing asks for the values that were neither given nor detected:
// the settings module (when manage.py does not name it), the health URL and
// the restart command. Empty answers keep them out of the plan.
func promptMissing(c *initConfig, given map[string]bool, p *prompter) error {
	if c.Settings == "" && !given["settings"] {
		v, err := p.ask("DJANGO_SETTINGS_MODULE (manage.py does not set it; empty to leave it to the environment)", func(s string) error {
			if !pyModuleRe.MatchString(s) {
				return fmt.Errorf("%q is not a Python module path (mysite.settings)", s)
			}
			return nil
		})
		if err != nil {
			return err
		}
		c.Settings = v
	}
	if !given["health-url"] {
		v, err := p.ask("URL of the app's health check, run after the switch (empty for none)", func(s string) error {
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("%q is not an http:// or https:// URL", s)
			}
			return nil
		})
		if err != nil {
			return err
		}
		c.HealthURL = v
	}
	if !given["restart-cmd"] {
		v, err := p.ask("Shell command that restarts the app (empty for none)", nil)
		if err != nil {
			return err
		}
		c.RestartCmd = v
	}
	return nil
}

const initUsage = "init [--project DIR] [--out FILE|-] [--force] [flags]"

func (s stdio) initPlan(args []string) int {
	fs := newFlags("init")
	project := fs.String("project", ".", "the Django project: the directory holding manage.py")
	out := fs.String("out", "cutover.yaml", "the plan file to write; - writes to stdout")
	force := fs.Bool("force", false, "replace --out if it exists")
	name := fs.String("name", "", "plan name (default: the project directory's name, then -cutover)")
	srcPrefix := fs.String("source-env-prefix", "OLD_DB_", "read the old database from PREFIX{HOST,PORT,NAME,USER,PASSWORD,SSLMODE,SSLROOTCERT}")
	dstPrefix := fs.String("target-env-prefix", "DB_", "read the new database from PREFIX{HOST,PORT,NAME,USER,PASSWORD,SSLMODE,SSLROOTCERT}, as the app does")
	srcURL := fs.String("source-url-secret", "", "read the old database from this variable's DATABASE_URL-style URL instead")
	dstURL := fs.String("target-url-secret", "", "read the new database from this variable's DATABASE_URL-style URL instead (the variable the app reads)")
	settings := fs.String("settings", "", "DJANGO_SETTINGS_MODULE (default: the one manage.py sets)")
	python := fs.String("python", "python3", "the Python that runs manage.py")
	envFile := fs.String("env-file", "", "the app's dotenv file, which the switch rewrites (default: DIR/.env)")
	healthURL := fs.String("health-url", "", "the app's health URL; adds an http-check after the switch")
	restartCmd := fs.String("restart-cmd", "", "shell command that restarts the app; adds a restart step after the switch")
	pos, err := parseInterspersed(fs, args)
	if err == nil && len(pos) > 0 {
		err = fmt.Errorf("unexpected argument %q (the project directory is --project DIR)", pos[0])
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	c := initConfig{
		Name: *name, ProjectDir: filepath.Clean(*project), Python: *python, Settings: *settings,
		EnvFile: *envFile, HealthURL: *healthURL, RestartCmd: strings.TrimSpace(*restartCmd),
	}
	if err == nil {
		c.Source, err = endpointFlags("source", *srcPrefix, *srcURL, given)
	}
	if err == nil {
		c.Target, err = endpointFlags("target", *dstPrefix, *dstURL, given)
	}
	if err == nil && *out == "" {
		err = errors.New("--out is empty (- writes the plan to stdout)")
	}
	if err != nil {
		return s.usageError(initUsage, fs, err)
	}
	// The plan's header names its own file, when a comment line can hold it.
	if *out != "-" && !strings.ContainsFunc(*out, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		c.OutHint = shellWord(*out)
	}

	// The project: manage.py, and the settings module it sets.
	if st, err := os.Stat(c.ProjectDir); err != nil || !st.IsDir() {
		fmt.Fprintf(s.err, "cutover init: %s is not a directory: --project names the Django project, the directory holding manage.py\n", c.ProjectDir)
		return engine.ExitUsage
	}
	manage, err := os.ReadFile(filepath.Join(c.ProjectDir, "manage.py"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(s.err, "cutover init: no manage.py in %s: --project names the Django project, the directory holding manage.py\n", c.ProjectDir)
		} else {
			fmt.Fprintf(s.err, "cutover init: %v\n", err)
		}
		return engine.ExitUsage
	}
	if *out != "-" && !*force {
		if _, err := os.Lstat(*out); err == nil {
			fmt.Fprintf(s.err, "cutover init: %s exists; not overwriting it (--force replaces it)\n", *out)
			return engine.ExitUsage
		}
	}
	detected := false
	if c.Settings == "" {
		c.Settings = detectSettings(manage)
		detected = c.Settings != ""
	}
	c.GitWorkTree = inGitWorkTree(c.ProjectDir)
	c.initDefaults()

	interactive := false
	if stdin, ok := s.in.(*os.File); ok && isTerminal(stdin) && isTerminal(s.out) {
		interactive = true
		if err := promptMissing(&c, given, &prompter{in: bufio.NewReader(s.in), out: s.err}); err != nil {
			fmt.Fprintf(s.err, "cutover init: %v\n", err)
			return engine.ExitUsage
		}
	}
	if err := c.check(); err != nil {
		return s.usageError(initUsage, fs, err)
	}

	// What was not given: the defaults used, said on stderr.
	var notes [][2]string
	note := func(flag, value, why string) {
		if !given[flag] {
			notes = append(notes, [2]string{"--" + flag + " " + shellWord(value), why})
		}
	}
	note("name", c.Name, "from the project directory's name")
	if c.Target.URLSecret == "" {
		note("target-env-prefix", c.Target.EnvPrefix, "the new database from "+c.Target.describe())
	}
	if c.Source.URLSecret == "" {
		note("source-env-prefix", c.Source.EnvPrefix, "the old database from "+c.Source.describe())
	}
	switch {
	case detected:
		note("settings", c.Settings, "found in manage.py")
	case c.Settings == "" && !given["settings"]:
		notes = append(notes, [2]string{"no --settings", "manage.py does not set DJANGO_SETTINGS_MODULE: left to the environment (a TODO in the plan)"})
	}
	note("python", c.Python, "")
	envWhy := "the app's dotenv file, which the switch rewrites"
	if _, err := os.Stat(c.EnvFile); err != nil {
		envWhy += " (not there yet)"
	}
	note("env-file", c.EnvFile, envWhy)
	if !interactive {
		if !given["health-url"] {
			notes = append(notes, [2]string{"no --health-url", "no health check after the switch"})
		}
		if !given["restart-cmd"] {
			notes = append(notes, [2]string{"no --restart-cmd", "no restart step (a TODO marks where it goes)"})
		}
	}

	data, err := renderInitPlan(c)
	if err != nil {
		fmt.Fprintf(s.err, "cutover init: %v\n", err)
		return engine.ExitFailed
	}
	shown := *out
	if shown == "-" {
		shown = "the plan"
	}
	prog, ds, err := validateInitPlan(data, shown)
	if err != nil {
		fmt.Fprintf(s.err, "cutover init: cannot check the plan: %v\n", err)
		return engine.ExitFailed
	}
	if len(ds) > 0 {
		fmt.Fprint(s.err, ds.Format())
		fmt.Fprintf(s.err, "cutover init: BUG: the generated plan does not validate (%s); nothing was written. Please report it with the command line.\n", plural(len(ds), "problem"))
		return engine.ExitFailed
	}

	if *out == "-" {
		if _, err := s.out.Write(data); err != nil {
			fmt.Fprintf(s.err, "cutover init: %v\n", err)
			return engine.ExitFailed
		}
	} else if err := writePlanFile(*out, data, *force); err != nil {
		fmt.Fprintf(s.err, "cutover init: %v\n", err)
		if errors.Is(err, os.ErrExist) {
			return engine.ExitUsage
		}
		return engine.ExitFailed
	}

	if len(notes) > 0 {
		width := 0
		for _, n := range notes {
			width = max(width, len(n[0]))
		}
		fmt.Fprintln(s.err, "cutover init: defaults used (a flag changes each):")
		for _, n := range notes {
			fmt.Fprintf(s.err, "  %s\n", strings.TrimRight(fmt.Sprintf("%-*s  %s", width, n[0], n[1]), " "))
		}
	}
	where := "wrote " + shellWord(*out)
	if *out == "-" {
		where = "wrote the plan to stdout"
	}
	fmt.Fprintf(s.err, "%s: plan %s@%d, %s, for the Django project in %s.\n", where, prog.Plan.Name, prog.Plan.Version, plural(len(prog.Steps), "step"), shellWord(c.ProjectDir))
	fmt.Fprintf(s.err, "Review its TODO markers; with %s (new) and %s (old) set:\n", envSummary(c.Target), envSummary(c.Source))
	fmt.Fprintf(s.err, "  cutover validate %s\n", c.OutHint)
	fmt.Fprintf(s.err, "  cutover run %s --dry-run --param environment=staging\n", c.OutHint)
	fmt.Fprintln(s.err, `(rehearse on local clusters first: cutover sandbox up; eval "$(cutover sandbox env)")`)
	return 0
}

// endpointFlags builds one side's dbEndpoint from its two flags: a URL
// secret replaces the default prefix, but both given is an error.
func endpointFlags(side, prefix, urlSecret string, given map[string]bool) (dbEndpoint, error) {
	if urlSecret != "" {
		if given[side+"-env-prefix"] {
			return dbEndpoint{}, fmt.Errorf("--%s-env-prefix and --%s-url-secret exclude each other: the %s database is read one way", side, side, side)
		}
		return dbEndpoint{URLSecret: urlSecret}, nil
	}
	return dbEndpoint{EnvPrefix: prefix}, nil
}

// envSummary names the variables an endpoint needs, for the next steps.
func envSummary(e dbEndpoint) string {
	if e.URLSecret != "" {
		return e.URLSecret
	}
	return e.EnvPrefix + "*"
}

// writePlanFile writes data to path. Without force an existing file is an
// error (os.ErrExist); with it, the file is replaced atomically.
func writePlanFile(path string, data []byte, force bool) error {
	if !force {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			os.Remove(path)
			return err
		}
		return f.Close()
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
