package steps

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgcutover/cutover/schema"
	"github.com/pgcutover/cutover/steps/pgtest"
)

// newCall builds the Call a step of type typeName receives, with inputs as
// the engine resolves them (string, bool, int64 or int, time.Duration,
// []string…) and the run's targets (nil when the step needs none). Masking
// is the identity; live output collects in the returned buffer. An input the
// type does not declare fails the test.
func newCall(t testing.TB, typeName string, with map[string]any, targets *Targets) (*Call, *bytes.Buffer) {
	t.Helper()
	typ, ok := Lookup(typeName)
	if !ok {
		t.Fatalf("no step type %s", typeName)
	}
	values := map[string]any{}
	for name, v := range with {
		if !slices.ContainsFunc(typ.Inputs, func(f schema.Field) bool { return f.Name == name }) {
			t.Fatalf("%s declares no input %s", typeName, name)
		}
		if n, ok := v.(int); ok {
			v = int64(n)
		}
		values[name] = v
	}
	out := &bytes.Buffer{}
	return &Call{
		StepID:     "test",
		Args:       Args{Values: values, Fields: typ.Inputs},
		Out:        out,
		Mask:       func(s string) string { return s },
		MaskWriter: func(w io.Writer) (io.Writer, func() error) { return w, func() error { return nil } },
		Targets:    targets,
	}, out
}

// newTargets resolves target declarations whose password secrets come from
// secrets, and closes their connections when the test ends.
func newTargets(t testing.TB, secrets map[string]string, decls ...*schema.Target) *Targets {
	t.Helper()
	ts := ResolveTargets(decls, TargetSource{
		Secret: func(name string) (string, error) {
			v, ok := secrets[name]
			if !ok {
				return "", fmt.Errorf("secret %s is not set", name)
			}
			return v, nil
		},
		LookupEnv: func(string) (string, bool) { return "", false },
	})
	t.Cleanup(ts.Close)
	return ts
}

const (
	testUser     = "app"
	testPassword = "Tls-Check-Pw-4f81"
)

// tlsCluster starts a cluster with the role and database the TLS tests use.
// HOME points at an empty directory, so that no ~/.postgresql/root.crt of
// the machine turns sslmode=require into verify-ca behind the test's back.
// settings are extra postgresql.conf parameters, if any.
func tlsCluster(t *testing.T, mode pgtest.TLSMode, cert pgtest.CertKind, settings ...map[string]string) *pgtest.Cluster {
	t.Helper()
	t.Setenv("HOME", t.TempDir())
	opts := pgtest.Options{
		TLS:       mode,
		Cert:      cert,
		Roles:     []pgtest.Role{{Name: testUser, Password: testPassword}},
		Databases: map[string]string{"app": testUser},
	}
	for _, m := range settings {
		opts.Settings = m
	}
	return pgtest.Start(t, opts)
}

// clusterTarget declares target "new" on the cluster's TCP address.
func clusterTarget(cl *pgtest.Cluster, sslmode, rootcert string) *schema.Target {
	return &schema.Target{
		Name: "new", Host: cl.Host, Port: cl.Port, DBName: "app", User: testUser,
		Password: "new_password", SSLMode: sslmode, SSLRootCert: rootcert,
	}
}

// runTLSCheck runs tls-check on target "new" with the given password and
// extra inputs.
func runTLSCheck(t *testing.T, target *schema.Target, password string, with map[string]any) (Outputs, error, string) {
	t.Helper()
	ts := newTargets(t, map[string]string{"new_password": password}, target)
	in := map[string]any{"target": "new"}
	for k, v := range with {
		in[k] = v
	}
	c, live := newCall(t, "tls-check", in, ts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := tlsCheck{}.Run(ctx, c)
	return out, err, live.String()
}

func wantError(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %q", want)
	}
	if err.Error() != want {
		t.Errorf("error:\n got: %s\nwant: %s", err, want)
	}
}

