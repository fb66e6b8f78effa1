package steps_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgcutover/cutover/engine"
	"github.com/pgcutover/cutover/schema"
	"github.com/pgcutover/cutover/steps"
)

// httpCanary stands for a secret: it must never come out of a step.
const httpCanary = "Bearer Http-Canary-7c1e\"$x y"

// httpCall builds the Call http-check receives: inputs as the engine
// resolves them, and a Mask that masks the canary the way the engine does.
func httpCall(t *testing.T, with map[string]any) *steps.Call {
	t.Helper()
	typ, ok := steps.Lookup("http-check")
	if !ok {
		t.Fatal("no step type http-check")
	}
	values := map[string]any{}
	for k, v := range with {
		found := false
		for _, f := range typ.Inputs {
			found = found || f.Name == k
		}
		if !found {
			t.Fatalf("http-check declares no input %s", k)
		}
		values[k] = v
	}
	return &steps.Call{
		StepID: "health",
		Args:   steps.Args{Values: values, Fields: typ.Inputs},
		Out:    io.Discard,
		Mask:   func(s string) string { return strings.ReplaceAll(s, httpCanary, "[secret:api_token]") },
		MaskWriter: func(w io.Writer) (io.Writer, func() error) {
			return w, func() error { return nil }
		},
	}
}

func runHTTPCheck(t *testing.T, with map[string]any) (steps.Outputs, error) {
	t.Helper()
	typ, _ := steps.Lookup("http-check")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return typ.Impl.Run(ctx, httpCall(t, with))
}

func httpWantError(t *testing.T, err error, want string, permanent bool) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %q", want)
	}
	if err.Error() != want {
		t.Errorf("error:\n got: %s\nwant: %s", err, want)
	}
	if steps.IsPermanent(err) != permanent {
		t.Errorf("IsPermanent = %v, want %v", !permanent, permanent)
	}
	httpNoCanary(t, "error", err.Error())
}

// httpNoCanary fails when text holds the canary as is or encoded.
func httpNoCanary(t *testing.T, where, text string) {
	t.Helper()
	js, _ := json.Marshal(httpCanary)
	for _, f := range []string{httpCanary, "Http-Canary-7c1e", url.QueryEscape(httpCanary), string(js[1 : len(js)-1]),
		base64.StdEncoding.EncodeToString([]byte(httpCanary))} {
		if strings.Contains(text, f) {
			t.Errorf("%s leaks the secret (%q): %s", where, f, text)
		}
	}
}

// httpServer serves h on loopback until the test ends.
func httpServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func reply(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-App", "web-1")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func TestHTTPCheckHealthy(t *testing.T) {
	srv := httpServer(t, reply(200, "status: ok\n"))
	out, err := runHTTPCheck(t, map[string]any{"url": srv.URL + "/healthz", "body_contains": "ok", "body_regex": `(?m)^status: (ok|degraded)$`})
	if err != nil {
		t.Fatal(err)
	}
	if out["status"] != int64(200) || out["body_tail"] != "status: ok\n" || out["location"] != "" {
		t.Errorf("outputs %v", out)
	}
	if h := out["headers"].(map[string]string); h["X-App"] != "web-1" || h["Content-Type"] != "text/plain" {
		t.Errorf("headers %v", h)
	}
	if ms, ok := out["latency_ms"].(int64); !ok || ms < 0 {
		t.Errorf("latency_ms %#v", out["latency_ms"])
	}
}

func TestHTTPCheckWrongStatusFails(t *testing.T) {
	srv := httpServer(t, reply(503, "database\nunavailable\n"))
	out, err := runHTTPCheck(t, map[string]any{"url": srv.URL + "/healthz"})
	httpWantError(t, err, "GET "+srv.URL+"/healthz: status 503, want 200; body: database unavailable", false)
	if out["status"] != int64(503) || out["body_tail"] != "database\nunavailable\n" {
		t.Errorf("outputs %v", out)
	}

	_, err = runHTTPCheck(t, map[string]any{"url": srv.URL + "/healthz", "expect_status": []int64{204, 200}})
	httpWantError(t, err, "GET "+srv.URL+"/healthz: status 503, want 200 or 204; body: database unavailable", false)

	if _, err := runHTTPCheck(t, map[string]any{"url": srv.URL + "/healthz", "expect_status": []int64{503}}); err != nil {
		t.Errorf("503 expected: %v", err)
	}
}

