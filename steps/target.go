package steps

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcutover/cutover/schema"
)

// DefaultSSLMode is what a target gets when neither the plan nor its URL or
// environment names an sslmode. pgx and libpq would default to prefer, which
// silently falls back to plaintext; a cutover tool must not.
const DefaultSSLMode = "require"

// connectTimeout bounds a connection attempt when the target sets none.
const connectTimeout = 10 * time.Second

// djangoOnlyKeys are DATABASE_URL query keys that dj-database-url and
// django-environ consume themselves; libpq and pgx would send them to the
// server as settings and fail.
var djangoOnlyKeys = map[string]bool{
	"conn_max_age": true, "conn_health_checks": true, "disable_server_side_cursors": true,
	"ssl_require": true, "atomic_requests": true, "autocommit": true, "engine": true, "currentschema": true,
}

// Target is a plan target with its secrets read: what steps connect to.
// Its String form and every error it produces carry no password.
type Target struct {
	Name    string
	Host    string
	Port    int
	DBName  string
	User    string
	SSLMode string // effective sslmode
	// SSLModeFrom says where SSLMode came from: plan, url, env or default.
	SSLModeFrom string
	SSLRootCert string
	SSLCert     string
	SSLKey      string
	// Params are the other connection parameters (channel_binding…).
	Params   map[string]string
	password string
	err      error
}

// Err is why the target cannot be used (a missing secret), or nil.
func (t *Target) Err() error { return t.err }

// HasPassword reports whether a password is set, never its value.
func (t *Target) HasPassword() bool { return t.password != "" }

// String names the target without its password.
func (t *Target) String() string {
	return fmt.Sprintf("%s (%s@%s:%d/%s sslmode=%s)", t.Name, t.User, t.Host, t.Port, t.DBName, t.SSLMode)
}

// WeakSSL reports whether the sslmode may talk plaintext.
func (t *Target) WeakSSL() bool {
	return t.SSLMode == "disable" || t.SSLMode == "allow" || t.SSLMode == "prefer"
}