func wantOutputs(t *testing.T, out Outputs, want Outputs) {
	t.Helper()
	for k, w := range want {
		got, ok := out[k]
		if !ok {
			t.Errorf("output %s missing", k)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("output %s = %#v, want %#v", k, got, w)
		}
	}
}

// connectPrefix is how pgx introduces a failed connection to the cluster.
func connectPrefix(cl *pgtest.Cluster) string {
	return fmt.Sprintf("failed to connect to `user=%s database=app`: %s:%d (%s): ", testUser, cl.Host, cl.Port, cl.Host)
}

func TestTLSCheckVerifyFullPasses(t *testing.T) {
	cl := tlsCluster(t, pgtest.TLSEnforced, pgtest.CertValid)
	out, err, live := runTLSCheck(t, clusterTarget(cl, "verify-full", cl.CAFile), testPassword, map[string]any{"require_hostname": true})
	if err != nil {
		t.Fatalf("tls-check failed: %v", err)
	}
	cert := readCert(t, cl.ServerCertFile)
	wantOutputs(t, out, Outputs{
		"ssl": true, "verified": true, "hostname_verified": true, "verified_against": cl.CAFile,
		"cert_subject": cert.Subject.String(), "cert_issuer": cert.Issuer.String(),
		"cert_not_after": cert.NotAfter.UTC(), "plaintext_refused": true,
		"plaintext_answer": fmt.Sprintf(`FATAL: pg_hba.conf rejects connection for host "127.0.0.1", user "%s", database "app", no encryption (SQLSTATE 28000)`, testUser),
		"pooler":           false, "server_ssl": true, "libpq_note": "",
	})
	if v := out["version"]; v != "TLSv1.3" && v != "TLSv1.2" {
		t.Errorf("version = %q, want TLSv1.3 or TLSv1.2", v)
	}
	if out["cipher"] == "" || out["bits"].(int64) < 128 {
		t.Errorf("cipher %q with %d bits", out["cipher"], out["bits"])
	}
	if sans := out["cert_sans"].([]string); !slices.Contains(sans, "127.0.0.1") || !slices.Contains(sans, "localhost") {
		t.Errorf("cert_sans = %q, want localhost and 127.0.0.1 among them", sans)
	}
	if left, want := out["cert_days_left"].(int64), daysLeft(cert.NotAfter, time.Now()); left < want-1 || left > want {
		t.Errorf("cert_days_left = %d, want %d (the certificate's NotAfter is %s)", left, want, cert.NotAfter)
	}
	for k := range out {
		if _, ok := mustLookup(t, "tls-check").Output(k); !ok {
			t.Errorf("output %s is not declared", k)
		}
	}
	if len(out) != len(mustLookup(t, "tls-check").Outputs) {
		t.Errorf("%d outputs, %d declared", len(out), len(mustLookup(t, "tls-check").Outputs))
	}
	want := fmt.Sprintf("tls-check new: %s %s, chain and host name verified against %s; certificate %s expires %s (%d days)\n",
		out["version"], out["cipher"], cl.CAFile, cert.Subject, cert.NotAfter.UTC().Format("2006-01-02"), out["cert_days_left"])
	if live != want {
		t.Errorf("live output:\n got: %q\nwant: %q", live, want)
	}
}

func TestTLSCheckWrongCAFailsPermanentlyAndFast(t *testing.T) {
	cl := tlsCluster(t, pgtest.TLSEnforced, pgtest.CertUnknownCA)
	start := time.Now()
	out, err, _ := runTLSCheck(t, clusterTarget(cl, "verify-full", cl.CAFile), testPassword, nil)
	elapsed := time.Since(start)
	t.Logf("wrong CA: failed after %s", elapsed)
	wantError(t, err, "connecting to target new: the server certificate is not signed by a CA in sslrootcert ("+cl.CAFile+"): "+
		connectPrefix(cl)+"failed to write startup message: write failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"+
		"; set sslrootcert to the provider's current CA bundle")
	if !IsPermanent(err) {
		t.Error("the error is not Permanent: the engine would retry a wrong CA")
	}
	if out != nil {
		t.Errorf("outputs %v for a connection that failed", out)
	}
}