func TestHTTPCheckBodyMismatchFails(t *testing.T) {
	srv := httpServer(t, reply(200, "status: starting"))
	u := srv.URL + "/healthz"
	_, err := runHTTPCheck(t, map[string]any{"url": u, "body_contains": "ready"})
	httpWantError(t, err, "GET "+u+`: status 200 but the body does not contain "ready"; body: status: starting`, false)

	_, err = runHTTPCheck(t, map[string]any{"url": u, "body_contains": "ready", "body_regex": `ok$`})
	httpWantError(t, err, "GET "+u+`: status 200 but the body does not contain "ready"; the body does not match body_regex "ok$"; body: status: starting`, false)

	_, err = runHTTPCheck(t, map[string]any{"url": u, "body_regex": `(ok`})
	httpWantError(t, err, "body_regex \"(ok\": error parsing regexp: missing closing ): `(ok`", true)
}

func TestHTTPCheckLatencyOverMaxFails(t *testing.T) {
	srv := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
		io.WriteString(w, "slow")
	})
	u := srv.URL + "/healthz"
	out, err := runHTTPCheck(t, map[string]any{"url": u, "max_latency": 20 * time.Millisecond})
	if err == nil {
		t.Fatal("no error")
	}
	want := regexp.MustCompile(`^GET ` + regexp.QuoteMeta(u) + `: status 200 but took [0-9.]+m?s, over max_latency 20ms; body: slow$`)
	if !want.MatchString(err.Error()) {
		t.Errorf("error %q does not match %s", err, want)
	}
	if steps.IsPermanent(err) {
		t.Error("a slow answer is worth a retry")
	}
	if ms := out["latency_ms"].(int64); ms < 20 {
		t.Errorf("latency_ms %d is not over the limit it failed", ms)
	}
}

func TestHTTPCheckReportsRedirectsWithoutFollowing(t *testing.T) {
	var hits atomic.Int64
	elsewhere := httpServer(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	srv := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", elsewhere.URL+"/login")
		w.WriteHeader(http.StatusFound)
	})
	u := srv.URL + "/healthz"
	out, err := runHTTPCheck(t, map[string]any{"url": u})
	httpWantError(t, err, "GET "+u+": status 302, want 200; redirected to "+elsewhere.URL+"/login (not followed)", false)
	if hits.Load() != 0 {
		t.Error("the redirect was followed")
	}
	if out["location"] != elsewhere.URL+"/login" {
		t.Errorf("location %v", out["location"])
	}
	if _, err := runHTTPCheck(t, map[string]any{"url": u, "expect_status": []int64{301, 302}}); err != nil {
		t.Errorf("an expected redirect fails: %v", err)
	}
}

func TestHTTPCheckConnectionRefusedIsRetryable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	u := "http://" + addr + "/healthz"
	out, err := runHTTPCheck(t, map[string]any{"url": u})
	httpWantError(t, err, "GET "+u+": connection refused (nothing listens there, or not yet)", false)
	if out["status"] != int64(0) {
		t.Errorf("status %v without a response", out["status"])
	}
}

func TestHTTPCheckTimeoutIsRetryable(t *testing.T) {
	srv := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(20 * time.Second):
		}
	})
	u := srv.URL + "/healthz"
	_, err := runHTTPCheck(t, map[string]any{"url": u, "timeout": 50 * time.Millisecond})
	httpWantError(t, err, "GET "+u+": no response within 50ms", false)
}

