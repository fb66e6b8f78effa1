package steps

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcutover/cutover/schema"
)

// systemRoots is what verified_against says when the chain was checked
// against the operating system's trust store.
const systemRoots = "system roots"

// tlsVersionNames spell TLS versions the way pg_stat_ssl does.
var tlsVersionNames = map[uint16]string{
	tls.VersionTLS10: "TLSv1",
	tls.VersionTLS11: "TLSv1.1",
	tls.VersionTLS12: "TLSv1.2",
	tls.VersionTLS13: "TLSv1.3",
}

// minTLSVersions maps the min_tls input to a TLS version.
var minTLSVersions = map[string]uint16{"1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

func init() {
	Register(&Type{
		Name:    "tls-check",
		Summary: "Prove that a target's connection is TLS, verified and current, and that the server refuses plaintext.",
		Doc: "Uses the run's connection to `target`, opened with the target's own settings and no plaintext fallback " +
			"unless its sslmode asks for one, and reads the negotiated TLS version, cipher and server certificate " +
			"on the client side: that, not the server's view, is the proof that the connection is encrypted. " +
			"`pg_stat_ssl` is read as a cross-check; behind a pooler (the backend pid differs from the one the " +
			"connection announced) it describes the pooler's own connection to the server.\n\n" +
			"Whether the certificate was verified follows from the sslmode pgx actually applied: `verify-full` checks " +
			"the chain and the host name, `verify-ca` (or `require` with an sslrootcert) the chain only, and `require` " +
			"without an sslrootcert checks nothing. `libpq_note` says where libpq, and so a Django app with the same " +
			"settings, would behave differently.\n\n" +
			"With `reject_plaintext`, one extra connection is made with `sslmode=disable` and no credentials at all " +
			"(it refuses to authenticate), closed at once: a server that answers `no encryption` (SQLSTATE 28000) " +
			"refuses plaintext; one that asks for a password or lets it in does not.\n\n" +
			"The step fails, listing every reason, when the connection is not TLS, the TLS version is below `min_tls`, " +
			"the chain or host name is not verified as required, the certificate expires within `cert_min_days`, the " +
			"server accepts plaintext, or the target's sslmode is disable, allow or prefer. A connection refused for " +
			"a certificate, TLS or password problem fails at once, without retries, with what to change.",
		Inputs: []schema.Field{
			{Name: "target", Kind: schema.String, Ref: schema.RefTarget, Required: true, Doc: "the target to check"},
			{Name: "min_tls", Kind: schema.String, Enum: []string{"1.2", "1.3"}, Default: "1.2", Doc: "lowest acceptable TLS version"},
			{Name: "require_verified", Kind: schema.Bool, Default: true, Doc: "the certificate chain must have been verified against a CA (verify-ca, verify-full, or require with sslrootcert)"},
			{Name: "require_hostname", Kind: schema.Bool, Default: false, Doc: "the certificate must also have been checked against the host name (verify-full)"},
			{Name: "cert_min_days", Kind: schema.Int, Default: int64(14), Doc: "fail when the server certificate expires in fewer days"},
			{Name: "reject_plaintext", Kind: schema.Bool, Default: true, Doc: "try a plaintext connection (sslmode=disable, no credentials) and fail unless the server refuses it"},
			{Name: "allow_weak_sslmode", Kind: schema.Bool, Default: false, Doc: "accept a target whose sslmode is disable, allow or prefer"},
		},
		Outputs: []schema.Output{
			{Name: "ssl", Kind: schema.Bool, Doc: "the connection is TLS, as seen by the client"},
			{Name: "version", Kind: schema.String, Doc: "negotiated TLS version (TLSv1.2, TLSv1.3), empty without TLS"},
			{Name: "cipher", Kind: schema.String, Doc: "negotiated cipher suite (IANA name)"},
			{Name: "bits", Kind: schema.Int, Doc: "symmetric key size of the cipher suite"},
			{Name: "verified", Kind: schema.Bool, Doc: "the certificate chain was verified against a CA"},
			{Name: "hostname_verified", Kind: schema.Bool, Doc: "the certificate was also checked against the host name"},
			{Name: "verified_against", Kind: schema.String, Doc: "the sslrootcert file, or \"system roots\", the chain was verified against; empty when it was not"},
			{Name: "cert_subject", Kind: schema.String, Doc: "subject of the server certificate"},
			{Name: "cert_issuer", Kind: schema.String, Doc: "issuer of the server certificate"},
			{Name: "cert_sans", Kind: schema.StringList, Doc: "DNS names and IP addresses the server certificate names"},
			{Name: "cert_not_after", Kind: schema.Timestamp, Doc: "when the server certificate expires"},
			{Name: "cert_days_left", Kind: schema.Int, Doc: "whole days until the server certificate expires (negative once expired)"},
			{Name: "plaintext_refused", Kind: schema.Bool, Doc: "the server refused the plaintext probe"},
			{Name: "plaintext_answer", Kind: schema.String, Doc: "what the server answered the plaintext probe, in its words"},
			{Name: "pooler", Kind: schema.Bool, Doc: "a pooler sits in the path (the backend pid differs from the one the connection announced)"},
			{Name: "server_ssl", Kind: schema.Bool, Doc: "pg_stat_ssl.ssl for the backend: behind a pooler, the pooler's own connection"},
			{Name: "libpq_note", Kind: schema.String, Doc: "what libpq (a Django app) would do differently with the same settings; empty when nothing"},
		},
		DryRun:  "runs (it is read-only)",
		Example: "- id: tls\n  type: tls-check\n  with: {target: new, min_tls: \"1.2\", require_verified: true, cert_min_days: 14, reject_plaintext: true}\n  assert: [\"steps.tls.outputs.cert_days_left > 30\"]\n",
		Impl:    tlsCheck{},
	})
}

type tlsCheck struct{}

func (tlsCheck) Run(ctx context.Context, c *Call) (Outputs, error) {
	a := c.Args
	mask := c.Mask
	if mask == nil {
		mask = func(s string) string { return s }
	}
	name := a.String("target")
	minVersion, ok := minTLSVersions[a.String("min_tls")]
	if !ok {
		return nil, Permanent(fmt.Errorf("min_tls is %q; it must be 1.2 or 1.3", a.String("min_tls")))
	}
	if c.Targets == nil {
		return nil, Permanent(fmt.Errorf("no target %q", name))
	}
	t, err := c.Targets.Get(name)
	if err != nil {
		return nil, err
	}
	cfg, err := t.Config()
	if err != nil {
		return nil, Permanent(err)
	}
	conn, err := c.Targets.Conn(ctx, name)
	if err != nil {
		return nil, tlsConnectError(t, err)
	}

	out := Outputs{
		"ssl": false, "version": "", "cipher": "", "bits": int64(0),
		"verified": false, "hostname_verified": false, "verified_against": "",
		"cert_subject": "", "cert_issuer": "", "cert_sans": []string{},
		"cert_not_after": time.Time{}, "cert_days_left": int64(0),
		"plaintext_refused": false, "plaintext_answer": "",
		"pooler": false, "server_ssl": false, "libpq_note": "",
	}
	var problems, notes []string
	v := verificationOf(t, cfg)
	out["libpq_note"] = libpqNote(t, v)

	// The client side is the proof: a *tls.Conn under the connection.
	tc, isTLS := conn.PgConn().Conn().(*tls.Conn)
	var st tls.ConnectionState
	if isTLS {
		st = tc.ConnectionState()
		out["ssl"] = true
		out["version"] = tlsVersionName(st.Version)
		out["cipher"] = tls.CipherSuiteName(st.CipherSuite)
		out["bits"] = cipherBits(st.CipherSuite)
		chain, host := v.chain, v.hostname
		if len(st.VerifiedChains) > 0 {
			// Standard verification ran: chain and host name.
			chain, host = true, true
		}
		out["verified"], out["hostname_verified"] = chain, host
		if chain {
			out["verified_against"] = v.against
		}
		if len(st.PeerCertificates) > 0 {
			cert := st.PeerCertificates[0]
			out["cert_subject"] = cert.Subject.String()
			out["cert_issuer"] = cert.Issuer.String()
			out["cert_sans"] = certNames(cert)
			out["cert_not_after"] = cert.NotAfter.UTC()
			out["cert_days_left"] = daysLeft(cert.NotAfter, time.Now())
		}
	}

	// pg_stat_ssl cross-checks; it never proves TLS on its own.
	var backendPID, bits int64
	var serverSSL bool
	var serverVersion string
	err = conn.QueryRow(ctx, `SELECT pg_backend_pid(), coalesce(s.ssl, false), coalesce(s.version, ''), coalesce(s.bits, 0)
FROM (SELECT 1) AS one LEFT JOIN pg_stat_ssl AS s ON s.pid = pg_backend_pid()`).Scan(&backendPID, &serverSSL, &serverVersion, &bits)
	if err != nil {
		return out, fmt.Errorf("target %s: reading pg_stat_ssl: %s", name, mask(err.Error()))
	}
	pooler := backendPID != int64(conn.PgConn().PID())
	out["pooler"], out["server_ssl"] = pooler, serverSSL
	if isTLS && !pooler && serverSSL && out["bits"] == int64(0) {
		// A cipher suite the name does not tell; the server knows.
		out["bits"] = bits
	}
	switch {
	case pooler && serverSSL != isTLS:
		notes = append(notes, fmt.Sprintf("a pooler sits in the path: pg_stat_ssl (ssl=%t) describes the pooler's connection to the server; this connection's TLS=%t is what the app gets", serverSSL, isTLS))
	case pooler:
		notes = append(notes, "a pooler sits in the path: pg_stat_ssl describes the pooler's connection to the server, not this one")
	case serverSSL != isTLS:
		notes = append(notes, fmt.Sprintf("this connection's TLS=%t but pg_stat_ssl says ssl=%t: a TLS-terminating proxy sits in the path", isTLS, serverSSL))
	case isTLS && serverVersion != "" && serverVersion != out["version"]:
		notes = append(notes, fmt.Sprintf("the client negotiated %s but pg_stat_ssl says %s: a proxy sits in the path", out["version"], serverVersion))
	}

	mode := t.SSLMode
	if !isTLS {
		problems = append(problems, notTLSProblem(t))
	} else {
		if st.Version < minVersion {
			problems = append(problems, fmt.Sprintf("TLS version %s is below min_tls %s: raise the server's ssl_min_protocol_version to %s (or lower min_tls)",
				out["version"], a.String("min_tls"), tlsVersionName(minVersion)))
		}
		if a.Bool("require_verified") && !out["verified"].(bool) {
			problems = append(problems, fmt.Sprintf("sslmode=%s does not verify the certificate: set sslmode=verify-full and sslrootcert to the provider's CA", mode))
		}
		if a.Bool("require_hostname") && !out["hostname_verified"].(bool) {
			problems = append(problems, fmt.Sprintf("sslmode=%s does not check that the certificate names host %s: set sslmode=verify-full", v.describe(mode), t.Host))
		}
		if len(st.PeerCertificates) > 0 {
			if left, minDays := out["cert_days_left"].(int64), a.Int("cert_min_days"); left < minDays {
				problems = append(problems, expiryProblem(st.PeerCertificates[0], left, minDays))
			}
		}
	}

	inconclusive := false
	if a.Bool("reject_plaintext") {
		refused, answer, err := probePlaintext(ctx, t)
		out["plaintext_refused"], out["plaintext_answer"] = refused, mask(answer)
		switch {
		case err != nil:
			inconclusive = true
			problems = append(problems, fmt.Sprintf("the plaintext probe (sslmode=disable) got no answer from the server: %s; set reject_plaintext: false if a proxy drops plaintext connections without a word", mask(err.Error())))
		case !refused:
			problems = append(problems, fmt.Sprintf("the server accepts plaintext connections (sslmode=disable: %s): it must refuse them: hostssl-only rules in pg_hba.conf, or rds.force_ssl=1 on RDS, require_secure_transport=on on Azure", mask(answer)))
		}
	} else {
		out["plaintext_answer"] = "not probed (reject_plaintext: false)"
	}

	if t.WeakSSL() && !a.Bool("allow_weak_sslmode") {
		problems = append(problems, weakModeProblem(t))
	}

	reportTLS(c, t, out, notes)
	if len(problems) > 0 {
		err := fmt.Errorf("target %s fails the TLS check: %s", name, listProblems(problems))
		if inconclusive {
			// A probe that got no answer may get one next time.
			return out, err
		}
		return out, Permanent(err)
	}
	return out, nil
}

// verification is what pgx's TLS configuration for a target checks.
type verification struct {
	chain, hostname bool
	against         string // sslrootcert file or systemRoots, when chain
}

// describe names the effective mode when it differs from the sslmode set.
func (v verification) describe(mode string) string {
	if mode == "require" && v.chain {
		return "require (with sslrootcert, verify-ca)"
	}
	return mode
}

// verificationOf reads what the TLS configurations pgx built will verify,
// rather than trusting the sslmode's name: a default ~/.postgresql/root.crt
// turns require into verify-ca, and sslrootcert=system forces verify-full.
// Of several TLS configurations (fallback hosts) it reports the weakest.
func verificationOf(t *Target, cfg *pgx.ConnConfig) verification {
	tlsConfigs := []*tls.Config{cfg.TLSConfig}
	for _, f := range cfg.Fallbacks {
		tlsConfigs = append(tlsConfigs, f.TLSConfig)
	}
	var v verification
	first := true
	for _, tc := range tlsConfigs {
		if tc == nil {
			continue
		}
		var this verification
		switch {
		case !tc.InsecureSkipVerify:
			this = verification{chain: true, hostname: tc.ServerName != ""}
		case tc.VerifyPeerCertificate != nil:
			this = verification{chain: true}
		}
		if this.chain {
			this.against = rootsOf(t, tc)
		}
		if first {
			v, first = this, false
			continue
		}
		v.chain = v.chain && this.chain
		v.hostname = v.hostname && this.hostname
	}
	if !v.chain {
		v.against = ""
	}
	return v
}

// rootsOf names the CA certificates a verifying TLS configuration uses.
func rootsOf(t *Target, tc *tls.Config) string {
	switch {
	case tc.RootCAs == nil || t.SSLRootCert == "system":
		return systemRoots
	case t.SSLRootCert != "":
		return t.SSLRootCert
	}
	return defaultRootCert()
}

// defaultRootCert is the file pgx and libpq read when sslrootcert is unset.
func defaultRootCert() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return "~/.postgresql/root.crt"
	}
	return filepath.Join(home, ".postgresql", "root.crt")
}

