package steps

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/pgcutover/cutover/schema"
)

// Limits of the not_committed_in scan.
const (
	// scanMaxFileBytes skips larger tracked files.
	scanMaxFileBytes = 5 << 20
	// scanBinaryProbe is how much of a file is searched for a NUL byte to
	// call it binary, as git does.
	scanBinaryProbe = 8000
	// scanMinNeedle is the shortest form of a secret searched for: shorter
	// strings match by accident.
	scanMinNeedle = 6
)

// defaultForbiddenSSLModes may fall back to plaintext.
var defaultForbiddenSSLModes = []string{"disable", "allow", "prefer"}

func init() {
	Register(&Type{
		Name:    "verify-secret",
		Summary: "Check that secrets are set, not placeholders, not readable by others, not committed, and that DATABASE_URL means to Django what you think it means.",
		Doc: "Reads each secret in `secrets` and checks, without ever printing a value: that it is set and not empty; " +
			"that it is not a placeholder (changeme, password, postgres, admin, test, 1234…, xxx, `<…>`, an unrendered " +
			"`${VAR}` or `{{ var }}`, TODO, anything with example.com) and not shorter than `min_length`; and, for a " +
			"`from: file` secret, that the file is not readable by group or others (mode & 0o077 == 0; Kubernetes " +
			"secret volumes default to 0644, set `defaultMode: 0400`).\n\n" +
			"A value that starts with `scheme://` is a database URL (see `kind`). It is parsed the way the app's " +
			"library does (`dialect`) and, to show where they differ, the way the other one does: dj-database-url and " +
			"django-environ disagree on `+` in the database name, percent-encoded socket hosts, `//socket/dir` paths, " +
			"repeated query keys, multi-host URLs, the `psql` scheme, `true`/`false` and `conn_max_age`. Each " +
			"disagreement is a warning (the `disagreements` output). What the app's library makes of the URL is " +
			"checked: the password (placeholder, length, missing), a database name, OPTIONS keys that libpq rejects " +
			"(`?conn_max_age=` under dj-database-url, a repeated key turned into a list), and the sslmode: one in " +
			"`forbid_sslmodes` fails, and so does none at all under `require_sslmode`, because libpq then uses prefer, " +
			"which falls back to plaintext (set `require_sslmode: false` only when the app's settings force an sslmode " +
			"themselves, or `ssl_require: true` when it calls `dj_database_url.config(ssl_require=True)`). An `@` after " +
			"the host part means a `/`, `?` or `#` in the password is not percent-encoded; the URL is then not parsed " +
			"further.\n\n" +
			"With `distinct_from`, each secret must differ from that one (staging vs production): equal values fail, " +
			"and two URLs must name different hosts, or else both a different database and a different user, and " +
			"must not share a password. With `not_committed_in`, the files `git ls-files` lists in that directory are " +
			"searched for each value (as is, URL-encoded and base64) and for the password inside each URL; a hit " +
			"names the file, never the value. Only the work tree is searched, not the history; files over 5 MiB and " +
			"binary files are skipped.\n\n" +
			"Every failure is listed, one per line, naming the secret and the check. Warnings do not fail the step; " +
			"they are in the `warnings` output and the journal.",
		Inputs: []schema.Field{
			{Name: "secrets", Kind: schema.StringList, Ref: schema.RefSecret, Required: true, Doc: "the secrets to check"},
			{Name: "kind", Kind: schema.String, Enum: []string{"auto", "url", "password"}, Default: "auto", Doc: "what the secrets hold: auto treats a value that starts with scheme:// as a URL and anything else as a password"},
			{Name: "dialect", Kind: schema.String, Enum: Dialects, Default: DialectDjDatabaseURL, Doc: "the library the app parses DATABASE_URL with"},
			{Name: "ssl_require", Kind: schema.Bool, Default: false, Doc: "the app calls dj_database_url.config(ssl_require=True), which replaces any sslmode in the URL with require (dj-database-url only)"},
			{Name: "forbid_sslmodes", Kind: schema.StringList, Enum: schema.SSLModes, Default: defaultForbiddenSSLModes, Doc: "sslmodes a URL may not use"},
			{Name: "require_sslmode", Kind: schema.Bool, Default: true, Doc: "fail a URL that sets no sslmode (libpq then uses prefer); turn off only when the app's settings force one"},
			{Name: "min_length", Kind: schema.Int, Default: int64(8), Doc: "shortest acceptable password, alone or inside a URL"},
			{Name: "not_committed_in", Kind: schema.String, Doc: "a directory in a git work tree whose tracked files must not contain the values"},
			{Name: "distinct_from", Kind: schema.String, Ref: schema.RefSecret, Doc: "a secret (the other environment's) that each secret must differ from"},
		},
		Outputs: []schema.Output{
			{Name: "host", Kind: schema.String, Doc: "HOST the app will use (OPTIONS host when HOST is empty), from the first URL secret"},
			{Name: "port", Kind: schema.Int, Doc: "port the app will use (the first of several; 5432 when the URL sets none); 0 without a URL secret"},
			{Name: "dbname", Kind: schema.String, Doc: "NAME, the database the app will use"},
			{Name: "user", Kind: schema.String, Doc: "USER the app will connect as"},
			{Name: "sslmode", Kind: schema.String, Doc: "sslmode the app will use; empty when the URL sets none (libpq then uses prefer)"},
			{Name: "source", Kind: schema.String, Doc: "where the first URL secret came from (env DATABASE_URL, file /run/secrets/…)"},
			{Name: "dialect", Kind: schema.String, Doc: "the dialect the URL was read with"},
			{Name: "warnings", Kind: schema.StringList, Doc: "findings that did not fail the step, one line each"},
			{Name: "checked", Kind: schema.Int, Doc: "number of secrets checked"},
			{Name: "disagreements", Kind: schema.StringList, Doc: "where dj-database-url and django-environ read a URL differently, prefixed with the secret's name"},
		},
		DryRun: "runs (it is read-only): reads the secrets, stats secret files and reads the repository; connects to nothing",
		Example: "- id: secrets\n  type: verify-secret\n  with:\n    secrets: [new_url]\n    dialect: dj-database-url\n" +
			"    forbid_sslmodes: [disable, allow, prefer]\n    distinct_from: old_url\n    not_committed_in: .\n" +
			"  assert: [\"outputs.sslmode == 'verify-full'\"]\n",
		Impl: verifySecret{},
	})
}

