package steps

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The DATABASE_URL dialects: the two Python libraries Django apps use to
// turn DATABASE_URL into settings.DATABASES.
const (
	// DialectDjDatabaseURL is dj_database_url.parse (jazzband/dj-database-url 3.x).
	DialectDjDatabaseURL = "dj-database-url"
	// DialectDjangoEnviron is environ.Env.db_url_config (joke2k/django-environ 0.11).
	DialectDjangoEnviron = "django-environ"
)

// Dialects lists the DATABASE_URL dialects ParseDatabaseURL knows.
var Dialects = []string{DialectDjDatabaseURL, DialectDjangoEnviron}

// DatabaseSettings is the Django DATABASES entry a DATABASE_URL yields, as
// one dialect builds it. Values keep the Python types the library produces:
// OPTIONS and TopLevel values are string, int64, float64, bool, nil (None) or
// []any (a list, from a repeated query key under dj-database-url).
//
// It holds the password: String and GoString leave it out, and nothing
// derived from it may be printed.
type DatabaseSettings struct {
	// Scheme is the URL scheme, lower-cased as Python's urlsplit does.
	Scheme string
	// Engine is ENGINE. django-environ keeps an unknown scheme as is.
	Engine string
	// Name is NAME.
	Name string
	// User is USER.
	User string
	// Password is PASSWORD.
	Password string
	// Host is HOST: a host name, a socket directory (starting with "/"),
	// or "h1,h2" for a django-environ multi-host URL.
	Host string
	// Port is PORT as text: "" when unset, "5432,5433" for a
	// django-environ multi-host URL.
	Port string
	// Options is OPTIONS: what Django passes on to psycopg2 and libpq.
	Options map[string]any
	// ConnMaxAge is CONN_MAX_AGE when the URL sets it to an integer (only
	// django-environ reads it from the URL; dj-database-url takes it from
	// the app's conn_max_age= argument).
	ConnMaxAge *int
	// TopLevel holds the top-level keys other than the above that the URL
	// sets (django-environ lifts CONN_MAX_AGE, ATOMIC_REQUESTS, AUTOCOMMIT,
	// DISABLE_SERVER_SIDE_CURSORS and CONN_HEALTH_CHECKS out of the query),
	// as ast.literal_eval casts them.
	TopLevel map[string]any
}

// String describes the settings without the password.
func (s DatabaseSettings) String() string {
	pw := ""
	if s.Password != "" {
		pw = " PASSWORD=[hidden]"
	}
	return fmt.Sprintf("ENGINE=%s NAME=%s USER=%s%s HOST=%s PORT=%s OPTIONS=%s",
		pyRepr(s.Engine), pyRepr(s.Name), pyRepr(s.User), pw, pyRepr(s.Host), pyRepr(s.Port), pyRepr(dburlMaskOptions(s.Options)))
}

// GoString is String, so that %#v does not print the password either.
func (s DatabaseSettings) GoString() string { return "steps.DatabaseSettings{" + s.String() + "}" }

// ParseDatabaseURL parses raw the way the named dialect does (see Dialects)
// and returns the Django settings it yields. It reproduces the libraries'
// quirks rather than fixing them: CompareDialects lists where they differ.
// Errors never contain text of the URL, except a scheme name that one of
// the libraries knows.
func ParseDatabaseURL(raw, dialect string) (DatabaseSettings, error) {
	switch dialect {
	case DialectDjDatabaseURL:
		return parseDjDatabaseURL(raw)
	case DialectDjangoEnviron:
		return parseDjangoEnviron(raw)
	}
	return DatabaseSettings{}, fmt.Errorf("unknown DATABASE_URL dialect %q (want %s)", dialect, strings.Join(Dialects, " or "))
}

// djSchemes is dj-database-url's SCHEMES.
var djSchemes = map[string]string{
	"postgres":        "django.db.backends.postgresql",
	"postgresql":      "django.db.backends.postgresql",
	"pgsql":           "django.db.backends.postgresql",
	"postgis":         "django.contrib.gis.db.backends.postgis",
	"mongodb":         "django_mongodb",
	"mongodb+srv":     "django_mongodb",
	"mysql":           "django.db.backends.mysql",
	"mysql2":          "django.db.backends.mysql",
	"mysqlgis":        "django.contrib.gis.db.backends.mysql",
	"mysql-connector": "mysql.connector.django",
	"mssql":           "sql_server.pyodbc",
	"mssqlms":         "mssql",
	"spatialite":      "django.contrib.gis.db.backends.spatialite",
	"sqlite":          "django.db.backends.sqlite3",
	"oracle":          "django.db.backends.oracle",
	"oraclegis":       "django.contrib.gis.db.backends.oracle",
	"redshift":        "django_redshift_backend",
	"cockroach":       "django_cockroachdb",
	"timescale":       "timescale.db.backends.postgresql",
	"timescalegis":    "timescale.db.backends.postgis",
}