func TestTLSCheckVerifyCAWithWrongCAFails(t *testing.T) {
	cl := tlsCluster(t, pgtest.TLSEnforced, pgtest.CertUnknownCA)
	// require with sslrootcert is verify-ca: pgx verifies the chain itself.
	_, err, _ := runTLSCheck(t, clusterTarget(cl, "require", cl.CAFile), testPassword, nil)
	wantError(t, err, "connecting to target new: the server certificate is not signed by a CA in sslrootcert ("+cl.CAFile+"): "+
		connectPrefix(cl)+"failed to write startup message: write failed: x509: certificate signed by unknown authority"+
		"; set sslrootcert to the provider's current CA bundle")
	if !IsPermanent(err) {
		t.Error("the error is not Permanent")
	}
}

func TestTLSCheckVerifyFullWithoutRootCertUsesSystemRoots(t *testing.T) {
	cl := tlsCluster(t, pgtest.TLSEnforced, pgtest.CertValid)
	// pgx falls back to the system pool, which does not hold the test CA.
	_, err, _ := runTLSCheck(t, clusterTarget(cl, "verify-full", ""), testPassword, nil)
	wantError(t, err, "connecting to target new: the server certificate is not signed by a CA in sslrootcert (none set): "+
		connectPrefix(cl)+"failed to write startup message: write failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"+
		"; pgx checked the system roots: set sslrootcert to the file with the provider's CA certificate")
	if !IsPermanent(err) {
		t.Error("the error is not Permanent")
	}
}

func TestTLSCheckHostnameMismatchFails(t *testing.T) {
	cl := tlsCluster(t, pgtest.TLSEnforced, pgtest.CertWrongHost)
	t.Run("ip", func(t *testing.T) {
		_, err, _ := runTLSCheck(t, clusterTarget(cl, "verify-full", cl.CAFile), testPassword, nil)
		wantError(t, err, "connecting to target new: the server certificate does not name host 127.0.0.1: "+connectPrefix(cl)+
			"failed to write startup message: write failed: tls: failed to verify certificate: x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs"+
			"; connect with a host name that the certificate names, or, if the provider's certificates never name the host, use sslmode=verify-ca with its CA")
		if !IsPermanent(err) {
			t.Error("the error is not Permanent")
		}
	})
	t.Run("name", func(t *testing.T) {
		target := clusterTarget(cl, "verify-full", cl.CAFile)
		target.Host = "localhost"
		_, err, _ := runTLSCheck(t, target, testPassword, nil)
		if err == nil {
			t.Fatal("no error")
		}
		const want = "x509: certificate is valid for db.wrong.invalid, not localhost; connect with a host name that the certificate names, or, if the provider's certificates never name the host, use sslmode=verify-ca with its CA"
		if !strings.HasPrefix(err.Error(), "connecting to target new: the server certificate does not name host localhost: failed to connect to ") || !strings.HasSuffix(err.Error(), want) {
			t.Errorf("error:\n got: %s\nwant: connecting to target new: the server certificate does not name host localhost: failed to connect to …%s", err, want)
		}
		if !IsPermanent(err) {
			t.Error("the error is not Permanent")
		}
	})
	t.Run("verify-ca ignores the host name", func(t *testing.T) {
		out, err, _ := runTLSCheck(t, clusterTarget(cl, "verify-ca", cl.CAFile), testPassword, nil)
		if err != nil {
			t.Fatalf("verify-ca: %v", err)
		}
		wantOutputs(t, out, Outputs{"verified": true, "hostname_verified": false, "verified_against": cl.CAFile, "cert_sans": []string{"db.wrong.invalid"}})
		_, err, _ = runTLSCheck(t, clusterTarget(cl, "verify-ca", cl.CAFile), testPassword, map[string]any{"require_hostname": true})
		wantError(t, err, "target new fails the TLS check: sslmode=verify-ca does not check that the certificate names host 127.0.0.1: set sslmode=verify-full")
	})
}