type verifySecret struct{}

// secretFinding is one result of a check: a failure or a warning.
type secretFinding struct {
	fail   bool
	secret string // empty for findings about the step's inputs
	origin string // env DATABASE_URL, file /path…
	check  string
	msg    string
}

func (f secretFinding) String() string {
	who := "secret " + f.secret
	switch {
	case f.secret == "":
		who = ""
	case f.origin != "":
		who += " (" + f.origin + ")"
	}
	if who == "" {
		return f.check + ": " + f.msg
	}
	return who + ": " + f.check + ": " + f.msg
}

// checkedSecret is a secret that could be read, with what was made of it.
type checkedSecret struct {
	sec    Secret
	origin string
	isURL  bool
	// settings is the URL as the chosen dialect reads it; nil when it is
	// not a URL or could not be read safely.
	settings *DatabaseSettings
}

// secretCheck is one run of the step.
type secretCheck struct {
	c        *Call
	dialect  string
	kind     string
	minLen   int
	findings []secretFinding
	checked  []*checkedSecret
	// forms are the values (and their encodings) scrubbed from everything
	// the step returns, by secret name.
	forms []secretForm
	out   Outputs
	// disagreements are the dialect disagreements, by secret.
	disagreements []string
}

type secretForm struct{ value, name string }

func (v *secretCheck) add(fail bool, secret, origin, check, format string, args ...any) {
	v.findings = append(v.findings, secretFinding{fail: fail, secret: secret, origin: origin, check: check, msg: fmt.Sprintf(format, args...)})
}

func (verifySecret) Run(ctx context.Context, c *Call) (Outputs, error) {
	a := c.Args
	names := a.Strings("secrets")
	v := &secretCheck{c: c, dialect: a.String("dialect"), kind: a.String("kind"), minLen: int(a.Int("min_length"))}
	v.out = Outputs{
		"host": "", "port": int64(0), "dbname": "", "user": "", "sslmode": "", "source": "",
		"dialect": v.dialect, "warnings": []string{}, "checked": int64(len(names)), "disagreements": []string{},
	}
	if err := v.validate(names); err != nil {
		return v.out, Permanent(err)
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return v.out, err
		}
		v.checkOne(name)
	}
	if other := a.String("distinct_from"); other != "" {
		v.checkDistinct(other)
	}
	if dir := a.String("not_committed_in"); dir != "" {
		if err := v.scanRepo(ctx, dir); err != nil {
			return v.finish(), err
		}
	}
	out := v.finish()
	var fails []string
	for _, f := range v.findings {
		if f.fail {
			fails = append(fails, v.scrub(f.String()))
		}
	}
	if len(fails) > 0 {
		return out, Permanent(errors.New(strings.Join(fails, "\n")))
	}
	return out, nil
}