// libpqNote says how libpq (psycopg2, hence the Django app) would treat the
// same settings differently from pgx, or "" when it would not.
func libpqNote(t *Target, v verification) string {
	var notes []string
	switch {
	case t.SSLRootCert == "system":
		notes = append(notes, "libpq 16 and later also verify against the system roots with sslrootcert=system, and refuse any sslmode below verify-full; "+
			"libpq 15 and older (psycopg2 on Debian bookworm) read \"system\" as a file name: sslmode=require then connects without verifying, "+
			"and verify-ca or verify-full fail with root certificate file \"system\" does not exist")
	case v.chain && v.against == systemRoots:
		notes = append(notes, fmt.Sprintf("pgx verified against the system roots because sslrootcert is not set; libpq never does: "+
			"with sslmode=%s it fails with root certificate file \"%s\" does not exist. Set sslrootcert to the provider's CA file for the app too", t.SSLMode, defaultRootCert()))
	case v.chain && t.SSLRootCert == "":
		notes = append(notes, fmt.Sprintf("the chain was verified against %s, read because sslrootcert is not set; libpq does the same only for a user with the same home directory, "+
			"so the app may not verify at all: set sslrootcert explicitly", v.against))
	}
	if t.Params["sslnegotiation"] == "direct" {
		notes = append(notes, "libpq before 17 (psycopg2 on Debian bookworm) rejects sslnegotiation: invalid connection option \"sslnegotiation\"")
	}
	return strings.Join(notes, "; ")
}

