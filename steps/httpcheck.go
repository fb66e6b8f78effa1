package steps

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgcutover/cutover/schema"
)

// HTTP check limits: how much of a response body is read and matched, how
// much of it becomes the body_tail output, and how much of it an error quotes.
const (
	httpBodyLimit   = 1 << 20
	httpTailBytes   = 2048
	httpQuotedBytes = 200
)

func init() {
	Register(&Type{
		Name:    "http-check",
		Summary: "Call an HTTP(S) endpoint of the app and check its status, body and latency.",
		Doc: "Sends one `method` request to `url` with `headers` (values may be `{secret: name}`) and `body`, and waits at most " +
			"`timeout` for the whole response. The status must be one of `expect_status`; the first 1 MiB of the body must contain " +
			"`body_contains` and match `body_regex` (RE2 syntax) when they are set; the time from sending the request to the end of " +
			"the body must not exceed `max_latency` when it is set.\n\n" +
			"Redirects are never followed: a 3xx answer is the status that is checked, and a failure names where it pointed. " +
			"HTTPS verifies the server's certificate against the system roots, or against `ca_file` only when it is set; " +
			"`insecure_skip_verify` turns verification off and is for tests. HTTP_PROXY, HTTPS_PROXY and NO_PROXY apply as they do for curl.\n\n" +
			"A refused connection, a timeout, an unexpected status or body fail the step in a way `retry` repeats, so a step with " +
			"`retry: {attempts: 10, backoff: 3s}` waits for an app that is still starting. A TLS failure (unknown authority, wrong " +
			"host name, expired certificate, a server that does not speak TLS), an invalid `url`, `ca_file` or `body_regex` fail at once. " +
			"Secrets that reach the response (an echoed header) are masked in `body_tail`, `headers` and errors; request headers are never shown.",
		Inputs: []schema.Field{
			{Name: "url", Kind: schema.String, Required: true, Doc: "http:// or https:// URL to call"},
			{Name: "method", Kind: schema.String, Enum: []string{"GET", "POST", "HEAD"}, Default: "GET", Doc: "request method"},
			{Name: "body", Kind: schema.String, Doc: "request body (with POST); set Content-Type in headers"},
			{Name: "headers", Kind: schema.StringMap, Secret: true, Doc: "request headers; Host sets the virtual host"},
			{Name: "expect_status", Kind: schema.IntList, Default: []int64{200}, Doc: "status codes that count as success (a redirect is not followed, so 3xx counts here too)"},
			{Name: "body_contains", Kind: schema.String, Doc: "text the response body must contain"},
			{Name: "body_regex", Kind: schema.String, Doc: "RE2 regular expression the response body must match"},
			{Name: "timeout", Kind: schema.Duration, Default: 5 * time.Second, Doc: "give up on the request after this long"},
			{Name: "max_latency", Kind: schema.Duration, Default: time.Duration(0), Doc: "fail when the response (body included) takes longer; 0 means no limit"},
			{Name: "ca_file", Kind: schema.String, Doc: "PEM file of the CA(s) that sign the server's certificate, instead of the system roots"},
			{Name: "insecure_skip_verify", Kind: schema.Bool, Default: false, Literal: true, Doc: "do not verify the server's certificate (tests only)"},
		},
		Outputs: []schema.Output{
			{Name: "status", Kind: schema.Int, Doc: "the response's status code (0 when there was no response)"},
			{Name: "latency_ms", Kind: schema.Int, Doc: "milliseconds from sending the request to the end of the body"},
			{Name: "body_tail", Kind: schema.String, Doc: "last 2 KiB of the body read, secrets masked"},
			{Name: "headers", Kind: schema.StringMap, Doc: "response headers by canonical name, repeated ones joined with \", \", secrets masked"},
			{Name: "location", Kind: schema.String, Doc: "the Location header of a redirect, empty otherwise"},
		},
		DryRun:  "runs (it is read-only)",
		Example: "- id: health\n  type: http-check\n  with: {url: \"https://app.internal/healthz\", expect_status: [200], body_contains: ok, max_latency: 2s}\n  retry: {attempts: 10, backoff: 3s}\n",
		Impl:    httpCheck{},
	})
}

