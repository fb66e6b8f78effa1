package main

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgcutover/cutover/engine"
)

// htmlTestPlan fails at "migrate" after "prepare" succeeded: the run rolls
// back both, in that order, and never reaches "verify".
const htmlTestPlan = `apiVersion: cutover/v1
kind: Plan
name: htmlreport
version: 3
params:
  env: {type: string, default: staging}
steps:
  - id: prepare
    type: run-command
    with: {argv: [sh, -c, 'echo ready']}
    assert: ["outputs.exit_code == 0"]
    rollback:
      - {type: run-command, with: {argv: [sh, -c, 'echo undo prepare']}}
  - id: prod_only
    type: run-command
    when: "params.env == 'production'"
    with: {argv: ["true"]}
  - id: migrate
    type: run-command
    with: {argv: [sh, -c, 'sleep 0.2; echo "half <applied> & broken" >&2; exit 4']}
    rollback:
      - {type: run-command, with: {argv: [sh, -c, 'echo undo migrate']}}
  - id: verify
    type: run-command
    with: {argv: ["true"]}
`

// findChromium returns the path of a Chromium binary. Without one the test
// is skipped, or fails in CI (CI=true), where the browser check must run.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const how = "install it with: apt-get install -y --no-install-recommends chromium (.ci/run does)"
	if os.Getenv("CI") == "true" {
		t.Fatalf("Chromium is required in CI to check the HTML report in a browser; %s", how)
	}
	t.Skipf("Chromium (chromium or chromium-browser) is not on PATH, so the HTML report is not checked in a browser; %s", how)
	return ""
}

// chromium runs headless Chromium on url with extra flags and returns its
// stdout. It tries --headless, then --headless=new.
func chromium(t *testing.T, bin, url string, extra ...string) []byte {
	t.Helper()
	var lastErr error
	var lastOut []byte
	for _, mode := range []string{"--headless", "--headless=new"} {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		args := []string{mode, "--no-sandbox", "--disable-gpu", "--disable-background-networking",
			"--disable-extensions", "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars",
			"--user-data-dir=" + t.TempDir()}
		args = append(append(args, extra...), url)
		cmd := exec.CommandContext(ctx, bin, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		cancel()
		if err == nil {
			return stdout.Bytes()
		}
		lastErr, lastOut = err, stderr.Bytes()
	}
	t.Fatalf("chromium %s: %v\n%s", url, lastErr, lastOut)
	return nil
}

// TestHTMLReportInChromium runs a plan that fails and rolls back, writes
// its HTML report with run --report-format html, and opens the page in
// headless Chromium: the rendered DOM has every step, the failed one marked
// failed, the run's status, and no reference to anything outside the file;
// a screenshot of it is a real image with the failure's red in it.
func TestHTMLReportInChromium(t *testing.T) {
	bin := findChromium(t)
	dir := t.TempDir()
	plan := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(plan, []byte(htmlTestPlan), 0o600); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(dir, "report.html")
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"run", plan, "--journal-dir", filepath.Join(dir, "journal"), "--report", report, "--report-format", "html"},
		strings.NewReader(""), &out, &errb, nil)
	if code != engine.ExitFailed {
		t.Fatalf("run exited %d, want 1 (rolled back)\n%s%s", code, out.String(), errb.String())
	}
	if errb.Len() > 0 {
		t.Fatalf("run wrote to stderr:\n%s", errb.String())
	}

	dom := string(chromium(t, bin, "file://"+report, "--dump-dom"))
	if !strings.Contains(dom, "</html>") {
		t.Fatalf("Chromium did not render the page; --dump-dom gave:\n%s", dom)
	}
	for _, want := range []string{
		`<title>htmlreport@3 rolled-back`,
		`id="run-status" data-status="rolled-back">rolled-back</span>`,
		`<dd id="exit-code">1</dd>`,
		`<span class="chain-ok">intact</span>`,
		`<tr class="step ok" data-step="prepare" data-phase="main" data-status="succeeded">`,
		`<tr class="step idle" data-step="prod_only" data-phase="main" data-status="skipped">`,
		`<tr class="step fail failed" data-step="migrate" data-phase="main" data-status="failed">`,
		`data-step="migrate.rollback[0]" data-phase="rollback" data-status="succeeded"`,
		`data-step="prepare.rollback[0]" data-phase="rollback" data-status="succeeded"`,
		`data-step="verify" data-phase="main" data-status="not-run"`,
		`<span class="marker">FAILED:</span> migrate</p>`,
		`sh exited 4: half &lt;applied&gt; &amp; broken`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered DOM lacks %s", want)
		}
	}
	// The failed step's row carries the marker, and only that main step.
	failedRow := regexp.MustCompile(`(?s)<tr class="step fail failed" data-step="migrate"[^>]*>\s*<td><span class="marker">FAILED </span><strong>migrate</strong><br><span class="marker">the run failed here</span>`)
	if !failedRow.MatchString(dom) {
		t.Errorf("the migrate row is not marked FAILED")
	}
	if n := strings.Count(dom, "the run failed here"); n != 1 {
		t.Errorf("%d steps marked as where the run failed, want 1", n)
	}
	// The rollback ran in saga order: migrate's own rollback first.
	if i, j := strings.Index(dom, `data-step="migrate.rollback[0]"`), strings.Index(dom, `data-step="prepare.rollback[0]"`); i < 0 || j < 0 || i > j {
		t.Errorf("rollback rows out of order (migrate.rollback at %d, prepare.rollback at %d)", i, j)
	}
	assertSelfContained(t, dom)

	shot := filepath.Join(dir, "report.png")
	chromium(t, bin, "file://"+report, "--screenshot="+shot, "--window-size=1280,900")
	if dst := os.Getenv("CUTOVER_REPORT_SCREENSHOT"); dst != "" {
		// For looking at the page: CUTOVER_REPORT_SCREENSHOT=/tmp/x.png.
		if data, err := os.ReadFile(shot); err == nil {
			_ = os.WriteFile(dst, data, 0o644)
		}
	}
	checkScreenshot(t, shot)
}