// notTLSProblem explains a connection that is not encrypted.
func notTLSProblem(t *Target) string {
	switch t.SSLMode {
	case "disable":
		return "the connection is not encrypted: sslmode=disable never uses TLS"
	case "allow":
		return "the connection is not encrypted: sslmode=allow connected in plaintext first; set sslmode=verify-full"
	case "prefer":
		return "the connection is not encrypted: sslmode=prefer fell back to plaintext (the server does not offer TLS, or the TLS attempt failed); set sslmode=verify-full and make the server offer TLS"
	}
	return fmt.Sprintf("the connection is not encrypted although sslmode=%s: no TLS was negotiated on the client side", t.SSLMode)
}

// weakModeProblem explains why a target's sslmode is unsafe.
func weakModeProblem(t *Target) string {
	what := map[string]string{
		"disable": "never uses TLS",
		"allow":   "tries plaintext first",
		"prefer":  "silently falls back to plaintext",
	}[t.SSLMode]
	return fmt.Sprintf("sslmode=%s (%s) %s: set sslmode=verify-full with sslrootcert, or allow_weak_sslmode: true to accept it", t.SSLMode, sslModeOrigin(t), what)
}

func sslModeOrigin(t *Target) string {
	switch t.SSLModeFrom {
	case "plan":
		return "set in the plan"
	case "url":
		return "from the connection URL"
	case "env":
		return "from the environment"
	case "default":
		return "the default"
	}
	return "from " + t.SSLModeFrom
}