// djSearchPathSchemes turn ?currentSchema=x into OPTIONS options=-c search_path=x.
var djSearchPathSchemes = map[string]bool{
	"postgres": true, "postgresql": true, "pgsql": true, "postgis": true,
	"redshift": true, "timescale": true, "timescalegis": true,
}

// environSchemes is django-environ's DB_SCHEMES.
var environSchemes = map[string]string{
	"postgres":        "django.db.backends.postgresql",
	"postgresql":      "django.db.backends.postgresql",
	"psql":            "django.db.backends.postgresql",
	"pgsql":           "django.db.backends.postgresql",
	"postgis":         "django.contrib.gis.db.backends.postgis",
	"mysql":           "django.db.backends.mysql",
	"mysql2":          "django.db.backends.mysql",
	"mysql-connector": "mysql.connector.django",
	"mysqlgis":        "django.contrib.gis.db.backends.mysql",
	"mssql":           "mssql",
	"oracle":          "django.db.backends.oracle",
	"pyodbc":          "sql_server.pyodbc",
	"redshift":        "django_redshift_backend",
	"spatialite":      "django.contrib.gis.db.backends.spatialite",
	"sqlite":          "django.db.backends.sqlite3",
	"ldap":            "ldapdb.backends.ldap",
}

// environPostgresFamily is django-environ's POSTGRES_FAMILY: the schemes
// for which it reads multi-host netlocs and socket paths.
var environPostgresFamily = map[string]bool{
	"postgres": true, "postgresql": true, "psql": true, "pgsql": true, "postgis": true,
}

// environTopLevel are the query keys (compared upper-cased) django-environ
// lifts out of OPTIONS into the settings dict.
var environTopLevel = map[string]bool{
	"CONN_MAX_AGE": true, "ATOMIC_REQUESTS": true, "AUTOCOMMIT": true,
	"DISABLE_SERVER_SIDE_CURSORS": true, "CONN_HEALTH_CHECKS": true,
}

// dburlKnownScheme reports whether either library knows the scheme, which makes
// it safe to quote in a message.
func dburlKnownScheme(s string) bool {
	_, dj := djSchemes[s]
	_, env := environSchemes[s]
	return dj || env
}

func dburlQuoteScheme(s string) string {
	if dburlKnownScheme(s) {
		return "scheme " + s
	}
	return "its scheme"
}

func parseDjDatabaseURL(raw string) (DatabaseSettings, error) {
	fail := func(format string, args ...any) (DatabaseSettings, error) {
		return DatabaseSettings{}, fmt.Errorf(DialectDjDatabaseURL+": "+format, args...)
	}
	if raw == "sqlite://:memory:" {
		return DatabaseSettings{Scheme: "sqlite", Engine: djSchemes["sqlite"], Name: ":memory:"}, nil
	}
	u, err := pyURLSplit(raw)
	if err != nil {
		return fail("%v", err)
	}
	path := pyDropFirst(u.path)
	if u.scheme == "sqlite" && path == "" {
		path = ":memory:"
	}
	host, _ := u.hostinfo()
	host = pyHostname(host)
	if strings.Contains(host, "%") {
		// dj-database-url reads a percent-encoded host (a socket path) from
		// the netloc, so that it keeps its case, and decodes it.
		host = u.netloc
		if i := strings.LastIndexByte(host, '@'); i >= 0 {
			host = host[i+1:]
		}
		host = pyUnquote(host)
	}
	engine, ok := djSchemes[u.scheme]
	if !ok {
		if u.scheme == "" {
			return fail("the URL has no scheme")
		}
		return fail("it does not know %s (its PostgreSQL schemes: postgres, postgresql, pgsql, postgis, timescale, timescalegis)", dburlQuoteScheme(u.scheme))
	}
	port, err := u.port()
	if err != nil {
		if strings.Contains(u.netloc[strings.LastIndexByte(u.netloc, '@')+1:], ",") {
			return fail("it does not support multi-host URLs (ParseError: the port cannot be read)")
		}
		return fail("%v", err)
	}
	user, pw, _ := u.userinfo()
	s := DatabaseSettings{
		Scheme:   u.scheme,
		Engine:   engine,
		Name:     pyUnquote(path),
		User:     pyUnquote(user),
		Password: pyUnquote(pw),
		Host:     host,
	}
	if port > 0 {
		s.Port = strconv.Itoa(port)
	}
	q := pyParseQS(u.query)
	opts := map[string]any{}
	for _, kv := range q {
		if len(kv.values) > 1 {
			list := make([]any, len(kv.values))
			for i, v := range kv.values {
				list[i] = djCast(v)
			}
			opts[kv.key] = list
			continue
		}
		opts[kv.key] = djCast(kv.values[0])
	}
	if v, ok := opts["currentSchema"]; ok && djSearchPathSchemes[u.scheme] {
		delete(opts, "currentSchema")
		opts["options"] = "-c search_path=" + pyStr(v)
	}
	if len(opts) > 0 {
		s.Options = opts
	}
	return s, nil
}