func TestHTTPCheckSendsMethodBodyAndHeadersWithoutEchoingThem(t *testing.T) {
	var got atomic.Value
	srv := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(fmt.Sprintf("%s %s host=%s auth=%t body=%s", r.Method, r.URL.Path, r.Host, r.Header.Get("Authorization") == httpCanary, b))
		// A debugging endpoint that echoes the credentials it was sent.
		w.Header().Set("X-Seen-Auth", r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, "rejected: "+r.Header.Get("Authorization"))
	})
	u := srv.URL + "/api/write-check"
	out, err := runHTTPCheck(t, map[string]any{
		"url": u, "method": "POST", "body": `{"probe":true}`,
		"headers": map[string]string{"Authorization": httpCanary, "Host": "app.internal", "Content-Type": "application/json"},
	})
	httpWantError(t, err, "POST "+u+": status 401, want 200; body: rejected: [secret:api_token]", false)
	if s := got.Load(); s != `POST /api/write-check host=app.internal auth=true body={"probe":true}` {
		t.Errorf("server saw %v", s)
	}
	httpNoCanary(t, "outputs", fmt.Sprint(out))
	if h := out["headers"].(map[string]string)["X-Seen-Auth"]; h != "[secret:api_token]" {
		t.Errorf("X-Seen-Auth output %q", h)
	}

	head, err := runHTTPCheck(t, map[string]any{"url": u, "method": "HEAD", "expect_status": []int64{401}})
	if err != nil || head["body_tail"] != "" || got.Load() != "HEAD /api/write-check host="+strings.TrimPrefix(srv.URL, "http://")+" auth=false body=" {
		t.Errorf("HEAD: %v %v, server saw %v", head, err, got.Load())
	}
}

func TestHTTPCheckTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(reply(200, "ok"))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	u := srv.URL + "/healthz"

	_, err := runHTTPCheck(t, map[string]any{"url": u})
	httpWantError(t, err, "GET "+u+": TLS: the server's certificate is signed by an unknown authority (issuer "+srv.Certificate().Issuer.String()+"): set ca_file to the CA that signs it", true)

	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runHTTPCheck(t, map[string]any{"url": u, "ca_file": ca}); err != nil {
		t.Errorf("with ca_file: %v", err)
	}
	if _, err := runHTTPCheck(t, map[string]any{"url": u, "insecure_skip_verify": true}); err != nil {
		t.Errorf("with insecure_skip_verify: %v", err)
	}
	// The certificate names 127.0.0.1 and example.com, not localhost.
	local := strings.Replace(u, "127.0.0.1", "localhost", 1)
	_, err = runHTTPCheck(t, map[string]any{"url": local, "ca_file": ca})
	httpWantError(t, err, "GET "+local+": TLS: x509: certificate is valid for example.com, *.example.com, not localhost", true)

	plain := httpServer(t, reply(200, "ok"))
	tlsToPlain := strings.Replace(plain.URL, "http://", "https://", 1) + "/healthz"
	_, err = runHTTPCheck(t, map[string]any{"url": tlsToPlain})
	httpWantError(t, err, "GET "+tlsToPlain+": TLS: the server did not answer in TLS (is it plain HTTP? use http://)", true)

	none := filepath.Join(t.TempDir(), "none.pem")
	_, err = runHTTPCheck(t, map[string]any{"url": u, "ca_file": none})
	httpWantError(t, err, "ca_file: open "+none+": no such file or directory", true)
}

func TestHTTPCheckInvalidURLs(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"", "url is empty"},
		{"ftp://files.internal/x", "url ftp://files.internal/x: the scheme must be http or https"},
		{"https://user:" + url.PathEscape("Http-Canary-7c1e") + "@[::1/healthz", "url is not a valid URL: missing ']' in host"},
		{"http:///healthz", "url http:///healthz has no host"},
	} {
		_, err := runHTTPCheck(t, map[string]any{"url": tc.url})
		httpWantError(t, err, tc.want, true)
	}
}