// expiryProblem explains a certificate that expires too soon.
func expiryProblem(cert *x509.Certificate, left, minDays int64) string {
	when := cert.NotAfter.UTC().Format("2006-01-02 15:04 MST")
	if left < 0 || !time.Now().Before(cert.NotAfter) {
		return fmt.Sprintf("the server certificate (%s) expired on %s: the server must install a renewed certificate", cert.Subject, when)
	}
	return fmt.Sprintf("the server certificate (%s) expires on %s, in %d days, fewer than cert_min_days %d: have it renewed before the cutover", cert.Subject, when, left, minDays)
}

func listProblems(problems []string) string {
	if len(problems) == 1 {
		return problems[0]
	}
	parts := make([]string, len(problems))
	for i, p := range problems {
		parts[i] = fmt.Sprintf("(%d) %s", i+1, p)
	}
	return strings.Join(parts, "; ")
}

// reportTLS writes a short account of what was negotiated.
func reportTLS(c *Call, t *Target, out Outputs, notes []string) {
	if !out["ssl"].(bool) {
		say(c, "tls-check %s: no TLS", t.Name)
	} else {
		verified := "certificate not verified"
		switch {
		case out["hostname_verified"].(bool):
			verified = "chain and host name verified against " + out["verified_against"].(string)
		case out["verified"].(bool):
			verified = "chain verified against " + out["verified_against"].(string) + ", host name not checked"
		}
		say(c, "tls-check %s: %s %s, %s; certificate %s expires %s (%d days)", t.Name, out["version"], out["cipher"], verified,
			out["cert_subject"], out["cert_not_after"].(time.Time).Format("2006-01-02"), out["cert_days_left"])
	}
	for _, n := range notes {
		say(c, "tls-check %s: note: %s", t.Name, n)
	}
	if n := out["libpq_note"].(string); n != "" {
		say(c, "tls-check %s: libpq: %s", t.Name, n)
	}
}