// djCast is how dj-database-url types a query value: digits become an int,
// true and false (any case) a bool.
func djCast(v string) any {
	if pyIsDigits(v) {
		return pyInt(v)
	}
	switch strings.ToLower(v) {
	case "true":
		return true
	case "false":
		return false
	}
	return v
}

func parseDjangoEnviron(raw string) (DatabaseSettings, error) {
	fail := func(format string, args ...any) (DatabaseSettings, error) {
		return DatabaseSettings{}, fmt.Errorf(DialectDjangoEnviron+": "+format, args...)
	}
	if raw == "sqlite://:memory:" {
		return DatabaseSettings{Scheme: "sqlite", Engine: environSchemes["sqlite"], Name: ":memory:"}, nil
	}
	u, err := pyURLSplit(raw)
	if err != nil {
		return fail("%v", err)
	}
	if u.path == "" {
		// "handle unexpected URL schemes with special characters": a URL
		// without a path is quoted again and re-parsed, so percent-escapes
		// in it are decoded once less than elsewhere.
		u, err = pyURLSplit(pyQuote(pyURLUnsplit(u), ":/?&=@"))
		if err != nil {
			return fail("%v", err)
		}
	}
	path := pyDropFirst(u.path)
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	path = pyUnquotePlus(path)
	if u.scheme == "sqlite" && path == "" {
		path = ":memory:"
	}
	hostinfo := u.netloc
	if i := strings.LastIndexByte(hostinfo, '@'); i >= 0 {
		hostinfo = hostinfo[i+1:]
	}
	var host, port string
	if environPostgresFamily[u.scheme] && strings.Contains(hostinfo, ",") {
		// A "cluster DSN": hosts and ports joined with commas, unparsed.
		var hosts, ports []string
		for _, h := range strings.Split(hostinfo, ",") {
			if i := strings.LastIndexByte(h, ':'); i >= 0 {
				hosts = append(hosts, h[:i])
				if h[i+1:] != "" {
					ports = append(ports, h[i+1:])
				}
				continue
			}
			hosts = append(hosts, h)
		}
		host, port = strings.Join(hosts, ","), strings.Join(ports, ",")
		if pyIsDigits(port) {
			if n, ok := pyInt(port).(int64); ok && n == 0 {
				port = ""
			}
		}
	} else {
		hi, _ := u.hostinfo()
		host = pyHostname(hi)
		p, err := u.port()
		if err != nil {
			return fail("%v", err)
		}
		if p > 0 {
			port = strconv.Itoa(p)
		}
	}
	user, pw, _ := u.userinfo()
	s := DatabaseSettings{
		Scheme:   u.scheme,
		Name:     path,
		User:     pyUnquote(user),
		Password: pyUnquote(pw),
		Host:     host,
		Port:     port,
	}
	if (environPostgresFamily[u.scheme] || strings.Contains(path, "cloudsql")) && strings.HasPrefix(path, "/") {
		i := strings.LastIndexByte(path, '/')
		s.Host, s.Name = path[:i], path[i+1:]
	}
	if u.query != "" {
		s.Options = map[string]any{}
		for _, kv := range pyParseQS(u.query) {
			v := kv.values[0]
			if up := strings.ToUpper(kv.key); environTopLevel[up] {
				if s.TopLevel == nil {
					s.TopLevel = map[string]any{}
				}
				s.TopLevel[up] = pyLiteral(v)
				continue
			}
			if pyIsDigits(v) {
				s.Options[kv.key] = pyInt(v)
			} else {
				s.Options[kv.key] = v
			}
		}
	}
	if n, ok := s.TopLevel["CONN_MAX_AGE"].(int64); ok && n >= math.MinInt32 && n <= math.MaxInt32 {
		age := int(n)
		s.ConnMaxAge = &age
	}
	if u.scheme == "" {
		return fail("the URL has no scheme, so it yields no ENGINE")
	}
	if e, ok := environSchemes[u.scheme]; ok {
		s.Engine = e
	} else {
		s.Engine = u.scheme
	}
	return s, nil
}