func TestHTTPCheckExpectStatusDecodes(t *testing.T) {
	src := `apiVersion: cutover/v1
kind: Plan
name: x
version: 1
steps:
  - id: health
    type: http-check
    with: {url: "https://app.internal/healthz", expect_status: [200, 204], timeout: 2s, max_latency: 500ms}
`
	if _, ds := schema.Decode("x.yaml", []byte(src), steps.Types); len(ds) > 0 {
		t.Errorf("decode: %s", ds.Format())
	}
}

// A plan that switches the app's configuration and then finds the app
// unhealthy rolls the file back byte for byte, and nothing of the secrets
// reaches the journal.
func TestHTTPCheckFailureRollsBackSwitchConfigInAPlan(t *testing.T) {
	for _, tc := range []struct {
		status     int
		runStatus  string
		wantSwitch bool
	}{
		{http.StatusOK, engine.StatusSucceeded, true},
		{http.StatusServiceUnavailable, engine.StatusRolledBack, false},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "db.env")
			original := "# app\r\nexport DATABASE_URL=postgres://old/db\r\nDEBUG=0"
			if err := os.WriteFile(file, []byte(original), 0o640); err != nil {
				t.Fatal(err)
			}
			newURL := "postgres://app:" + httpCanary + "@new.internal/db\nx"
			srv := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-App", "web-1")
				w.WriteHeader(tc.status)
				io.WriteString(w, "token was "+r.Header.Get("Authorization"))
			})
			src := fmt.Sprintf(`apiVersion: cutover/v1
kind: Plan
name: switch-and-check
version: 1
secrets:
  new_url: {from: env, name: NEW_DATABASE_URL}
  api_token: {from: env, name: API_TOKEN}
steps:
  - id: switch
    type: switch-config
    with: {file: %q, set: {DATABASE_URL: {secret: new_url}}}
    rollback:
      - type: switch-config
        with:
          file: %q
          restore: "${{ steps.switch.outputs.backup }}"
          restore_sha256: "${{ steps.switch.outputs.previous_sha256 }}"
  - id: health
    type: http-check
    with:
      url: "%s/healthz"
      headers: {Authorization: {secret: api_token}}
      expect_status: [200]
    assert:
      - "outputs.headers['X-App'] == 'web-1'"
      - "steps.switch.outputs.changed == ['DATABASE_URL']"
`, file, file, srv.URL)
			p, ds := schema.Decode("plan.yaml", []byte(src), steps.Types)
			if len(ds) > 0 {
				t.Fatalf("decode: %s", ds.Format())
			}
			prog, ds := engine.Compile(p)
			if len(ds) > 0 {
				t.Fatalf("compile: %s", ds.Format())
			}
			env := map[string]string{"NEW_DATABASE_URL": newURL, "API_TOKEN": httpCanary}
			res := engine.Run(context.Background(), prog, engine.Options{
				JournalDir: t.TempDir(), Version: "test", Out: io.Discard,
				LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
			})
			if res.Status != tc.runStatus {
				t.Fatalf("run %s (%v), want %s", res.Status, res.Err, tc.runStatus)
			}
			got, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantSwitch {
				if !bytes.Contains(got, []byte(`export DATABASE_URL="postgres://app:`)) {
					t.Errorf("the file was not switched: %q", got)
				}
			} else if !bytes.Equal(got, []byte(original)) {
				t.Errorf("the file was not restored byte for byte: %q", got)
			}
			journal, err := os.ReadFile(res.Journal)
			if err != nil {
				t.Fatal(err)
			}
			httpNoCanary(t, "journal", string(journal))
			if res.Err != nil {
				httpNoCanary(t, "run error", res.Err.Error())
			}
			if !bytes.Contains(journal, []byte(`"set":{"DATABASE_URL":"[secret:new_url]"}`)) {
				t.Errorf("the journal does not show the secret by name:\n%s", journal)
			}
		})
	}
}