type httpCheck struct{}

// Run sends the request and checks the response.
func (httpCheck) Run(ctx context.Context, c *Call) (Outputs, error) {
	a := c.Args
	mask := c.Mask
	if mask == nil {
		mask = func(s string) string { return s }
	}
	method := a.String("method")
	if method == "" {
		method = http.MethodGet
	}
	u, err := httpCheckURL(a.String("url"))
	if err != nil {
		return nil, Permanent(err)
	}
	what := method + " " + u.Redacted()
	var re *regexp.Regexp
	if expr := a.String("body_regex"); expr != "" {
		if re, err = regexp.Compile(expr); err != nil {
			return nil, Permanent(fmt.Errorf("body_regex %q: %v", expr, err))
		}
	}
	tlsConfig := &tls.Config{InsecureSkipVerify: a.Bool("insecure_skip_verify")}
	if ca := a.String("ca_file"); ca != "" {
		pool, err := httpCAPool(ca)
		if err != nil {
			return nil, Permanent(err)
		}
		tlsConfig.RootCAs = pool
	}
	timeout := a.Duration("timeout")
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var body io.Reader
	if b := a.String("body"); b != "" {
		body = strings.NewReader(b)
	}
	req, err := http.NewRequestWithContext(rctx, method, u.String(), body)
	if err != nil {
		return nil, Permanent(fmt.Errorf("%s: %v", what, err))
	}
	for k, v := range a.Map("headers") {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{}).DialContext,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: timeout,
		DisableKeepAlives:   true,
		ForceAttemptHTTP2:   true,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{
		Transport: transport,
		// A redirect is the answer, never followed: it could lead anywhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	out := Outputs{"status": int64(0), "latency_ms": int64(0), "body_tail": "", "headers": map[string]string{}, "location": ""}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		out["latency_ms"] = time.Since(start).Milliseconds()
		return out, httpRequestError(ctx, rctx, what, timeout, err)
	}
	data, readErr := io.ReadAll(io.LimitReader(resp.Body, httpBodyLimit))
	resp.Body.Close()
	latency := time.Since(start)

	tailText := string(data)
	if len(tailText) > httpTailBytes {
		tailText = tailText[len(tailText)-httpTailBytes:]
		for len(tailText) > 0 && tailText[0]&0xC0 == 0x80 {
			tailText = tailText[1:] // no half character at the start
		}
	}
	headers := make(map[string]string, len(resp.Header))
	for k, vs := range resp.Header {
		headers[k] = mask(strings.Join(vs, ", "))
	}
	location := ""
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		location = mask(resp.Header.Get("Location"))
	}
	out["status"] = int64(resp.StatusCode)
	out["latency_ms"] = latency.Milliseconds()
	out["body_tail"] = mask(strings.ToValidUTF8(tailText, "\uFFFD"))
	out["headers"] = headers
	out["location"] = location
	if readErr != nil {
		return out, fmt.Errorf("%s: status %d, reading the body: %v", what, resp.StatusCode, httpCause(readErr, rctx, ctx, timeout))
	}

	quote := ""
	if q := httpQuote(mask(string(data))); q != "" {
		quote = "; body: " + q
	}
	want := a.Ints("expect_status")
	if len(want) == 0 {
		want = []int64{200}
	}
	if !httpStatusIn(want, int64(resp.StatusCode)) {
		msg := fmt.Sprintf("%s: status %d, want %s", what, resp.StatusCode, httpStatusList(want))
		if location != "" {
			msg += "; redirected to " + location + " (not followed)"
		}
		return out, errors.New(msg + quote)
	}
	var problems []string
	if s := a.String("body_contains"); s != "" && !strings.Contains(string(data), s) {
		problems = append(problems, fmt.Sprintf("the body does not contain %q", s))
	}
	if re != nil && !re.Match(data) {
		problems = append(problems, fmt.Sprintf("the body does not match body_regex %q", re.String()))
	}
	if limit := a.Duration("max_latency"); limit > 0 && latency > limit {
		problems = append(problems, fmt.Sprintf("took %s, over max_latency %s", latency.Round(time.Millisecond), limit))
	}
	if len(problems) > 0 {
		return out, fmt.Errorf("%s: status %d but %s%s", what, resp.StatusCode, strings.Join(problems, "; "), quote)
	}
	return out, nil
}