// validate checks the inputs that the schema cannot (templated values).
func (v *secretCheck) validate(names []string) error {
	if v.c.Secret == nil {
		return errors.New("this run gives the step no access to secrets")
	}
	if len(names) == 0 {
		return errors.New("secrets: name at least one secret")
	}
	if !vsContains(Dialects, v.dialect) {
		return fmt.Errorf("dialect %q is not one of %s", v.dialect, strings.Join(Dialects, ", "))
	}
	if !vsContains([]string{"auto", "url", "password"}, v.kind) {
		return fmt.Errorf("kind %q is not one of auto, url, password", v.kind)
	}
	for _, m := range v.c.Args.Strings("forbid_sslmodes") {
		if !vsContains(schema.SSLModes, m) {
			return fmt.Errorf("forbid_sslmodes: %q is not one of %s", m, strings.Join(schema.SSLModes, ", "))
		}
	}
	return nil
}

func vsContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// read reads a secret and registers its forms for scrubbing; it reports a
// secret that cannot be read as a failure of check and returns false.
func (v *secretCheck) read(name, check string) (Secret, string, bool) {
	sec, err := v.c.Secret(name)
	origin := secretOrigin(sec)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "secret "+name+" is not available: ")
		v.add(true, name, origin, check, "%s", msg)
		return sec, origin, false
	}
	v.register(name, sec.Value)
	return sec, origin, true
}

func secretOrigin(s Secret) string {
	if s.From == "" {
		return ""
	}
	if s.Source == "" {
		return s.From
	}
	return s.From + " " + s.Source
}

// register adds a value, and the encodings it may be found in, to what is
// scrubbed from the step's error and outputs.
func (v *secretCheck) register(name, value string) {
	if value == "" {
		return
	}
	for _, f := range vsEncodedForms(value) {
		v.forms = append(v.forms, secretForm{value: f.text, name: name})
	}
}

// vsEncodedForm is a value as it may be written down somewhere.
type vsEncodedForm struct{ text, how string }

// vsEncodedForms lists a value as is, URL-encoded and base64-encoded.
func vsEncodedForms(value string) []vsEncodedForm {
	b := []byte(value)
	forms := []vsEncodedForm{
		{value, "as is"},
		{url.QueryEscape(value), "URL-encoded"},
		{url.PathEscape(value), "URL-encoded"},
		{base64.StdEncoding.EncodeToString(b), "base64"},
		{base64.URLEncoding.EncodeToString(b), "base64"},
		{base64.RawStdEncoding.EncodeToString(b), "base64"},
		{base64.RawURLEncoding.EncodeToString(b), "base64"},
	}
	seen := map[string]bool{}
	out := forms[:0]
	for _, f := range forms {
		if f.text != "" && !seen[f.text] {
			seen[f.text] = true
			out = append(out, f)
		}
	}
	return out
}

// scrub masks every known secret form in s: the run's own mask first, then
// the values this step read, longest first and ignoring case (Python
// lower-cases host names).
func (v *secretCheck) scrub(s string) string {
	if v.c.Mask != nil {
		s = v.c.Mask(s)
	}
	if len(v.forms) == 0 {
		return s
	}
	forms := append([]secretForm(nil), v.forms...)
	sort.SliceStable(forms, func(i, j int) bool { return len(forms[i].value) > len(forms[j].value) })
	alts := make([]string, len(forms))
	name := map[string]string{}
	for i, f := range forms {
		alts[i] = regexp.QuoteMeta(f.value)
		if _, ok := name[strings.ToLower(f.value)]; !ok {
			name[strings.ToLower(f.value)] = f.name
		}
	}
	re := regexp.MustCompile("(?i)" + strings.Join(alts, "|"))
	return re.ReplaceAllStringFunc(s, func(m string) string {
		if n, ok := name[strings.ToLower(m)]; ok {
			return "[secret:" + n + "]"
		}
		for _, f := range forms {
			if strings.EqualFold(f.value, m) {
				return "[secret:" + f.name + "]"
			}
		}
		return "[secret]"
	})
}

// vsLooksLikeURL matches a value that starts with scheme://.
var vsLooksLikeURL = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://`)

func (v *secretCheck) checkOne(name string) {
	sec, origin, ok := v.read(name, "present")
	if !ok {
		return
	}
	cs := &checkedSecret{sec: sec, origin: origin}
	v.checked = append(v.checked, cs)
	fail := func(check, format string, args ...any) { v.add(true, name, origin, check, format, args...) }
	warn := func(check, format string, args ...any) { v.add(false, name, origin, check, format, args...) }

	if sec.From == "file" && sec.Source != "" {
		v.checkFileMode(name, origin, sec.Source)
	}
	if strings.TrimSpace(sec.Value) == "" {
		if sec.Value == "" {
			fail("non-empty", "the value is empty")
		} else {
			fail("non-empty", "the value is only whitespace")
		}
		return
	}
	if sec.Value != strings.TrimSpace(sec.Value) {
		warn("whitespace", "the value starts or ends with whitespace, which becomes part of it")
	}
	switch v.kind {
	case "url":
		cs.isURL = true
		if !vsLooksLikeURL.MatchString(strings.TrimSpace(sec.Value)) {
			fail("kind", "the value is not a URL (scheme://…)")
			return
		}
	case "auto":
		cs.isURL = vsLooksLikeURL.MatchString(strings.TrimSpace(sec.Value))
	}
	if !cs.isURL {
		if why := placeholderReason(sec.Value); why != "" {
			fail("placeholder", "the value %s", why)
		} else if len([]rune(sec.Value)) < v.minLen {
			fail("min-length", "the value is shorter than min_length (%d)", v.minLen)
		}
		return
	}
	v.checkURL(cs, fail, warn)
}