// CompareDialects parses raw with both dialects and lists, one line each,
// where the resulting Django settings differ: a URL one library rejects,
// and each differing key with both values (Python-style) and the reason
// when it is a known one. PASSWORD and password-like OPTIONS are compared
// but never quoted. It returns nil when both agree or both reject the URL,
// and when an '@' follows the host part (see MisplacedPassword).
func CompareDialects(raw string) []string {
	if MisplacedPassword(raw) {
		return nil
	}
	dj, djErr := ParseDatabaseURL(raw, DialectDjDatabaseURL)
	env, envErr := ParseDatabaseURL(raw, DialectDjangoEnviron)
	switch {
	case djErr != nil && envErr != nil:
		return nil
	case djErr != nil:
		return []string{fmt.Sprintf("%s rejects the URL, %s accepts it: %s", DialectDjDatabaseURL, DialectDjangoEnviron, dburlReason(djErr))}
	case envErr != nil:
		return []string{fmt.Sprintf("%s rejects the URL, %s accepts it: %s", DialectDjangoEnviron, DialectDjDatabaseURL, dburlReason(envErr))}
	}
	var out []string
	diff := func(key string, a, b any, why string) {
		if pyEqual(a, b) {
			return
		}
		line := fmt.Sprintf("%s: %s %s, %s %s", key, DialectDjDatabaseURL, pyRepr(a), DialectDjangoEnviron, pyRepr(b))
		if why != "" {
			line += " (" + why + ")"
		}
		out = append(out, line)
	}
	diff("ENGINE", dj.Engine, env.Engine, "")
	nameWhy := ""
	if strings.Contains(dj.Name, "+") && !strings.Contains(env.Name, "+") {
		nameWhy = "django-environ decodes '+' in the database name as a space"
	} else if strings.HasPrefix(env.Host, "/") && dj.Host != env.Host {
		nameWhy = "django-environ takes a socket directory from a path that starts with '/'"
	}
	diff("NAME", dj.Name, env.Name, nameWhy)
	diff("USER", dj.User, env.User, "")
	if dj.Password != env.Password {
		why := ""
		if strings.Contains(raw, "%") {
			why = " (a URL with no /database path is quoted again by django-environ, so its percent-escapes stay encoded)"
		}
		out = append(out, "PASSWORD: the two decode it differently"+why)
	}
	hostWhy := ""
	switch {
	case strings.HasPrefix(dj.Host, "/") && strings.Contains(env.Host, "%"):
		hostWhy = "dj-database-url decodes a percent-encoded socket path in the host; django-environ leaves it encoded"
	case strings.HasPrefix(env.Host, "/"):
		hostWhy = "django-environ takes a socket directory from a path that starts with '/'"
	}
	diff("HOST", dj.Host, env.Host, hostWhy)
	diff("PORT", dj.Port, env.Port, "")

	lifted := map[string]bool{}
	for _, k := range pySortedKeys(env.TopLevel) {
		v := env.TopLevel[k]
		low := strings.ToLower(k)
		if dv, ok := dj.Options[low]; ok {
			lifted[low] = true
			out = append(out, fmt.Sprintf("%s: %s keeps %s = %s in OPTIONS, where psycopg2 hands it to libpq (invalid connection option); %s sets %s = %s",
				low, DialectDjDatabaseURL, low, pyRepr(dv), DialectDjangoEnviron, k, pyRepr(v)))
			continue
		}
		lifted[low] = true
		out = append(out, fmt.Sprintf("%s: %s sets %s = %s; %s leaves it to the app's settings", k, DialectDjangoEnviron, k, pyRepr(v), DialectDjDatabaseURL))
	}
	keys := map[string]bool{}
	for k := range dj.Options {
		keys[k] = true
	}
	for k := range env.Options {
		keys[k] = true
	}
	for _, k := range pySortedKeys(keys) {
		if lifted[strings.ToLower(k)] {
			continue
		}
		dv, dok := dj.Options[k]
		ev, eok := env.Options[k]
		label := "OPTIONS[" + pyRepr(k) + "]"
		switch {
		case !dok:
			out = append(out, fmt.Sprintf("%s: only %s sets it%s", label, DialectDjangoEnviron, dburlOptionWhy(k, nil, ev)))
			continue
		case !eok:
			out = append(out, fmt.Sprintf("%s: only %s sets it%s", label, DialectDjDatabaseURL, dburlOptionWhy(k, dv, nil)))
			continue
		}
		if pyEqual(dv, ev) {
			continue
		}
		if dburlSensitiveOption(k) {
			out = append(out, label+": the two read it differently")
			continue
		}
		why := ""
		switch dv.(type) {
		case []any:
			why = "the query key is repeated: dj-database-url makes a list, django-environ keeps the first value"
		case bool:
			why = "dj-database-url turns true/false into booleans"
		}
		diff(label, dv, ev, why)
	}
	return out
}