func TestTLSCheckExpiredCertificateFails(t *testing.T) {
	cl := tlsCluster(t, pgtest.TLSEnforced, pgtest.CertExpired)
	cert := readCert(t, cl.ServerCertFile)
	t.Run("verify-full refuses it", func(t *testing.T) {
		_, err, _ := runTLSCheck(t, clusterTarget(cl, "verify-full", cl.CAFile), testPassword, nil)
		if err == nil {
			t.Fatal("no error")
		}
		prefix := "connecting to target new: the server certificate has expired: " + connectPrefix(cl) +
			"failed to write startup message: write failed: tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time "
		suffix := "is after " + cert.NotAfter.UTC().Format(time.RFC3339) + "; the server must install a renewed certificate (check this machine's clock too)"
		if !strings.HasPrefix(err.Error(), prefix) || !strings.HasSuffix(err.Error(), suffix) {
			t.Errorf("error:\n got: %s\nwant: %s…%s", err, prefix, suffix)
		}
		if !IsPermanent(err) {
			t.Error("the error is not Permanent")
		}
	})
	t.Run("require connects but is told both problems", func(t *testing.T) {
		out, err, _ := runTLSCheck(t, clusterTarget(cl, "require", ""), testPassword, nil)
		wantError(t, err, "target new fails the TLS check: "+
			"(1) sslmode=require does not verify the certificate: set sslmode=verify-full and sslrootcert to the provider's CA; "+
			"(2) the server certificate ("+cert.Subject.String()+") expired on "+cert.NotAfter.UTC().Format("2006-01-02 15:04 MST")+": the server must install a renewed certificate")
		wantOutputs(t, out, Outputs{"ssl": true, "verified": false})
		// It expired a day (and the test's run time) ago.
		if left := out["cert_days_left"].(int64); left != -2 && left != -1 {
			t.Errorf("cert_days_left = %d, want -2 or -1", left)
		}
	})
}

func TestTLSCheckCertificateExpiresSoon(t *testing.T) {
	cl := tlsCluster(t, pgtest.TLSEnforced, pgtest.CertValid)
	cert := readCert(t, cl.ServerCertFile)
	left := daysLeft(cert.NotAfter, time.Now())
	out, err, _ := runTLSCheck(t, clusterTarget(cl, "verify-full", cl.CAFile), testPassword, map[string]any{"cert_min_days": left + 1})
	wantError(t, err, fmt.Sprintf("target new fails the TLS check: the server certificate (%s) expires on %s, in %d days, fewer than cert_min_days %d: have it renewed before the cutover",
		cert.Subject, cert.NotAfter.UTC().Format("2006-01-02 15:04 MST"), left, left+1))
	wantOutputs(t, out, Outputs{"cert_days_left": left, "verified": true})
	if _, err, _ := runTLSCheck(t, clusterTarget(cl, "verify-full", cl.CAFile), testPassword, map[string]any{"cert_min_days": left}); err != nil {
		t.Errorf("cert_min_days %d with %d days left: %v", left, left, err)
	}
}

func TestTLSCheckMinTLSVersion(t *testing.T) {
	cl := tlsCluster(t, pgtest.TLSEnforced, pgtest.CertValid, map[string]string{"ssl_max_protocol_version": "TLSv1.2"})
	out, err, _ := runTLSCheck(t, clusterTarget(cl, "verify-full", cl.CAFile), testPassword, map[string]any{"min_tls": "1.3"})
	wantError(t, err, "target new fails the TLS check: TLS version TLSv1.2 is below min_tls 1.3: raise the server's ssl_min_protocol_version to TLSv1.3 (or lower min_tls)")
	wantOutputs(t, out, Outputs{"version": "TLSv1.2", "ssl": true, "server_ssl": true})
	if _, err, _ := runTLSCheck(t, clusterTarget(cl, "verify-full", cl.CAFile), testPassword, map[string]any{"min_tls": "1.2"}); err != nil {
		t.Errorf("min_tls 1.2: %v", err)
	}
}