// checkFileMode fails a secret file that group or others may access.
func (v *secretCheck) checkFileMode(name, origin, path string) {
	fi, err := os.Stat(path)
	if err != nil {
		v.add(true, name, origin, "file-mode", "cannot stat %s: %v", path, errors.Unwrap(err))
		return
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		v.add(true, name, origin, "file-mode", "%s has mode %04o: group or others can access it; chmod 600 (Kubernetes: defaultMode: 0400)", path, perm)
	}
}

func (v *secretCheck) checkURL(cs *checkedSecret, fail, warn func(check, format string, args ...any)) {
	// Parsed as the app gets it: Python strips leading whitespace only.
	raw := cs.sec.Value
	if MisplacedPassword(raw) {
		// Not parsed further: every field may hold a piece of the password.
		fail("url", "an '@' follows the host part: a '/', '?' or '#' in the password is probably not percent-encoded (encode it with urllib.parse.quote(password, safe=''))")
		return
	}
	// A password that dj-database-url or django-environ decode differently is
	// a secret too.
	for _, d := range Dialects {
		if s, err := ParseDatabaseURL(raw, d); err == nil {
			v.register(cs.sec.Name, s.Password)
		}
	}
	for _, d := range CompareDialects(raw) {
		v.disagreements = append(v.disagreements, cs.sec.Name+": "+d)
		warn("dialects", "%s", d)
	}
	s, err := ParseDatabaseURL(raw, v.dialect)
	if err != nil {
		fail("parse", "%s", err)
		return
	}
	if !isPostgresEngine(s.Engine) {
		fail("engine", "%s gives ENGINE %s for %s: not a PostgreSQL backend", v.dialect, vsEngineLabel(s.Engine), dburlQuoteScheme(s.Scheme))
	}
	ssl := v.c.Args.Bool("ssl_require")
	if ssl && v.dialect == DialectDjDatabaseURL {
		if m, ok := s.Options["sslmode"].(string); ok && (m == "verify-ca" || m == "verify-full") {
			warn("sslmode", "ssl_require=True replaces sslmode=%s with require: the app will not verify the server certificate", m)
			v.disagreements = append(v.disagreements, fmt.Sprintf("%s: OPTIONS['sslmode']: %s with ssl_require=True 'require', %s %s", cs.sec.Name, DialectDjDatabaseURL, DialectDjangoEnviron, pyRepr(m)))
		}
		if s.Options == nil {
			s.Options = map[string]any{}
		}
		s.Options["sslmode"] = "require"
	} else if ssl {
		warn("sslmode", "ssl_require applies only to dj-database-url; django-environ has no such argument")
	}
	cs.settings = &s

	v.checkPassword(s, fail, warn)
	if s.Name == "" {
		if _, svc := s.Options["service"]; !svc {
			fail("dbname", "the URL names no database: Django refuses an empty NAME")
		}
	}
	v.checkOptions(s, fail, warn)
	v.checkSSLMode(s, fail, warn)
}

func vsEngineLabel(e string) string {
	for _, m := range []map[string]string{djSchemes, environSchemes} {
		for _, known := range m {
			if e == known {
				return e
			}
		}
	}
	return "(the scheme itself)"
}

// isPostgresEngine reports whether a Django ENGINE talks to PostgreSQL.
func isPostgresEngine(e string) bool {
	return strings.Contains(e, "postgresql") || strings.Contains(e, "postgis")
}

// appPassword is the password libpq gets: PASSWORD, or OPTIONS password
// when PASSWORD is empty.
func appPassword(s DatabaseSettings) string {
	if s.Password != "" {
		return s.Password
	}
	p, _ := s.Options["password"].(string)
	return p
}