// assertSelfContained fails if the page refers to anything outside it: a
// URL with a scheme, a protocol-relative reference, or a src, href, srcset,
// action, poster or CSS url() that is not a data: URL.
func assertSelfContained(t *testing.T, page string) {
	t.Helper()
	lower := strings.ToLower(page)
	for _, bad := range []string{"http:", "https:", "ftp:", "ws:", "wss:", "//", "@import", "<script", "<link", "<iframe", "<object", "<embed", "<img"} {
		if i := strings.Index(lower, bad); i >= 0 {
			t.Errorf("page refers outside itself: %q at %d: …%s…", bad, i, page[max(0, i-60):min(len(page), i+60)])
		}
	}
	ref := regexp.MustCompile(`(?i)\b(src|href|srcset|action|poster|formaction)\s*=\s*["']?([^"'\s>]*)|url\(\s*["']?([^"')\s]*)`)
	for _, m := range ref.FindAllStringSubmatch(page, -1) {
		target := m[2] + m[3]
		if !strings.HasPrefix(strings.ToLower(target), "data:") {
			t.Errorf("page refers outside itself: %s", m[0])
		}
	}
	if !strings.Contains(page, `content="default-src 'none'; style-src 'unsafe-inline'`) {
		t.Errorf("page lacks its Content-Security-Policy")
	}
}

// checkScreenshot checks that the PNG at path decodes, has the window's
// size, and shows the failure's red (the status badge, the failed step's
// bar and marker): the inline styles were applied.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if len(data) == 0 {
		t.Fatalf("screenshot %s is empty", path)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	b := img.Bounds()
	if b.Dx() != 1280 || b.Dy() != 900 {
		t.Errorf("screenshot is %dx%d, want 1280x900", b.Dx(), b.Dy())
	}
	red, colours := 0, map[uint32]bool{}
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			r, g, bl = r>>8, g>>8, bl>>8
			colours[r<<16|g<<8|bl] = true
			// #cf222e, the CSS --fail colour.
			if r > 190 && r < 225 && g > 20 && g < 50 && bl > 30 && bl < 65 {
				red++
			}
		}
	}
	if len(colours) < 16 {
		t.Errorf("screenshot has %d colours: a blank page?", len(colours))
	}
	if red < 100 {
		t.Errorf("screenshot shows %d sampled pixels of the failure red, want at least 100: styles not applied?", red)
	}
}

// TestHTMLReportEscapes renders a report whose every journaled string holds
// markup: the page shows it as text and never as markup or a reference.
func TestHTMLReportEscapes(t *testing.T) {
	const evil = `<script>alert("x")</script><img src=https://example.com/x.png> & 'q' </style>`
	exit := 1
	rep := runReport{
		RunID:    "r-" + evil,
		Plan:     reportPlan{Name: "p" + evil, Version: 1, SHA256: evil},
		Status:   engine.StatusRolledBack,
		ExitCode: &exit,
		ChainOK:  true,
		Operator: evil, Host: evil, Engine: evil, Message: evil, Journal: evil,
		Params: map[string]any{"x": evil},
		NotRun: []string{"n" + evil},
		Steps: []reportStep{{
			Step: "s" + evil, Type: "run-command", Phase: "main", Status: engine.StepFailed, Attempts: 1,
			Error:   evil,
			Guard:   &engine.Check{Expr: evil, Result: "true"},
			Asserts: []engine.Check{{Expr: evil, Result: "false", Values: map[string]any{"v": evil}}},
			Outputs: map[string]any{"o" + evil: evil},
			EndMS:   1, DurationMS: 1,
		}},
		RollbackBegin: &reportRollback{After: "s" + evil, Message: evil, Pending: []string{evil}},
		Events:        []reportEvent{{Type: "lease" + evil, Text: evil}},
		DurationMS:    2,
	}
	var b bytes.Buffer
	if err := writeHTMLReport(&b, rep); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, bad := range []string{"<script", "<img", "</style> &"} {
		if strings.Contains(page, bad) {
			t.Errorf("unescaped %q in the page", bad)
		}
	}
	if !strings.Contains(page, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
		t.Errorf("escaped script text missing")
	}
}

// TestHTMLRowGeometry places bars on the run's timeline: offset and width
// in percent of the run, never past its end, never invisible.
func TestHTMLRowGeometry(t *testing.T) {
	for _, c := range []struct {
		start, end, total float64
		left, width       string
	}{
		{0, 50, 100, "0.00", "50.00"},
		{25, 25, 100, "25.00", "0.50"},
		{99.9, 100, 100, "99.50", "0.50"},
		{10, 30, 40, "25.00", "50.00"},
	} {
		row := htmlRow(reportStep{Step: "a", Phase: "main", StartMS: c.start, EndMS: c.end}, c.total, "")
		if row.Left != c.left || row.Width != c.width {
			t.Errorf("%v..%v of %v: left %s width %s, want %s %s", c.start, c.end, c.total, row.Left, row.Width, c.left, c.width)
		}
	}
	if row := htmlRow(reportStep{Step: "a"}, 0, ""); row.Bar {
		t.Errorf("a run of no duration draws a bar")
	}
}