func TestTLSCheckServerWithoutTLSFails(t *testing.T) {
	cl := tlsCluster(t, pgtest.TLSOff, pgtest.CertValid)
	_, err, _ := runTLSCheck(t, clusterTarget(cl, "require", ""), testPassword, nil)
	wantError(t, err, "connecting to target new: the server does not offer TLS: "+connectPrefix(cl)+"tls error: server refused TLS connection"+
		"; turn TLS on at the server (ssl = on with a certificate), or check that host and port reach the intended server")
	if !IsPermanent(err) {
		t.Error("the error is not Permanent")
	}
}

func TestTLSCheckPreferOnServerWithoutTLSFails(t *testing.T) {
	cl := tlsCluster(t, pgtest.TLSOff, pgtest.CertValid)
	out, err, live := runTLSCheck(t, clusterTarget(cl, "prefer", ""), testPassword, nil)
	wantError(t, err, "target new fails the TLS check: "+
		"(1) the connection is not encrypted: sslmode=prefer fell back to plaintext (the server does not offer TLS, or the TLS attempt failed); set sslmode=verify-full and make the server offer TLS; "+
		"(2) the server accepts plaintext connections (sslmode=disable: the server requested scram-sha-256 authentication): it must refuse them: hostssl-only rules in pg_hba.conf, or rds.force_ssl=1 on RDS, require_secure_transport=on on Azure; "+
		"(3) sslmode=prefer (set in the plan) silently falls back to plaintext: set sslmode=verify-full with sslrootcert, or allow_weak_sslmode: true to accept it")
	wantOutputs(t, out, Outputs{"ssl": false, "version": "", "verified": false, "server_ssl": false, "plaintext_refused": false})
	if live != "tls-check new: no TLS\n" {
		t.Errorf("live output %q", live)
	}
}

func TestTLSCheckPreferIsWeakEvenOverTLS(t *testing.T) {
	cl := tlsCluster(t, pgtest.TLSEnforced, pgtest.CertValid)
	out, err, _ := runTLSCheck(t, clusterTarget(cl, "prefer", cl.CAFile), testPassword, map[string]any{"require_verified": false})
	wantError(t, err, "target new fails the TLS check: sslmode=prefer (set in the plan) silently falls back to plaintext: set sslmode=verify-full with sslrootcert, or allow_weak_sslmode: true to accept it")
	wantOutputs(t, out, Outputs{"ssl": true, "verified": false, "plaintext_refused": true})
	if _, err, _ := runTLSCheck(t, clusterTarget(cl, "prefer", cl.CAFile), testPassword, map[string]any{"require_verified": false, "allow_weak_sslmode": true}); err != nil {
		t.Errorf("allow_weak_sslmode: %v", err)
	}
}

func TestTLSCheckPlaintextAcceptedFails(t *testing.T) {
	cl := tlsCluster(t, pgtest.TLSOptional, pgtest.CertValid)
	out, err, _ := runTLSCheck(t, clusterTarget(cl, "verify-full", cl.CAFile), testPassword, nil)
	wantError(t, err, "target new fails the TLS check: the server accepts plaintext connections (sslmode=disable: the server requested scram-sha-256 authentication): "+
		"it must refuse them: hostssl-only rules in pg_hba.conf, or rds.force_ssl=1 on RDS, require_secure_transport=on on Azure")
	wantOutputs(t, out, Outputs{"ssl": true, "verified": true, "hostname_verified": true, "plaintext_refused": false,
		"plaintext_answer": "the server requested scram-sha-256 authentication"})
	out, err, _ = runTLSCheck(t, clusterTarget(cl, "verify-full", cl.CAFile), testPassword, map[string]any{"reject_plaintext": false})
	if err != nil {
		t.Errorf("reject_plaintext: false: %v", err)
	}
	wantOutputs(t, out, Outputs{"plaintext_refused": false, "plaintext_answer": "not probed (reject_plaintext: false)"})
}