func (v *secretCheck) checkPassword(s DatabaseSettings, fail, warn func(check, format string, args ...any)) {
	pw := appPassword(s)
	switch {
	case pw == "":
		warn("password", "the URL has no password: the app must get one elsewhere (PGPASSWORD, ~/.pgpass, an IAM token)")
	case placeholderReason(pw) != "":
		fail("placeholder", "the password %s", placeholderReason(pw))
	case strings.EqualFold(pw, appUser(s)):
		fail("placeholder", "the password is the user name")
	case len([]rune(pw)) < v.minLen:
		fail("min-length", "the password is shorter than min_length (%d)", v.minLen)
	}
	if _, ok := s.Options["password"]; ok && s.Password == "" {
		warn("password", "the password is in the query string (?password=), where logs and proxies see it more often than in the userinfo")
	}
	if h := strings.ToLower(appHost(s)); isExampleHost(h) {
		fail("placeholder", "the host %s is a documentation example (RFC 2606)", h)
	} else if strings.Contains(strings.ToLower(s.Name+" "+s.User), "example.com") {
		fail("placeholder", "the URL contains example.com")
	}
}

// isExampleHost reports a host reserved for documentation (RFC 2606).
func isExampleHost(h string) bool {
	for _, d := range []string{"example.com", "example.org", "example.net", "example", "invalid"} {
		if h == d || strings.HasSuffix(h, "."+d) {
			return true
		}
	}
	return false
}

// libpqKeywords are the connection options libpq 15 accepts (the app's
// libpq on Debian bookworm).
var libpqKeywords = map[string]bool{
	"host": true, "hostaddr": true, "port": true, "dbname": true, "user": true, "password": true,
	"passfile": true, "channel_binding": true, "connect_timeout": true, "client_encoding": true,
	"options": true, "application_name": true, "fallback_application_name": true, "keepalives": true,
	"keepalives_idle": true, "keepalives_interval": true, "keepalives_count": true, "tcp_user_timeout": true,
	"replication": true, "gssencmode": true, "sslmode": true, "requiressl": true, "sslcompression": true,
	"sslcert": true, "sslkey": true, "sslpassword": true, "sslrootcert": true, "sslcrl": true, "sslcrldir": true,
	"sslsni": true, "requirepeer": true, "ssl_min_protocol_version": true, "ssl_max_protocol_version": true,
	"krbsrvname": true, "gsslib": true, "service": true, "target_session_attrs": true,
}

// libpqIntKeywords take an integer: libpq rejects True or 'true'.
var libpqIntKeywords = map[string]bool{
	"port": true, "connect_timeout": true, "keepalives": true, "keepalives_idle": true,
	"keepalives_interval": true, "keepalives_count": true, "tcp_user_timeout": true,
}

// libpqIntLike reports whether v reaches libpq as an integer.
func libpqIntLike(v any) bool {
	switch x := v.(type) {
	case int64:
		return true
	case string:
		_, err := strconv.Atoi(strings.TrimSpace(x))
		return err == nil
	}
	return false
}

// libpqNewKeywords arrived after libpq 15: an older libpq rejects them.
var libpqNewKeywords = map[string]string{
	"require_auth": "16", "sslcertmode": "16", "load_balance_hosts": "16", "gssdelegation": "16",
	"sslnegotiation": "17", "min_protocol_version": "18", "max_protocol_version": "18", "sslkeylogfile": "18",
}

// djangoOptionKeys are OPTIONS keys the Django backend consumes itself
// instead of passing them to the driver.
var djangoOptionKeys = map[string]bool{
	"isolation_level": true, "assume_role": true, "server_side_binding": true, "pool": true,
}

// djangoSettingKeys are Django settings (or dj-database-url arguments)
// that have no place in OPTIONS: libpq rejects them.
var djangoSettingKeys = map[string]bool{
	"conn_max_age": true, "conn_health_checks": true, "disable_server_side_cursors": true,
	"atomic_requests": true, "autocommit": true, "ssl_require": true,
}

// djConfigArgs are the djangoSettingKeys dj_database_url.config accepts.
var djConfigArgs = map[string]bool{
	"conn_max_age": true, "conn_health_checks": true, "disable_server_side_cursors": true, "ssl_require": true,
}

// environBoolKeys are the top-level settings django-environ may leave as
// the string 'true' or 'false', both of which Python treats as true.
var environBoolKeys = map[string]bool{
	"ATOMIC_REQUESTS": true, "AUTOCOMMIT": true, "DISABLE_SERVER_SIDE_CURSORS": true, "CONN_HEALTH_CHECKS": true,
}