// MisplacedPassword reports whether an '@' follows the host part of raw: the
// mark of a '/', '?' or '#' left unescaped in the password, which then
// spills, '@' and all, into the path, query or fragment. Every field
// parsed from such a URL may hold a piece of the password.
func MisplacedPassword(raw string) bool {
	u, err := pyURLSplit(raw)
	if err != nil {
		return false
	}
	return strings.Contains(u.path, "@") || strings.Contains(u.query, "@") || strings.Contains(u.fragment, "@")
}

// dburlOptionWhy explains an OPTIONS key only one dialect sets.
func dburlOptionWhy(key string, dj, env any) string {
	switch {
	case key == "currentSchema" && env != nil:
		return " (dj-database-url turns currentSchema into options=-c search_path=…)"
	case key == "options" && dj != nil:
		return " (from ?currentSchema=…)"
	}
	return ""
}

// dburlReason is an error from ParseDatabaseURL without its dialect prefix.
func dburlReason(err error) string {
	msg := err.Error()
	for _, d := range Dialects {
		msg = strings.TrimPrefix(msg, d+": ")
	}
	return msg
}

// dburlSensitiveOption reports whether an OPTIONS key carries a credential, so
// that its value is never quoted.
func dburlSensitiveOption(key string) bool {
	k := strings.ToLower(key)
	return strings.Contains(k, "pass") || strings.Contains(k, "secret") || strings.Contains(k, "token") || k == "sslkey"
}

// dburlMaskOptions hides the values of credential options.
func dburlMaskOptions(opts map[string]any) map[string]any {
	if len(opts) == 0 {
		return opts
	}
	out := make(map[string]any, len(opts))
	for k, v := range opts {
		if dburlSensitiveOption(k) {
			v = "[hidden]"
		}
		out[k] = v
	}
	return out
}

// pySplitResult is Python's urllib.parse.SplitResult.
type pySplitResult struct {
	scheme, netloc, path, query, fragment string
}

var pyErrIPv6URL = errors.New("invalid IPv6 URL (a '[' or ']' in the host)")