func TestTLSCheckRequireWithoutRootCertIsNotVerified(t *testing.T) {
	cl := tlsCluster(t, pgtest.TLSEnforced, pgtest.CertValid)
	out, err, _ := runTLSCheck(t, clusterTarget(cl, "require", ""), testPassword, nil)
	wantError(t, err, "target new fails the TLS check: sslmode=require does not verify the certificate: set sslmode=verify-full and sslrootcert to the provider's CA")
	// A TLS connection, but it proves nothing about who answered.
	wantOutputs(t, out, Outputs{"ssl": true, "verified": false, "hostname_verified": false, "verified_against": "", "plaintext_refused": true})
	if _, err, _ := runTLSCheck(t, clusterTarget(cl, "require", ""), testPassword, map[string]any{"require_verified": false}); err != nil {
		t.Errorf("require_verified: false: %v", err)
	}
}

func TestTLSCheckRequireWithRootCertVerifiesTheChain(t *testing.T) {
	cl := tlsCluster(t, pgtest.TLSEnforced, pgtest.CertValid)
	out, err, _ := runTLSCheck(t, clusterTarget(cl, "require", cl.CAFile), testPassword, map[string]any{"require_hostname": true})
	wantError(t, err, "target new fails the TLS check: sslmode=require (with sslrootcert, verify-ca) does not check that the certificate names host 127.0.0.1: set sslmode=verify-full")
	wantOutputs(t, out, Outputs{"verified": true, "hostname_verified": false, "verified_against": cl.CAFile, "libpq_note": ""})
}