func (v *secretCheck) checkOptions(s DatabaseSettings, fail, warn func(check, format string, args ...any)) {
	for _, k := range pySortedKeys(s.Options) {
		val := s.Options[k]
		key := pyRepr(k)
		low := strings.ToLower(k)
		switch {
		case pyIsList(val) && !djangoSettingKeys[low]:
			fail("options", "OPTIONS[%s] is a list (the query key is repeated): psycopg2 passes it to libpq as text, which rejects it", key)
		case djangoSettingKeys[low]:
			how := ""
			if djConfigArgs[low] {
				how = fmt.Sprintf(" (dj_database_url.config(%s=…))", low)
			}
			fail("options", "%s leaves %s in OPTIONS, where libpq fails with invalid connection option: set %s in settings.py%s instead",
				v.dialect, key, strings.ToUpper(low), how)
		case k == "dbname" || k == "database":
			fail("options", "OPTIONS[%s] clashes with NAME: psycopg2 refuses both database and dbname", key)
		case djangoOptionKeys[k]:
		case libpqIntKeywords[k] && !libpqIntLike(val):
			fail("options", "OPTIONS[%s] = %s is not an integer: psycopg2 sends it as text and libpq rejects it; write a number (1 or 0 for on or off)", key, pyRepr(val))
		case libpqNewKeywords[k] != "":
			warn("options", "OPTIONS[%s] needs libpq %s or later; libpq 15 (Debian bookworm) rejects it", key, libpqNewKeywords[k])
		case !libpqKeywords[k]:
			fail("options", "OPTIONS[%s] is not a libpq connection option: psycopg2 fails with invalid connection option", key)
		}
	}
	for _, k := range pySortedKeys(s.TopLevel) {
		val := s.TopLevel[k]
		str, isStr := val.(string)
		switch {
		case k == "CONN_MAX_AGE" && val == nil:
			warn("conn_max_age", "CONN_MAX_AGE = None keeps connections open forever; behind a pooler or a NAT keep it small")
		case k == "CONN_MAX_AGE" && !pyIsInt(val):
			fail("conn_max_age", "CONN_MAX_AGE = %s is not a number of seconds", pyRepr(val))
		case environBoolKeys[k] && isStr && strings.EqualFold(str, "false"):
			fail("options", "%s = %s: django-environ keeps the string, which Python treats as true; write False", k, pyRepr(str))
		case environBoolKeys[k] && isStr:
			warn("options", "%s = %s is a string, not a boolean (Python reads any non-empty string as true); write True", k, pyRepr(str))
		}
	}
}

func pyIsList(v any) bool { _, ok := v.([]any); return ok }

func pyIsInt(v any) bool { _, ok := v.(int64); return ok }

func (v *secretCheck) checkSSLMode(s DatabaseSettings, fail, warn func(check, format string, args ...any)) {
	raw, set := s.Options["sslmode"]
	if set && pyIsList(raw) {
		return // reported by checkOptions
	}
	if strings.HasPrefix(appHost(s), "/") {
		warn("sslmode", "HOST is a Unix socket directory: libpq uses no TLS on a socket, so whatever serves it (e.g. the Cloud SQL Auth Proxy) must encrypt the rest of the way")
		return
	}
	mode := ""
	if set {
		mode = pyStr(raw)
	}
	forbidden := v.c.Args.Strings("forbid_sslmodes")
	switch {
	case !set && v.c.Args.Bool("require_sslmode"):
		fail("sslmode", "the URL sets no sslmode, so libpq uses prefer (or PGSSLMODE), which falls back to plaintext: add ?sslmode=verify-full (or require); if the app forces one itself, set ssl_require: true (dj_database_url.config(ssl_require=True)) or require_sslmode: false")
	case !set:
		warn("sslmode", "the URL sets no sslmode: the app's settings must force one, or libpq uses prefer, which falls back to plaintext")
	case !vsContains(schema.SSLModes, mode):
		fail("sslmode", "sslmode=%s is not a libpq sslmode (%s)", pyRepr(raw), strings.Join(schema.SSLModes, ", "))
	case vsContains(forbidden, mode):
		fail("sslmode", "sslmode=%s is forbidden (forbid_sslmodes: %s): %s", mode, strings.Join(forbidden, ", "), vsSSLModeRisk(mode))
	}
	root, _ := s.Options["sslrootcert"].(string)
	switch {
	case root == "system":
		warn("sslmode", "sslrootcert=system needs libpq 16 or later; libpq 15 (the app on Debian bookworm) reads a file named system")
	case root == "" && (mode == "verify-full" || mode == "verify-ca"):
		warn("sslmode", "sslmode=%s with no sslrootcert: libpq (the app) reads ~/.postgresql/root.crt and fails if it is missing, where pgx would use the system roots", mode)
	}
}

func vsSSLModeRisk(mode string) string {
	switch mode {
	case "disable":
		return "the connection is plaintext"
	case "allow":
		return "libpq tries plaintext first"
	case "prefer":
		return "libpq falls back to plaintext when TLS fails"
	case "require":
		return "the server certificate is not verified"
	case "verify-ca":
		return "the host name is not verified"
	}
	return "the plan forbids it"
}

// appHost is the host libpq gets: HOST, or OPTIONS host.
func appHost(s DatabaseSettings) string {
	if s.Host != "" {
		return s.Host
	}
	h, _ := s.Options["host"].(string)
	return h
}

// appUser is the user libpq gets: USER, or OPTIONS user.
func appUser(s DatabaseSettings) string {
	if s.User != "" {
		return s.User
	}
	u, _ := s.Options["user"].(string)
	return u
}