// ConnString is the keyword/value connection string, password included. It
// must never be printed or passed on a command line.
func (t *Target) ConnString(overrides ...string) string {
	kv := map[string]string{
		"host": t.Host, "port": strconv.Itoa(t.Port), "dbname": t.DBName, "user": t.User,
		"password": t.password, "sslmode": t.SSLMode, "sslrootcert": t.SSLRootCert,
		"sslcert": t.SSLCert, "sslkey": t.SSLKey,
	}
	for k, v := range t.Params {
		kv[k] = v
	}
	for i := 0; i+1 < len(overrides); i += 2 {
		kv[overrides[i]] = overrides[i+1]
	}
	keys := make([]string, 0, len(kv))
	for k, v := range kv {
		if v != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		v := strings.ReplaceAll(strings.ReplaceAll(kv[k], `\`, `\\`), `'`, `\'`)
		fmt.Fprintf(&b, "%s='%s' ", k, v)
	}
	return strings.TrimSpace(b.String())
}

// Config builds the pgx configuration: pooler-safe exec mode, a connect
// timeout, and no plaintext fallback unless the sslmode itself allows it.
// overrides are keyword/value pairs (sslmode, disable) for deliberate probes.
func (t *Target) Config(overrides ...string) (*pgx.ConnConfig, error) {
	if t.err != nil {
		return nil, t.err
	}
	cfg, err := pgx.ParseConfig(t.ConnString(overrides...))
	if err != nil {
		return nil, fmt.Errorf("target %s: %s", t.Name, scrub(err.Error(), t.password))
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	mode := t.SSLMode
	for i := 0; i+1 < len(overrides); i += 2 {
		if overrides[i] == "sslmode" {
			mode = overrides[i+1]
		}
	}
	if mode != "disable" && mode != "allow" && mode != "prefer" {
		if cfg.TLSConfig == nil {
			return nil, fmt.Errorf("target %s: sslmode %s but no TLS configuration was built", t.Name, mode)
		}
		strict := cfg.Fallbacks[:0]
		for _, f := range cfg.Fallbacks {
			if f.TLSConfig != nil {
				strict = append(strict, f)
			}
		}
		cfg.Fallbacks = strict
	}
	return cfg, nil
}

func scrub(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[password]")
}

// Targets are the run's targets, each with at most one lazily opened
// connection that every step reuses.
type Targets struct {
	mu     sync.Mutex
	byName map[string]*Target
	conns  map[string]*pgx.Conn
	// locks are the targets whose advisory lock this run holds (see Lock).
	locks map[string]*targetLock
	// Opened counts connections opened per target (tests and benchmarks).
	Opened map[string]int
}

// TargetSource gives ResolveTargets what it needs to read secrets.
type TargetSource struct {
	Secret    func(name string) (string, error)
	LookupEnv func(string) (string, bool)
	// Register masks a value read for a target (an env_prefix password).
	Register func(name, value string)
}

// ResolveTargets builds the run's targets from the plan's declarations.
// A target whose secret is missing is kept, with Err set.
func ResolveTargets(decls []*schema.Target, src TargetSource) *Targets {
	ts := &Targets{byName: map[string]*Target{}, conns: map[string]*pgx.Conn{}, Opened: map[string]int{}}
	for _, d := range decls {
		ts.byName[d.Name] = resolveTarget(d, src)
	}
	return ts
}

func resolveTarget(d *schema.Target, src TargetSource) *Target {
	t := &Target{Name: d.Name, Port: 5432, Params: map[string]string{}}
	mode, from := "", ""
	switch {
	case d.URL != "":
		raw, err := src.Secret(d.URL)
		if err != nil {
			t.err = fmt.Errorf("target %s: %w", d.Name, err)
			break
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql" && !strings.HasPrefix(u.Scheme, "postgres")) {
			t.err = fmt.Errorf("target %s: secret %s is not a postgres:// URL", d.Name, d.URL)
			break
		}
		t.Host = u.Hostname()
		if p, err := strconv.Atoi(u.Port()); err == nil {
			t.Port = p
		}
		t.DBName = strings.TrimPrefix(u.Path, "/")
		if u.User != nil {
			t.User = u.User.Username()
			t.password, _ = u.User.Password()
		}
		for k, vs := range u.Query() {
			if len(vs) == 0 || djangoOnlyKeys[strings.ToLower(k)] {
				continue
			}
			switch k {
			case "sslmode":
				mode, from = vs[len(vs)-1], "url"
			case "sslrootcert":
				t.SSLRootCert = vs[len(vs)-1]
			case "sslcert":
				t.SSLCert = vs[len(vs)-1]
			case "sslkey":
				t.SSLKey = vs[len(vs)-1]
			case "host":
				t.Host = vs[len(vs)-1]
			case "port":
				if p, err := strconv.Atoi(vs[len(vs)-1]); err == nil {
					t.Port = p
				}
			case "user":
				t.User = vs[len(vs)-1]
			case "password":
				t.password = vs[len(vs)-1]
			case "dbname":
				t.DBName = vs[len(vs)-1]
			default:
				t.Params[k] = vs[len(vs)-1]
			}
		}
	case d.EnvPrefix != "":
		get := func(k string) string { v, _ := src.LookupEnv(d.EnvPrefix + k); return v }
		t.Host, t.DBName, t.User, t.password = get("HOST"), get("NAME"), get("USER"), get("PASSWORD")
		if t.password != "" && src.Register != nil {
			src.Register(d.Name+".password", t.password)
		}
		if p, err := strconv.Atoi(get("PORT")); err == nil {
			t.Port = p
		}
		if m := get("SSLMODE"); m != "" {
			mode, from = m, "env"
		}
		t.SSLRootCert = get("SSLROOTCERT")
		if t.Host == "" || t.DBName == "" {
			t.err = fmt.Errorf("target %s: %sHOST and %sNAME must be set", d.Name, d.EnvPrefix, d.EnvPrefix)
		}
	default:
		t.Host, t.DBName, t.User = d.Host, d.DBName, d.User
		if d.Port != 0 {
			t.Port = d.Port
		}
		if d.Password != "" {
			pw, err := src.Secret(d.Password)
			if err != nil {
				t.err = fmt.Errorf("target %s: %w", d.Name, err)
			}
			t.password = pw
		}
	}
	if d.SSLMode != "" {
		mode, from = d.SSLMode, "plan"
	}
	if mode == "" {
		mode, from = DefaultSSLMode, "default"
	}
	t.SSLMode, t.SSLModeFrom = mode, from
	if d.SSLRootCert != "" {
		t.SSLRootCert = d.SSLRootCert
	}
	if d.SSLCert != "" {
		t.SSLCert, t.SSLKey = d.SSLCert, d.SSLKey
	}
	return t
}

// Get returns a target by name.
func (ts *Targets) Get(name string) (*Target, error) {
	t, ok := ts.byName[name]
	if !ok {
		return nil, Permanent(fmt.Errorf("no target %q", name))
	}
	if t.err != nil {
		return t, Permanent(t.err)
	}
	return t, nil
}

// Conn returns the run's connection to a target, opening it on first use.
// A connection that failed is not cached; whether to try again is the
// plan's retry policy, and errors that cannot pass are Permanent. A new
// connection to a target this run has locked (see Lock) takes the lock
// again before it is returned.
func (ts *Targets) Conn(ctx context.Context, name string) (*pgx.Conn, error) {
	t, err := ts.Get(name)
	if err != nil {
		return nil, err
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.conn(ctx, t)
}

// conn is Conn with ts.mu held.
func (ts *Targets) conn(ctx context.Context, t *Target) (*pgx.Conn, error) {
	name := t.Name
	if c := ts.conns[name]; c != nil && !c.IsClosed() {
		return c, nil
	}
	cfg, err := t.Config()
	if err != nil {
		return nil, Permanent(err)
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, ConnectError(t, err)
	}
	ts.Opened[name]++
	if err := ts.relock(ctx, t, c); err != nil {
		closeConn(c)
		return nil, err
	}
	ts.conns[name] = c
	return c, nil
}

// Close closes every open connection.
func (ts *Targets) Close() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for name, c := range ts.conns {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = c.Close(ctx)
		cancel()
		delete(ts.conns, name)
	}
}

// ConnectError turns a connection failure into a message that names the
// target and says what to do, without the password, and marks it Permanent
// unless it can pass (pgconn.SafeToRetry, timeouts).
func ConnectError(t *Target, err error) error {
	msg := scrub(err.Error(), t.password)
	var pgErr *pgconn.PgError
	hint := ""
	// A certificate or TLS failure happens before anything reaches the
	// server, so pgx calls it safe to retry; retrying cannot fix it.
	certain := true
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "28P01":
		hint = "wrong password for user " + t.User
	case errors.As(err, &pgErr) && pgErr.Code == "3D000":
		hint = "database " + t.DBName + " does not exist on " + t.Host
	case errors.As(err, &pgErr) && pgErr.Code == "28000":
		hint = "the server's pg_hba.conf refuses this connection"
	case strings.Contains(msg, "x509: certificate signed by unknown authority"):
		hint = "the server certificate is not signed by a CA in sslrootcert (" + orNone(t.SSLRootCert) + ")"
	case strings.Contains(msg, "x509: certificate is valid for"), strings.Contains(msg, "doesn't contain any IP SANs"):
		hint = "the server certificate does not name host " + t.Host
	case strings.Contains(msg, "x509: certificate has expired"):
		hint = "the server certificate has expired"
	case strings.Contains(msg, "x509:"), strings.Contains(msg, "tls:"):
		hint = "the TLS handshake failed"
	case strings.Contains(msg, "server refused TLS connection"):
		hint = "the server does not offer TLS"
	case strings.Contains(msg, "connection refused"):
		hint = fmt.Sprintf("nothing listens on %s:%d", t.Host, t.Port)
	default:
		certain = false
	}
	out := &connectError{target: t.Name, hint: hint, msg: msg, err: err}
	var ne net.Error
	if !certain && (pgconn.SafeToRetry(err) || (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, context.DeadlineExceeded)) {
		return out
	}
	return Permanent(out)
}

// connectError keeps the driver's error for errors.As while its message is
// the scrubbed, explained one.
type connectError struct {
	target, hint, msg string
	err               error
}

func (e *connectError) Error() string {
	if e.hint != "" {
		return fmt.Sprintf("connecting to target %s: %s: %s", e.target, e.hint, e.msg)
	}
	return fmt.Sprintf("connecting to target %s: %s", e.target, e.msg)
}

func (e *connectError) Unwrap() error { return e.err }

func orNone(s string) string {
	if s == "" {
		return "none set"
	}
	return s
}

// LibpqEnv is the environment that points a libpq client (pg_dump,
// pg_restore, psql) at the target. The password goes into a 0600 passfile
// in dir (PGPASSFILE), never into argv, where ps would show it, nor into
// the environment. The caller removes dir.
func (t *Target) LibpqEnv(dir string) ([]string, error) {
	if t.err != nil {
		return nil, t.err
	}
	env := []string{
		"PGHOST=" + t.Host, "PGPORT=" + strconv.Itoa(t.Port), "PGDATABASE=" + t.DBName,
		"PGUSER=" + t.User, "PGSSLMODE=" + t.SSLMode, "PGCONNECT_TIMEOUT=10",
	}
	if t.SSLRootCert != "" {
		env = append(env, "PGSSLROOTCERT="+t.SSLRootCert)
	}
	if t.SSLCert != "" {
		env = append(env, "PGSSLCERT="+t.SSLCert, "PGSSLKEY="+t.SSLKey)
	}
	if t.password != "" {
		esc := func(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `:`, `\:`) }
		line := strings.Join([]string{esc(t.Host), strconv.Itoa(t.Port), "*", esc(t.User), esc(t.password)}, ":") + "\n"
		path := filepath.Join(dir, "pgpass")
		if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
			return nil, fmt.Errorf("target %s: writing the passfile: %w", t.Name, err)
		}
		env = append(env, "PGPASSFILE="+path)
	}
	return env, nil
}

// CleanEnv is os.Environ without libpq's PG* variables, so that only what
// LibpqEnv sets reaches a client.
func CleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			out = append(out, kv)
		}
	}
	return out
}