func TestTLSCheckDefaultRootCertTurnsRequireIntoVerifyCA(t *testing.T) {
	cl := tlsCluster(t, pgtest.TLSEnforced, pgtest.CertValid)
	home := t.TempDir()
	t.Setenv("HOME", home)
	rootCert := filepath.Join(home, ".postgresql", "root.crt")
	ca, err := os.ReadFile(cl.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(rootCert), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rootCert, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err, _ := runTLSCheck(t, clusterTarget(cl, "require", ""), testPassword, nil)
	if err != nil {
		t.Fatalf("tls-check: %v", err)
	}
	wantOutputs(t, out, Outputs{"verified": true, "hostname_verified": false, "verified_against": rootCert,
		"libpq_note": "the chain was verified against " + rootCert + ", read because sslrootcert is not set; libpq does the same only for a user with the same home directory, so the app may not verify at all: set sslrootcert explicitly"})
}

func TestTLSCheckWrongPasswordFailsWithoutTheCanary(t *testing.T) {
	cl := tlsCluster(t, pgtest.TLSEnforced, pgtest.CertValid)
	const canary = "Canary-Pw-2b7e-not-the-password"
	_, err, live := runTLSCheck(t, clusterTarget(cl, "verify-full", cl.CAFile), canary, nil)
	wantError(t, err, "connecting to target new: wrong password for user app: "+connectPrefix(cl)+
		`failed SASL auth: FATAL: password authentication failed for user "app" (SQLSTATE 28P01); check the password secret of target new`)
	if err != nil && strings.Contains(err.Error(), canary) || strings.Contains(live, canary) {
		t.Error("the password appears in what the user sees")
	}
	if !IsPermanent(err) {
		t.Error("the error is not Permanent: the engine would retry a wrong password")
	}
}

func TestTLSCheckUnknownTargetFails(t *testing.T) {
	ts := newTargets(t, nil)
	c, _ := newCall(t, "tls-check", map[string]any{"target": "nope"}, ts)
	_, err := tlsCheck{}.Run(context.Background(), c)
	wantError(t, err, `no target "nope"`)
	if !IsPermanent(err) {
		t.Error("the error is not Permanent")
	}
}

func TestTLSCheckVerificationFollowsTheAppliedSSLMode(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	ca := writeTestCA(t)
	for _, tc := range []struct {
		sslmode, rootcert string
		want              verification
	}{
		{"prefer", "", verification{}},
		{"require", "", verification{}},
		{"require", ca, verification{chain: true, against: ca}},
		{"verify-ca", ca, verification{chain: true, against: ca}},
		{"verify-ca", "", verification{chain: true, against: systemRoots}},
		{"verify-full", ca, verification{chain: true, hostname: true, against: ca}},
		{"verify-full", "", verification{chain: true, hostname: true, against: systemRoots}},
		// pgx forces verify-full with sslrootcert=system, whatever the mode.
		{"require", "system", verification{chain: true, hostname: true, against: systemRoots}},
	} {
		root := "none"
		if tc.rootcert != "" {
			root = filepath.Base(tc.rootcert)
		}
		t.Run(tc.sslmode+" sslrootcert="+root, func(t *testing.T) {
			ts := newTargets(t, map[string]string{"pw": "x"}, &schema.Target{Name: "db", Host: "db.example.internal", DBName: "app", User: "app", Password: "pw", SSLMode: tc.sslmode, SSLRootCert: tc.rootcert})
			target, err := ts.Get("db")
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := target.Config()
			if err != nil {
				t.Fatal(err)
			}
			if got := verificationOf(target, cfg); got != tc.want {
				t.Errorf("verification = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestTLSCheckLibpqNote(t *testing.T) {
	t.Setenv("HOME", "/home/app")
	for _, tc := range []struct {
		target *Target
		v      verification
		want   string
	}{
		{&Target{SSLMode: "verify-full", SSLRootCert: "/etc/ca.pem"}, verification{chain: true, hostname: true, against: "/etc/ca.pem"}, ""},
		{&Target{SSLMode: "require"}, verification{}, ""},
		{&Target{SSLMode: "verify-full"}, verification{chain: true, hostname: true, against: systemRoots},
			`pgx verified against the system roots because sslrootcert is not set; libpq never does: with sslmode=verify-full it fails with root certificate file "/home/app/.postgresql/root.crt" does not exist. Set sslrootcert to the provider's CA file for the app too`},
		{&Target{SSLMode: "require", SSLRootCert: "system"}, verification{chain: true, hostname: true, against: systemRoots},
			`libpq 16 and later also verify against the system roots with sslrootcert=system, and refuse any sslmode below verify-full; libpq 15 and older (psycopg2 on Debian bookworm) read "system" as a file name: sslmode=require then connects without verifying, and verify-ca or verify-full fail with root certificate file "system" does not exist`},
		{&Target{SSLMode: "verify-full", SSLRootCert: "/etc/ca.pem", Params: map[string]string{"sslnegotiation": "direct"}}, verification{chain: true, hostname: true, against: "/etc/ca.pem"},
			`libpq before 17 (psycopg2 on Debian bookworm) rejects sslnegotiation: invalid connection option "sslnegotiation"`},
	} {
		if got := libpqNote(tc.target, tc.v); got != tc.want {
			t.Errorf("libpqNote(sslmode=%s sslrootcert=%q):\n got: %q\nwant: %q", tc.target.SSLMode, tc.target.SSLRootCert, got, tc.want)
		}
	}
}

func TestTLSCheckDaysLeftRoundsDown(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		notAfter time.Time
		want     int64
	}{
		{now.Add(14*24*time.Hour + time.Hour), 14},
		{now.Add(14*24*time.Hour - time.Hour), 13},
		{now.Add(time.Hour), 0},
		{now.Add(-time.Hour), -1},
		{now.Add(-24*time.Hour - time.Minute), -2},
	} {
		if got := daysLeft(tc.notAfter, now); got != tc.want {
			t.Errorf("daysLeft(%s) = %d, want %d", tc.notAfter.Sub(now), got, tc.want)
		}
	}
}

func mustLookup(t *testing.T, name string) *Type {
	t.Helper()
	typ, ok := Lookup(name)
	if !ok {
		t.Fatalf("no step type %s", name)
	}
	return typ
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s holds no PEM block", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// writeTestCA writes a self-signed CA certificate and returns its path.
func writeTestCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