// appPort is the first port libpq gets; 5432 when none is set.
func appPort(s DatabaseSettings) int64 {
	p := s.Port
	if p == "" {
		p = pyStr(s.Options["port"])
	}
	p, _, _ = strings.Cut(p, ",")
	if n, err := strconv.ParseInt(p, 10, 64); err == nil && n > 0 {
		return n
	}
	return 5432
}

// checkDistinct fails each secret that equals, or points at the same
// database or credentials as, the other environment's secret.
func (v *secretCheck) checkDistinct(other string) {
	osec, _, ok := v.read(other, "distinct-from")
	if !ok {
		return
	}
	var oset *DatabaseSettings
	if vsLooksLikeURL.MatchString(strings.TrimSpace(osec.Value)) && !MisplacedPassword(osec.Value) {
		if s, err := ParseDatabaseURL(osec.Value, v.dialect); err == nil {
			oset = &s
			v.register(other, s.Password)
		}
	}
	for _, cs := range v.checked {
		if cs.sec.Name == other {
			continue
		}
		fail := func(format string, args ...any) {
			v.add(true, cs.sec.Name, cs.origin, "distinct-from", format, args...)
		}
		if cs.sec.Value == osec.Value {
			fail("has the same value as secret %s", other)
			continue
		}
		if vsSharesPassword(secretPasswords(cs.sec.Value, cs.isURL), secretPasswords(osec.Value, vsLooksLikeURL.MatchString(strings.TrimSpace(osec.Value)))) {
			fail("uses the same password as secret %s", other)
		}
		if cs.settings == nil || oset == nil {
			continue
		}
		a, b := cs.settings, oset
		if !strings.EqualFold(appHost(*a), appHost(*b)) {
			continue
		}
		var same []string
		if a.Name == b.Name {
			same = append(same, "database "+pyRepr(a.Name))
		}
		if appUser(*a) == appUser(*b) {
			same = append(same, "user "+pyRepr(appUser(*a)))
		}
		if len(same) > 0 {
			fail("points at the same host (%s) as secret %s with the same %s: the two environments must differ in host, or in both database and user",
				appHost(*a), other, strings.Join(same, " and "))
		}
	}
}

