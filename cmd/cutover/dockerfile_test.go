package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pgcutover/cutover/engine/journal"
)

// dockerInstr is one Dockerfile instruction, continuation lines joined.
type dockerInstr struct {
	Line  int    // where it starts
	Cmd   string // upper case: FROM, RUN, COPY…
	Args  string
	Stage int // index of the FROM it belongs to; -1 before the first
}

// parseDockerfile splits a Dockerfile into instructions, the way docker
// reads it: comment lines are dropped (inside continuations too), a line
// ending in a backslash continues on the next.
func parseDockerfile(t *testing.T, path string) []dockerInstr {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []dockerInstr
	var cur strings.Builder
	start, stage, n := 0, -1, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, dockerInstr{Line: start, Cmd: cmd, Args: strings.TrimSpace(args), Stage: stage})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur.Len() > 0 {
		t.Fatalf("%s ends inside a continued line (line %d)", path, start)
	}
	return out
}

// TestDockerfile checks the essentials of the container recipe, which no
// test here can build: the stages and their base images, the go build of
// ./cmd/cutover with the version stamped in, every package directory the
// command needs copied in, postgresql-client installed, a non-root user,
// cutover as the entrypoint and the journal on a volume.
func TestDockerfile(t *testing.T) {
	root := filepath.Join("..", "..")
	ins := parseDockerfile(t, "Dockerfile")
	args := map[string]string{} // global ARG defaults
	var froms []dockerInstr
	for _, in := range ins {
		switch {
		case in.Cmd == "ARG" && in.Stage < 0:
			k, v, _ := strings.Cut(in.Args, "=")
			args[k] = v
		case in.Cmd == "FROM":
			froms = append(froms, in)
		}
	}
	expand := func(s string) string {
		return os.Expand(s, func(k string) string { return args[k] })
	}
	if len(froms) != 2 {
		t.Fatalf("%d FROM stages, want 2 (build and runtime)", len(froms))
	}

	// The build stage: golang on bookworm, at go.mod's go version.
	build := strings.Fields(expand(froms[0].Args))
	if len(build) != 3 || !strings.EqualFold(build[1], "AS") || build[2] != "build" {
		t.Fatalf("line %d: FROM %s, want an image AS build", froms[0].Line, froms[0].Args)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	if want := "golang:" + string(m[1]) + "-bookworm"; build[0] != want {
		t.Errorf("line %d: build stage FROM %s, want %s (go.mod says go %s)", froms[0].Line, build[0], want, m[1])
	}
	if rt := expand(froms[1].Args); rt != "debian:bookworm-slim" {
		t.Errorf("line %d: runtime stage FROM %s, want debian:bookworm-slim", froms[1].Line, rt)
	}

	var buildRun, copies []dockerInstr
	var runtimeRuns []string
	var user, entrypoint, volume string
	env := map[string]string{}
	for _, in := range ins {
		switch {
		case in.Stage == 0 && in.Cmd == "RUN" && strings.Contains(in.Args, "go build"):
			buildRun = append(buildRun, in)
		case in.Stage == 0 && in.Cmd == "COPY":
			copies = append(copies, in)
		case in.Stage == 1 && in.Cmd == "RUN":
			runtimeRuns = append(runtimeRuns, in.Args)
		case in.Stage == 1 && in.Cmd == "USER":
			user = in.Args
		case in.Stage == 1 && in.Cmd == "ENTRYPOINT":
			entrypoint = in.Args
		case in.Stage == 1 && in.Cmd == "VOLUME":
			volume = in.Args
		case in.Stage == 1 && in.Cmd == "ENV":
			for _, kv := range strings.Fields(in.Args) {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
		}
	}

	// go build: static, trimmed, stamped, of a package that exists.
	if len(buildRun) != 1 {
		t.Fatalf("%d RUN go build in the build stage, want 1", len(buildRun))
	}
	gb := buildRun[0].Args
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w -X main.version=${VERSION}"`, "./cmd/cutover"} {
		if !strings.Contains(gb, want) {
			t.Errorf("line %d: go build lacks %s: %s", buildRun[0].Line, want, gb)
		}
	}
	_ = version // the variable -X main.version sets
	_, cmdline, _ := strings.Cut(gb, "go build")
	cmdline, _, _ = strings.Cut(cmdline, "&&")
	words := strings.Fields(cmdline)
	if pkg := words[len(words)-1]; pkg != "./cmd/cutover" {
		t.Errorf("line %d: go build builds %s, want ./cmd/cutover", buildRun[0].Line, pkg)
	}
	if data, err := os.ReadFile(filepath.Join(root, "cmd", "cutover", "main.go")); err != nil || !strings.Contains(string(data), "package main") {
		t.Errorf("./cmd/cutover is not the main package: %v", err)
	}
	out := regexp.MustCompile(`-o (\S+)`).FindStringSubmatch(gb)
	if out == nil {
		t.Fatalf("line %d: go build names no -o output", buildRun[0].Line)
	}

	// Every top-level directory of the module that the command imports is
	// copied into the build stage, and every copied path exists.
	copied := map[string]bool{}
	for _, c := range copies {
		f := strings.Fields(c.Args)
		for _, src := range f[:len(f)-1] {
			if _, err := os.Stat(filepath.Join(root, src)); err != nil {
				t.Errorf("line %d: COPY %s: %v", c.Line, src, err)
			}
			copied[strings.TrimPrefix(filepath.Clean(src), "./")] = true
		}
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		if !copied[f] {
			t.Errorf("the build stage does not copy %s", f)
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go is not on PATH: %v", err)
	}
	cmd := exec.Command(goBin, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./cmd/cutover")
	cmd.Dir = root
	deps, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const module = "github.com/pgcutover/cutover/"
	for _, dep := range strings.Fields(string(deps)) {
		if rest, ok := strings.CutPrefix(dep, module); ok {
			top, _, _ := strings.Cut(rest, "/")
			if !copied[top] {
				t.Errorf("./cmd/cutover imports %s, but the build stage does not copy %s/", dep, top)
			}
		}
	}

	// The runtime stage: PostgreSQL's client programs, CA roots and zones.
	install := strings.Join(runtimeRuns, " ")
	for _, pkg := range []string{"postgresql-client", "ca-certificates", "tzdata"} {
		if !regexp.MustCompile(`apt-get install [^;&]*\s` + regexp.QuoteMeta(pkg) + `(\s|;|$)`).MatchString(install) {
			t.Errorf("the runtime stage does not apt-get install %s", pkg)
		}
	}
	if !strings.Contains(install, "rm -rf /var/lib/apt/lists/*") {
		t.Error("the runtime stage keeps apt's lists")
	}

	// A non-root user, numeric so that runAsNonRoot can check it.
	uid, _, _ := strings.Cut(user, ":")
	if uid == "" || uid == "0" || uid == "root" {
		t.Errorf("USER %q: the runtime stage must not run as root", user)
	} else if uid != "10001" {
		t.Errorf("USER %q, want uid 10001", user)
	}
	if !strings.Contains(install, "--uid "+uid) {
		t.Errorf("no user with uid %s is created", uid)
	}

	// cutover is the entrypoint, and the build output is copied onto PATH.
	var ep []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || len(ep) == 0 || ep[0] != "cutover" {
		t.Errorf(`ENTRYPOINT %s, want the exec form ["cutover"]`, entrypoint)
	}
	foundBin := false
	for _, in := range ins {
		if in.Stage == 1 && in.Cmd == "COPY" && in.Args == "--from=build "+out[1]+" /usr/local/bin/cutover" {
			foundBin = true
		}
	}
	if !foundBin {
		t.Errorf("the runtime stage does not COPY --from=build %s /usr/local/bin/cutover", out[1])
	}

	// The journal directory: where cutover looks, and a volume.
	dir := env["CUTOVER_JOURNAL_DIR"]
	if dir != "/var/lib/cutover/journal" {
		t.Errorf("ENV CUTOVER_JOURNAL_DIR=%q, want /var/lib/cutover/journal", dir)
	}
	t.Setenv("CUTOVER_JOURNAL_DIR", dir)
	if got := journal.DefaultDir(); got != dir {
		t.Errorf("with CUTOVER_JOURNAL_DIR=%s cutover writes journals to %s", dir, got)
	}
	var vols []string
	if err := json.Unmarshal([]byte(volume), &vols); err != nil || len(vols) != 1 || vols[0] != dir {
		t.Errorf("VOLUME %s, want [%q]", volume, dir)
	}
	if !strings.Contains(install, "-o "+uid+" ") || !strings.Contains(install, dir) {
		t.Errorf("the journal directory %s is not created for uid %s", dir, uid)
	}
}