// pyURLSplit follows urllib.parse.urlsplit of Python 3.11 (Debian
// bookworm's), which urlparse matches for these schemes. It does not apply
// the NFKC check on non-ASCII netlocs.
func pyURLSplit(raw string) (pySplitResult, error) {
	var r pySplitResult
	url := strings.TrimLeft(raw, "\x00\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f ")
	url = strings.NewReplacer("\t", "", "\r", "", "\n", "").Replace(url)
	if i := strings.IndexByte(url, ':'); i > 0 && pyIsAlpha(url[0]) {
		ok := true
		for j := 0; j < i; j++ {
			c := url[j]
			if !pyIsAlpha(c) && !(c >= '0' && c <= '9') && c != '+' && c != '-' && c != '.' {
				ok = false
				break
			}
		}
		if ok {
			r.scheme, url = strings.ToLower(url[:i]), url[i+1:]
		}
	}
	if strings.HasPrefix(url, "//") {
		end := len(url)
		for _, c := range "/?#" {
			if j := strings.IndexRune(url[2:], c); j >= 0 && j+2 < end {
				end = j + 2
			}
		}
		r.netloc, url = url[2:end], url[end:]
		open, closed := strings.Contains(r.netloc, "["), strings.Contains(r.netloc, "]")
		if open != closed {
			return r, pyErrIPv6URL
		}
		if open {
			if err := pyCheckBracketedNetloc(r.netloc); err != nil {
				return r, err
			}
		}
	}
	if i := strings.IndexByte(url, '#'); i >= 0 {
		url, r.fragment = url[:i], url[i+1:]
	}
	if i := strings.IndexByte(url, '?'); i >= 0 {
		url, r.query = url[:i], url[i+1:]
	}
	r.path = url
	return r, nil
}

// pyCheckBracketedNetloc is Python 3.11's _check_bracketed_host applied
// to what follows the netloc's first '[': it must be an IPv6 address or an
// IPvFuture literal.
func pyCheckBracketedNetloc(netloc string) error {
	_, bracketed, _ := strings.Cut(netloc, "[")
	host, _, _ := strings.Cut(bracketed, "]")
	if strings.HasPrefix(host, "v") {
		if !pyIPvFuture.MatchString(host) {
			return errors.New("invalid IPvFuture address in the host")
		}
		return nil
	}
	addr, zone, _ := strings.Cut(host, "%")
	if strings.Contains(zone, "%") || strings.HasSuffix(host, "%") {
		return errors.New("the bracketed host is not an IP address")
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return errors.New("the bracketed host is not an IP address")
	}
	if a.Is4() {
		return errors.New("an IPv4 address cannot be in brackets")
	}
	return nil
}

var pyIPvFuture = regexp.MustCompile(`\Av[a-fA-F0-9]+\..+\z`)

// userinfo is SplitResult.username and .password (not decoded).
func (r pySplitResult) userinfo() (user, password string, hasPassword bool) {
	i := strings.LastIndexByte(r.netloc, '@')
	if i < 0 {
		return "", "", false
	}
	user, password, hasPassword = strings.Cut(r.netloc[:i], ":")
	return user, password, hasPassword
}

// hostinfo is SplitResult._hostinfo: the host (not yet lower-cased) and
// the port text.
func (r pySplitResult) hostinfo() (host, port string) {
	hi := r.netloc[strings.LastIndexByte(r.netloc, '@')+1:]
	if _, bracketed, ok := strings.Cut(hi, "["); ok {
		host, rest, _ := strings.Cut(bracketed, "]")
		_, port, _ = strings.Cut(rest, ":")
		return host, port
	}
	host, port, _ = strings.Cut(hi, ":")
	return host, port
}

// pyHostname is SplitResult.hostname: lower-cased up to the first '%'
// (which starts an IPv6 zone, or here a percent-encoded socket path).
func pyHostname(h string) string {
	before, after, found := strings.Cut(h, "%")
	if !found {
		return strings.ToLower(h)
	}
	return strings.ToLower(before) + "%" + after
}

// port is SplitResult.port: 0 when absent.
func (r pySplitResult) port() (int, error) {
	_, p := r.hostinfo()
	if p == "" {
		return 0, nil
	}
	if !pyIsDigits(p) {
		return 0, errors.New("the port is not a number (a ':' or '/' in the password must be percent-encoded)")
	}
	p = strings.TrimLeft(p, "0")
	if len(p) > 5 {
		return 0, errors.New("the port is out of range 0-65535")
	}
	n, _ := strconv.Atoi("0" + p)
	if n > 65535 {
		return 0, errors.New("the port is out of range 0-65535")
	}
	return n, nil
}

// pyUsesNetloc is urllib.parse.uses_netloc as Python ships it (importing
// dj_database_url would add its schemes).
var pyUsesNetloc = map[string]bool{
	"": true, "ftp": true, "http": true, "gopher": true, "nntp": true, "telnet": true, "imap": true,
	"wais": true, "file": true, "mms": true, "https": true, "shttp": true, "snews": true, "prospero": true,
	"rtsp": true, "rtspu": true, "rsync": true, "svn": true, "svn+ssh": true, "sftp": true, "nfs": true,
	"git": true, "git+ssh": true, "ws": true, "wss": true,
}