// httpCheckURL parses an http(s) URL without quoting it back in an error: it
// may carry a password.
func httpCheckURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("url is empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("url is not a valid URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("url %s: the scheme must be http or https", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("url %s has no host", u.Redacted())
	}
	return u, nil
}

// httpCAPool reads the CA certificates of ca_file.
func httpCAPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s holds no PEM certificate", path)
	}
	return pool, nil
}

// httpRequestError explains a request that got no response. TLS failures
// are permanent; anything else (refused, reset, timed out, DNS) may be an
// app that is still starting, so a retry is worth it.
func httpRequestError(ctx, rctx context.Context, what string, timeout time.Duration, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var (
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
		verifyErr  *tls.CertificateVerificationError
		recordErr  tls.RecordHeaderError
		alertErr   tls.AlertError
	)
	switch {
	case errors.As(err, &unknownCA):
		return Permanent(fmt.Errorf("%s: TLS: the server's certificate is signed by an unknown authority (%s): set ca_file to the CA that signs it", what, httpCertIssuer(unknownCA.Cert)))
	case errors.As(err, &hostErr):
		return Permanent(fmt.Errorf("%s: TLS: %v", what, hostErr))
	case errors.As(err, &invalidErr):
		return Permanent(fmt.Errorf("%s: TLS: %v", what, invalidErr))
	case errors.As(err, &verifyErr):
		return Permanent(fmt.Errorf("%s: TLS: %v", what, verifyErr.Err))
	case errors.As(err, &recordErr) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return Permanent(fmt.Errorf("%s: TLS: the server did not answer in TLS (is it plain HTTP? use http://)", what))
	case errors.As(err, &alertErr):
		return Permanent(fmt.Errorf("%s: TLS: the server refused the handshake: %v", what, alertErr))
	}
	return fmt.Errorf("%s: %v", what, httpCause(err, rctx, ctx, timeout))
}

// httpCause words a transport error.
func httpCause(err error, rctx, ctx context.Context, timeout time.Duration) string {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "no response before the step's timeout"
	case ctx.Err() != nil:
		return "interrupted"
	case rctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
		return "no response within " + timeout.String()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused (nothing listens there, or not yet)"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by the server"
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsNotFound {
			return "cannot resolve " + dnsErr.Name + ": no such host"
		}
		return "cannot resolve " + dnsErr.Name + ": " + dnsErr.Err
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Op + ": " + opErr.Err.Error()
	}
	return err.Error()
}

func httpCertIssuer(c *x509.Certificate) string {
	if c == nil {
		return "no certificate"
	}
	return "issuer " + c.Issuer.String()
}

// httpQuote is the end of a body as an error quotes it: one line, at most
// httpQuotedBytes bytes, valid UTF-8.
func httpQuote(body string) string {
	s := strings.Join(strings.Fields(strings.ToValidUTF8(body, "\uFFFD")), " ")
	if len(s) <= httpQuotedBytes {
		return s
	}
	s = s[len(s)-httpQuotedBytes:]
	for len(s) > 0 && s[0]&0xC0 == 0x80 {
		s = s[1:]
	}
	return "…" + s
}

func httpStatusIn(list []int64, v int64) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// httpStatusList is "200", "200 or 204", or "200, 204 or 301".
func httpStatusList(codes []int64) string {
	s := make([]string, len(codes))
	sorted := append([]int64(nil), codes...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	for i, c := range sorted {
		s[i] = strconv.FormatInt(c, 10)
	}
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}