// say writes one line of live output, masked.
func say(c *Call, format string, args ...any) {
	if c.Out == nil {
		return
	}
	line := fmt.Sprintf(format, args...)
	if c.Mask != nil {
		line = c.Mask(line)
	}
	fmt.Fprintln(c.Out, line)
}

// probePlaintext makes one plaintext connection attempt that sends no
// credentials: require_auth=none makes pgx refuse any authentication the
// server asks for. refused is true when the server turned the attempt down
// before authentication (SQLSTATE 28000, or a pooler's "SSL required");
// answer is what the server said. err is set when nothing conclusive came
// back (the connection broke or timed out).
func probePlaintext(ctx context.Context, t *Target) (refused bool, answer string, err error) {
	cfg, err := t.Config("sslmode", "disable", "sslrootcert", "", "sslcert", "", "sslkey", "",
		"channel_binding", "", "sslnegotiation", "", "require_auth", "")
	if err != nil {
		return false, "", err
	}
	cfg.Password = ""
	cfg.RequireAuth = "none"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		closeCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
		return false, "connected without TLS and without a password", nil
	}
	var pgErr *pgconn.PgError
	msg := scrub(err.Error(), t.password)
	switch {
	case errors.As(err, &pgErr):
		answer = fmt.Sprintf("%s: %s (SQLSTATE %s)", pgErr.Severity, pgErr.Message, pgErr.Code)
		lower := strings.ToLower(pgErr.Message)
		refused = pgErr.Code == "28000" || strings.Contains(lower, "ssl required") ||
			strings.Contains(lower, "encryption") || strings.Contains(lower, "ssl connection is required")
		return refused, scrub(answer, t.password), nil
	case strings.Contains(msg, "require_auth check failed"):
		// The server went on to authentication: plaintext got past pg_hba.
		if _, reason, ok := strings.Cut(msg, "failed: server "); ok {
			return false, "the server " + reason, nil
		}
		return false, "the server asked for authentication", nil
	}
	return false, "", fmt.Errorf("%s", msg)
}