// pyURLUnsplit is urllib.parse.urlunsplit (Python 3.11).
func pyURLUnsplit(r pySplitResult) string {
	url := r.path
	if r.netloc != "" || (r.scheme != "" && pyUsesNetloc[r.scheme] && (url == "" || url[0] == '/')) {
		if url != "" && url[0] != '/' {
			url = "/" + url
		}
		url = "//" + r.netloc + url
	} else if strings.HasPrefix(url, "//") {
		url = "//" + url
	}
	if r.scheme != "" {
		url = r.scheme + ":" + url
	}
	if r.query != "" {
		url += "?" + r.query
	}
	if r.fragment != "" {
		url += "#" + r.fragment
	}
	return url
}

// pyQuote is urllib.parse.quote(s, safe).
func pyQuote(s, safe string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if pyIsAlpha(c) || c >= '0' && c <= '9' || strings.IndexByte("_.-~", c) >= 0 || strings.IndexByte(safe, c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// pyUnquote is urllib.parse.unquote: valid %XX escapes in ASCII runs are
// decoded as UTF-8 (invalid sequences become U+FFFD); a '%' not followed
// by two hex digits stays as it is.
func pyUnquote(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var out strings.Builder
	var pending []byte
	flush := func() {
		for len(pending) > 0 {
			r, n := utf8.DecodeRune(pending)
			if r == utf8.RuneError && n <= 1 {
				out.WriteRune(utf8.RuneError)
				pending = pending[pyInvalidPrefix(pending):]
				continue
			}
			out.Write(pending[:n])
			pending = pending[n:]
		}
		pending = pending[:0]
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c >= utf8.RuneSelf:
			// Non-ASCII text is kept as it is, outside the decoded runs.
			flush()
			_, n := utf8.DecodeRuneInString(s[i:])
			out.WriteString(s[i : i+n])
			i += n
		case c == '%' && i+2 < len(s) && pyIsHex(s[i+1]) && pyIsHex(s[i+2]):
			pending = append(pending, pyUnhex(s[i+1])<<4|pyUnhex(s[i+2]))
			i += 3
		default:
			pending = append(pending, c)
			i++
		}
	}
	flush()
	return out.String()
}

// pyInvalidPrefix is the length of the maximal subpart of an ill-formed
// UTF-8 sequence at the start of b, which Python's "replace" error handler
// turns into one U+FFFD.
func pyInvalidPrefix(b []byte) int {
	c := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c == 0xED:
		need, hi = 2, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		need = 2
	case c == 0xF0:
		need, lo = 3, 0x90
	case c == 0xF4:
		need, hi = 3, 0x8F
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	default:
		return 1
	}
	n := 1
	for ; n <= need && n < len(b); n++ {
		if b[n] < lo || b[n] > hi {
			break
		}
		lo, hi = 0x80, 0xBF
	}
	return n
}

// pyDropFirst is Python's s[1:]: s without its first character.
func pyDropFirst(s string) string {
	if s == "" {
		return ""
	}
	_, n := utf8.DecodeRuneInString(s)
	return s[n:]
}

// pyUnquotePlus is urllib.parse.unquote_plus.
func pyUnquotePlus(s string) string { return pyUnquote(strings.ReplaceAll(s, "+", " ")) }

// pyQueryPair is one key of parse_qs, with its values in order.
type pyQueryPair struct {
	key    string
	values []string
}

// pyParseQS is urllib.parse.parse_qs: '&'-separated, '+' is a space, blank
// values and items without '=' are dropped, keys keep first-seen order.
func pyParseQS(q string) []pyQueryPair {
	var out []pyQueryPair
	idx := map[string]int{}
	for _, item := range strings.Split(q, "&") {
		k, v, ok := strings.Cut(item, "=")
		if !ok || v == "" {
			continue
		}
		k, v = pyUnquotePlus(k), pyUnquotePlus(v)
		if i, seen := idx[k]; seen {
			out[i].values = append(out[i].values, v)
			continue
		}
		idx[k] = len(out)
		out = append(out, pyQueryPair{key: k, values: []string{v}})
	}
	return out
}