// secretPasswords are the passwords a secret may carry: the value itself, or what
// either dialect decodes from a URL.
func secretPasswords(value string, isURL bool) []string {
	if !isURL {
		return []string{value}
	}
	raw := value
	if MisplacedPassword(raw) {
		return nil
	}
	var out []string
	for _, d := range Dialects {
		if s, err := ParseDatabaseURL(raw, d); err == nil {
			if p := appPassword(s); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func vsSharesPassword(a, b []string) bool {
	for _, x := range a {
		if x != "" && vsContains(b, x) {
			return true
		}
	}
	return false
}

// scanRepo searches the tracked files of dir for every form of every
// secret read. Only paths are reported.
func (v *secretCheck) scanRepo(ctx context.Context, dir string) error {
	type needle struct {
		secret, origin string
		text           []byte
		how            string
	}
	var needles []needle
	tooShort := map[string]bool{}
	addForms := func(cs *checkedSecret, value, part string) {
		for _, f := range vsEncodedForms(value) {
			if len(f.text) < scanMinNeedle {
				tooShort[cs.sec.Name] = true
				continue
			}
			how := f.how
			if part != "" {
				how = part + ", " + how
			}
			needles = append(needles, needle{cs.sec.Name, cs.origin, []byte(f.text), how})
		}
	}
	for _, cs := range v.checked {
		if cs.sec.Value == "" {
			continue
		}
		addForms(cs, cs.sec.Value, "")
		if cs.isURL {
			seen := map[string]bool{}
			for _, d := range Dialects {
				if s, err := ParseDatabaseURL(cs.sec.Value, d); err == nil && s.Password != "" && !seen[s.Password] {
					seen[s.Password] = true
					addForms(cs, s.Password, "its password")
				}
			}
		}
	}
	for _, cs := range v.checked {
		if tooShort[cs.sec.Name] {
			v.add(false, cs.sec.Name, cs.origin, "not-committed", "a value or password under %d characters is not searched for (it would match by accident)", scanMinNeedle)
		}
	}
	if len(needles) == 0 {
		return nil
	}
	cmd := exec.CommandContext(ctx, "git", "-C", dir, "ls-files", "-z")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		msg := vsLastLine(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		v.add(true, "", "", "not_committed_in", "cannot list the tracked files of %s: %s", dir, msg)
		return nil
	}
	hits := map[string]map[string][]string{} // secret → path → forms
	skipped := 0
	for _, rel := range strings.Split(stdout.String(), "\x00") {
		if rel == "" {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		path := filepath.Join(dir, rel)
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if fi.Size() > scanMaxFileBytes {
			skipped++
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		if bytes.IndexByte(data[:min(len(data), scanBinaryProbe)], 0) >= 0 {
			continue
		}
		for _, n := range needles {
			if !bytes.Contains(data, n.text) {
				continue
			}
			if hits[n.secret] == nil {
				hits[n.secret] = map[string][]string{}
			}
			if !vsContains(hits[n.secret][rel], n.how) {
				hits[n.secret][rel] = append(hits[n.secret][rel], n.how)
			}
		}
	}
	for _, cs := range v.checked {
		files := hits[cs.sec.Name]
		if len(files) == 0 {
			continue
		}
		var where []string
		for _, rel := range pySortedKeys(files) {
			where = append(where, rel+" ("+strings.Join(files[rel], "; ")+")")
		}
		v.add(true, cs.sec.Name, cs.origin, "not-committed", "found in %s, tracked by git in %s: remove it and rotate the credential", strings.Join(where, ", "), dir)
		delete(hits, cs.sec.Name)
	}
	if skipped > 0 {
		v.add(false, "", "", "not_committed_in", "%d tracked files over 5 MiB were not searched", skipped)
	}
	return nil
}

func vsLastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// finish fills the outputs from the first URL secret and the findings,
// every string scrubbed.
func (v *secretCheck) finish() Outputs {
	out := v.out
	for _, cs := range v.checked {
		if !cs.isURL {
			continue
		}
		out["source"] = cs.origin
		if s := cs.settings; s != nil {
			out["host"] = appHost(*s)
			out["port"] = appPort(*s)
			out["dbname"] = s.Name
			out["user"] = appUser(*s)
			if m, ok := s.Options["sslmode"]; ok {
				out["sslmode"] = pyStr(m)
			}
		}
		break
	}
	warnings := []string{}
	for _, f := range v.findings {
		if !f.fail {
			warnings = append(warnings, v.scrub(f.String()))
		}
	}
	out["warnings"] = warnings
	dis := make([]string, len(v.disagreements))
	for i, d := range v.disagreements {
		dis[i] = v.scrub(d)
	}
	out["disagreements"] = dis
	for _, k := range []string{"host", "dbname", "user", "sslmode", "source"} {
		out[k] = v.scrub(out[k].(string))
	}
	return out
}

// placeholderWords are values that stand in for a real secret, compared
// lower-cased with trailing digits and punctuation removed.
var placeholderWords = map[string]bool{
	"changeme": true, "password": true, "passwd": true, "pass": true, "pw": true, "example": true,
	"secret": true, "postgres": true, "postgresql": true, "admin": true, "administrator": true,
	"root": true, "test": true, "testing": true, "default": true, "dummy": true, "placeholder": true,
	"sample": true, "demo": true, "qwerty": true, "letmein": true, "welcome": true, "none": true,
	"null": true, "todo": true, "fixme": true, "tbd": true, "django": true, "guest": true,
}

// placeholderMarkers anywhere in a value mark it as a placeholder.
var placeholderMarkers = []string{"changeme", "change_me", "change-me", "replaceme", "replace_me", "replace-me", "example.com", "your_password", "yourpassword", "your-password"}

// vsUnrendered matches a variable reference or template left unexpanded.
var vsUnrendered = regexp.MustCompile(`^\$[A-Za-z_][A-Za-z0-9_]*$|\$\{[^}]*\}|\{\{.*\}\}|%\([A-Za-z_]+\)s`)

// placeholderReason says why a value looks like a placeholder, without
// quoting it, or returns "".
func placeholderReason(value string) string {
	s := strings.ToLower(strings.TrimSpace(value))
	if s == "" {
		return ""
	}
	if strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">") {
		return "is a <placeholder>"
	}
	if vsUnrendered.MatchString(value) {
		return "is an unrendered template or variable reference"
	}
	for _, m := range placeholderMarkers {
		if strings.Contains(s, m) {
			return "is a placeholder (it contains a placeholder word)"
		}
	}
	if strings.Contains(value, "TODO") || strings.Contains(value, "FIXME") {
		return "is a placeholder (it contains TODO or FIXME)"
	}
	if len(s) >= 2 && strings.Count(s, s[:1]) == len(s) {
		return "is one character repeated (xxx…)"
	}
	if len(s) >= 3 && (strings.HasPrefix("1234567890", s) || strings.HasPrefix("0123456789", s) || strings.HasPrefix("9876543210", s)) {
		return "is a run of consecutive digits (1234…)"
	}
	stem := strings.TrimRight(s, "0123456789!@#$%^&*._-?+ ")
	if placeholderWords[stem] || placeholderWords[strings.TrimLeft(stem, "0123456789!@#$%^&*._-?+ ")] {
		return "is a common default password"
	}
	return ""
}