// tlsConnectError adds what to do to a failed connection and makes
// certificate, TLS and authentication failures permanent: retrying cannot
// change a CA, a certificate or a password.
func tlsConnectError(t *Target, err error) error {
	msg := err.Error()
	action := ""
	fix := true
	switch {
	case strings.Contains(msg, "certificate signed by unknown authority"):
		if t.SSLRootCert == "" || t.SSLRootCert == "system" {
			action = "pgx checked the system roots: set sslrootcert to the file with the provider's CA certificate"
		} else {
			action = "set sslrootcert to the provider's current CA bundle"
		}
	case strings.Contains(msg, "x509: certificate is valid for"),
		strings.Contains(msg, "doesn't contain any IP SANs"),
		strings.Contains(msg, "x509: certificate is not valid for any names"):
		action = "connect with a host name that the certificate names, or, if the provider's certificates never name the host, use sslmode=verify-ca with its CA"
		if !strings.Contains(msg, "does not name host") {
			action = fmt.Sprintf("the server certificate does not name host %s: %s", t.Host, action)
		}
	case strings.Contains(msg, "certificate has expired or is not yet valid"):
		action = "the server must install a renewed certificate (check this machine's clock too)"
	case strings.Contains(msg, "server refused TLS connection"):
		action = "turn TLS on at the server (ssl = on with a certificate), or check that host and port reach the intended server"
	case strings.Contains(msg, "SQLSTATE 28P01"):
		action = fmt.Sprintf("check the password secret of target %s", t.Name)
	case strings.Contains(msg, "SQLSTATE 28000"):
		action = "the server needs a pg_hba.conf entry (hostssl) for this user, database and client address"
	case strings.Contains(msg, "tls: "), strings.Contains(msg, "x509: "):
		action = "the TLS handshake failed: compare the server's TLS settings with this target's sslmode, sslrootcert and client certificate"
	default:
		fix = false
	}
	if action != "" {
		err = fmt.Errorf("%w; %s", err, action)
	}
	if fix || IsPermanent(err) {
		return Permanent(err)
	}
	return err
}

func tlsVersionName(v uint16) string {
	if n, ok := tlsVersionNames[v]; ok {
		return n
	}
	return tls.VersionName(v)
}

// cipherBits is the symmetric key size of a cipher suite, from its name.
func cipherBits(id uint16) int64 {
	name := tls.CipherSuiteName(id)
	switch {
	case strings.Contains(name, "AES_128"):
		return 128
	case strings.Contains(name, "AES_256"), strings.Contains(name, "CHACHA20"):
		return 256
	case strings.Contains(name, "3DES"):
		return 168
	case strings.Contains(name, "RC4_128"):
		return 128
	}
	return 0
}

// certNames lists the DNS names and IP addresses a certificate is valid for.
func certNames(cert *x509.Certificate) []string {
	names := append([]string{}, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// daysLeft counts whole days from now until notAfter, rounding down, so an
// expired certificate has a negative count.
func daysLeft(notAfter, now time.Time) int64 {
	return int64(math.Floor(notAfter.Sub(now).Hours() / 24))
}