// pyLiteral is the subset of ast.literal_eval that django-environ's _cast
// meets in a query value: ints, floats, True, False, None and quoted
// strings. Anything else stays the string it was.
func pyLiteral(s string) any {
	t := strings.TrimRight(strings.TrimLeft(s, " \t"), " \t\r\n")
	switch t {
	case "True":
		return true
	case "False":
		return false
	case "None":
		return nil
	}
	if len(t) >= 2 && (t[0] == '\'' || t[0] == '"') && t[len(t)-1] == t[0] && !strings.ContainsRune(t[1:len(t)-1], rune(t[0])) && !strings.Contains(t, `\`) {
		return t[1 : len(t)-1]
	}
	body, neg := t, false
	if body != "" && (body[0] == '-' || body[0] == '+') {
		neg, body = body[0] == '-', body[1:]
	}
	if pyIntLiteral.MatchString(body) {
		// The pattern admits no leading zeros, so base 0 reads exactly
		// Python's integer literals.
		n, err := strconv.ParseInt(strings.ReplaceAll(body, "_", ""), 0, 64)
		if err != nil {
			return s
		}
		if neg {
			n = -n
		}
		return n
	}
	if pyFloatLiteral.MatchString(body) {
		f, err := strconv.ParseFloat(strings.ReplaceAll(body, "_", ""), 64)
		if err != nil {
			return s
		}
		if neg {
			f = -f
		}
		return f
	}
	return s
}

var (
	pyIntLiteral   = regexp.MustCompile(`^(?:[1-9](?:_?[0-9])*|0(?:_?0)*|0[xX](?:_?[0-9a-fA-F])+|0[oO](?:_?[0-7])+|0[bB](?:_?[01])+)$`)
	pyFloatLiteral = regexp.MustCompile(`^(?:(?:[0-9](?:_?[0-9])*)?\.[0-9](?:_?[0-9])*(?:[eE][+-]?[0-9](?:_?[0-9])*)?|[0-9](?:_?[0-9])*\.(?:[eE][+-]?[0-9](?:_?[0-9])*)?|[0-9](?:_?[0-9])*[eE][+-]?[0-9](?:_?[0-9])*)$`)
)

// pyInt converts ASCII digits the way int() does; a value beyond int64
// stays text.
func pyInt(digits string) any {
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return digits
	}
	return n
}

// pyStr is Python's str() of a settings value.
func pyStr(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return pyRepr(v)
}

// pyRepr is Python's repr() of a settings value.
func pyRepr(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case string:
		q := byte('\'')
		if strings.Contains(x, "'") && !strings.Contains(x, `"`) {
			q = '"'
		}
		var b strings.Builder
		b.WriteByte(q)
		for _, r := range x {
			switch {
			case r == '\\' || r == rune(q):
				b.WriteByte('\\')
				b.WriteRune(r)
			case r == '\n':
				b.WriteString(`\n`)
			case r == '\r':
				b.WriteString(`\r`)
			case r == '\t':
				b.WriteString(`\t`)
			case r < 0x20 || r == 0x7f:
				fmt.Fprintf(&b, `\x%02x`, r)
			default:
				b.WriteRune(r)
			}
		}
		b.WriteByte(q)
		return b.String()
	case bool:
		if x {
			return "True"
		}
		return "False"
	case int64:
		return strconv.FormatInt(x, 10)
	case int:
		return strconv.Itoa(x)
	case float64:
		s := strconv.FormatFloat(x, 'g', -1, 64)
		if !strings.ContainsAny(s, ".eIN") {
			s += ".0"
		}
		return s
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = pyRepr(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		keys := pySortedKeys(x)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = pyRepr(k) + ": " + pyRepr(x[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return fmt.Sprint(v)
}

// pyEqual compares two settings values as Python's == would for these types.
func pyEqual(a, b any) bool {
	switch x := a.(type) {
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !pyEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case bool:
		// True == 1 in Python, but a libpq option is text: keep them apart.
		y, ok := b.(bool)
		return ok && x == y
	}
	if _, ok := b.([]any); ok {
		return false
	}
	if _, ok := b.(bool); ok {
		return false
	}
	return a == b
}

func pyIsAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func pyIsDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func pyIsHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func pyUnhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

func pySortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
