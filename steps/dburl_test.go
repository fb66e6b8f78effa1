package steps

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// dbURLCase is one DATABASE_URL and what each dialect makes of it. The
// expected values were checked against Python 3.11's urllib running the
// libraries' parsing code.
type dbURLCase struct {
	name string
	raw  string
	dj   *DatabaseSettings // nil: dj-database-url rejects it
	env  *DatabaseSettings // nil: django-environ rejects it
}

const (
	dburlPGEngine      = "django.db.backends.postgresql"
	dburlPostgisEngine = "django.contrib.gis.db.backends.postgis"
)

func dburlIntPtr(n int) *int { return &n }

// dburlBoth is the same expected settings for both dialects.
func dburlBoth(s DatabaseSettings) (*DatabaseSettings, *DatabaseSettings) {
	a, b := s, s
	return &a, &b
}

var dbURLCases = func() []dbURLCase {
	plainDJ, plainEnv := dburlBoth(DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, Name: "appdb", User: "app", Password: "p@ss/w:rd", Host: "db.internal", Port: "5432", Options: map[string]any{"sslmode": "verify-full"}})
	ipv6DJ, ipv6Env := dburlBoth(DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, Name: "db", User: "u", Password: "p", Host: "::1", Port: "5432"})
	return []dbURLCase{
		{name: "userinfo is percent-decoded", raw: "postgres://app:p%40ss%2Fw%3Ard@db.internal:5432/appdb?sslmode=verify-full", dj: plainDJ, env: plainEnv},
		{
			name: "plus in NAME", raw: "postgres://app:pa+ss@DB.Internal.COM/my+db",
			dj:  &DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, Name: "my+db", User: "app", Password: "pa+ss", Host: "db.internal.com"},
			env: &DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, Name: "my db", User: "app", Password: "pa+ss", Host: "db.internal.com"},
		},
		{
			name: "percent-encoded socket host", raw: "postgres://u@%2Fcloudsql%2FMyProj%3Ar%3Ai/db",
			dj:  &DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, Name: "db", User: "u", Host: "/cloudsql/MyProj:r:i"},
			env: &DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, Name: "db", User: "u", Host: "%2Fcloudsql%2FMyProj%3Ar%3Ai"},
		},
		{
			name: "socket directory in the path", raw: "postgres:////var/run/postgresql/db",
			dj:  &DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, Name: "/var/run/postgresql/db"},
			env: &DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, Name: "db", Host: "/var/run/postgresql"},
		},
		{
			name: "encoded socket directory in the path", raw: "postgres://u@/%2Fcloudsql%2Fp%3Ar%3Ai/db",
			dj:  &DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, Name: "/cloudsql/p:r:i/db", User: "u"},
			env: &DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, Name: "db", User: "u", Host: "/cloudsql/p:r:i"},
		},
		{
			name: "multi-host", raw: "postgres://u:p@h1:5432,h2:5433/db",
			env: &DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, Name: "db", User: "u", Password: "p", Host: "h1,h2", Port: "5432,5433"},
		},
		{
			name: "psql scheme", raw: "psql://u:p@h/db",
			env: &DatabaseSettings{Scheme: "psql", Engine: dburlPGEngine, Name: "db", User: "u", Password: "p", Host: "h"},
		},
		{
			name: "postgis scheme", raw: "postgis://u:p@h/db",
			dj:  &DatabaseSettings{Scheme: "postgis", Engine: dburlPostgisEngine, Name: "db", User: "u", Password: "p", Host: "h"},
			env: &DatabaseSettings{Scheme: "postgis", Engine: dburlPostgisEngine, Name: "db", User: "u", Password: "p", Host: "h"},
		},
		{
			name: "timescale scheme", raw: "timescale://u:p@h/db",
			dj:  &DatabaseSettings{Scheme: "timescale", Engine: "timescale.db.backends.postgresql", Name: "db", User: "u", Password: "p", Host: "h"},
			env: &DatabaseSettings{Scheme: "timescale", Engine: "timescale", Name: "db", User: "u", Password: "p", Host: "h"},
		},
		{
			name: "conn_max_age", raw: "postgres://u:p@h/db?conn_max_age=600&sslmode=require",
			dj:  &DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, Name: "db", User: "u", Password: "p", Host: "h", Options: map[string]any{"conn_max_age": int64(600), "sslmode": "require"}},
			env: &DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, Name: "db", User: "u", Password: "p", Host: "h", Options: map[string]any{"sslmode": "require"}, ConnMaxAge: dburlIntPtr(600), TopLevel: map[string]any{"CONN_MAX_AGE": int64(600)}},
		},
		{
			name: "lifted keys keep literal_eval types", raw: "postgres://u:p@h/db?CONN_MAX_AGE=None&atomic_requests=true&autocommit=True",
			dj:  &DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, Name: "db", User: "u", Password: "p", Host: "h", Options: map[string]any{"CONN_MAX_AGE": "None", "atomic_requests": true, "autocommit": true}},
			env: &DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, Name: "db", User: "u", Password: "p", Host: "h", Options: map[string]any{}, TopLevel: map[string]any{"CONN_MAX_AGE": nil, "ATOMIC_REQUESTS": "true", "AUTOCOMMIT": true}},
		},
		{
			name: "repeated query key", raw: "postgres://u:p@h/db?sslmode=disable&sslmode=require",
			dj:  &DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, Name: "db", User: "u", Password: "p", Host: "h", Options: map[string]any{"sslmode": []any{"disable", "require"}}},
			env: &DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, Name: "db", User: "u", Password: "p", Host: "h", Options: map[string]any{"sslmode": "disable"}},
		},
		{
			name: "query value types", raw: "postgres://u:p@h/db?keepalives=true&connect_timeout=10&application_name=a+b",
			dj:  &DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, Name: "db", User: "u", Password: "p", Host: "h", Options: map[string]any{"keepalives": true, "connect_timeout": int64(10), "application_name": "a b"}},
			env: &DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, Name: "db", User: "u", Password: "p", Host: "h", Options: map[string]any{"keepalives": "true", "connect_timeout": int64(10), "application_name": "a b"}},
		},
		{
			name: "currentSchema", raw: "postgres://u:p@h/db?currentSchema=app",
			dj:  &DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, Name: "db", User: "u", Password: "p", Host: "h", Options: map[string]any{"options": "-c search_path=app"}},
			env: &DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, Name: "db", User: "u", Password: "p", Host: "h", Options: map[string]any{"currentSchema": "app"}},
		},
		{
			name: "no path: django-environ quotes again", raw: "postgres://u:p%40ss@host:5432?sslmode=require",
			dj:  &DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, User: "u", Password: "p@ss", Host: "host", Port: "5432", Options: map[string]any{"sslmode": "require"}},
			env: &DatabaseSettings{Scheme: "postgres", Engine: dburlPGEngine, User: "u", Password: "p%40ss", Host: "host", Port: "5432", Options: map[string]any{"sslmode": "require"}},
		},
		{name: "bracketed IPv6 host", raw: "postgres://u:p@[::1]:5432/db", dj: ipv6DJ, env: ipv6Env},
		{name: "port out of range", raw: "postgres://u:p@h:99999/db"},
		{name: "port not a number", raw: "postgres://u:p@h:abc/db"},
		{name: "unclosed bracket", raw: "postgres://u:p@[::1/db"},
		{
			name: "unknown scheme", raw: "https://u:p@h/db",
			env: &DatabaseSettings{Scheme: "https", Engine: "https", Name: "db", User: "u", Password: "p", Host: "h"},
		},
		{name: "no scheme", raw: "db.internal/appdb"},
	}
}()

// dburlNormalized treats an empty map like a nil one, as Django would.
func dburlNormalized(s DatabaseSettings) DatabaseSettings {
	if len(s.Options) == 0 {
		s.Options = nil
	}
	if len(s.TopLevel) == 0 {
		s.TopLevel = nil
	}
	return s
}

func TestParseDatabaseURL(t *testing.T) {
	for _, tc := range dbURLCases {
		for _, d := range []struct {
			dialect string
			want    *DatabaseSettings
		}{{DialectDjDatabaseURL, tc.dj}, {DialectDjangoEnviron, tc.env}} {
			t.Run(tc.name+"/"+d.dialect, func(t *testing.T) {
				got, err := ParseDatabaseURL(tc.raw, d.dialect)
				if d.want == nil {
					if err == nil {
						t.Fatalf("ParseDatabaseURL(%q) = %v; want an error", tc.raw, got)
					}
					if !strings.HasPrefix(err.Error(), d.dialect+": ") {
						t.Errorf("error %q does not name the dialect", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("ParseDatabaseURL(%q): %v", tc.raw, err)
				}
				g, w := dburlNormalized(got), dburlNormalized(*d.want)
				if g.Password != w.Password {
					t.Errorf("PASSWORD differs from the expected one")
				}
				if !reflect.DeepEqual(g, w) {
					t.Errorf("ParseDatabaseURL(%q)\n got %s (ConnMaxAge %v, TopLevel %s)\nwant %s (ConnMaxAge %v, TopLevel %s)",
						tc.raw, g, dburlPtrText(g.ConnMaxAge), pyRepr(g.TopLevel), w, dburlPtrText(w.ConnMaxAge), pyRepr(w.TopLevel))
				}
			})
		}
	}
}

func dburlPtrText(p *int) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

func TestParseDatabaseURLUnknownDialect(t *testing.T) {
	if _, err := ParseDatabaseURL("postgres://h/db", "sqlalchemy"); err == nil {
		t.Fatal("an unknown dialect was accepted")
	}
}

func TestDatabaseSettingsStringHidesPassword(t *testing.T) {
	s, err := ParseDatabaseURL("postgres://u:"+url.QueryEscape(testCanary)+"@h/db?password="+url.QueryEscape(testCanary), DialectDjDatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		assertNoCanary(t, format, fmt.Sprintf(format, s))
	}
}

func TestCompareDialects(t *testing.T) {
	cases := []struct {
		name string
		raw  string
		want []string // substrings, all in one line each, in this order
	}{
		{name: "agree", raw: "postgres://app:secret@db.internal:5432/appdb?sslmode=verify-full"},
		{name: "both reject", raw: "postgres://u:p@h:99999/db"},
		{name: "plus in NAME", raw: "postgres://u:p@h/my+db", want: []string{"NAME: dj-database-url 'my+db', django-environ 'my db' (django-environ decodes '+'"}},
		{name: "socket host", raw: "postgres://u@%2Fcloudsql%2Fp%3Ar%3Ai/db", want: []string{"HOST: dj-database-url '/cloudsql/p:r:i', django-environ '%2Fcloudsql%2Fp%3Ar%3Ai' (dj-database-url decodes"}},
		{name: "socket path", raw: "postgres:////var/run/postgresql/db", want: []string{"NAME: dj-database-url '/var/run/postgresql/db', django-environ 'db'", "HOST: dj-database-url '', django-environ '/var/run/postgresql'"}},
		{name: "multi-host", raw: "postgres://u:p@h1:5432,h2:5433/db", want: []string{"dj-database-url rejects the URL, django-environ accepts it: it does not support multi-host URLs"}},
		{name: "psql scheme", raw: "psql://u:p@h/db", want: []string{"dj-database-url rejects the URL, django-environ accepts it: it does not know scheme psql"}},
		{name: "repeated key", raw: "postgres://u:p@h/db?sslmode=disable&sslmode=require", want: []string{"OPTIONS['sslmode']: dj-database-url ['disable', 'require'], django-environ 'disable' (the query key is repeated"}},
		{name: "conn_max_age", raw: "postgres://u:p@h/db?conn_max_age=600", want: []string{"conn_max_age: dj-database-url keeps conn_max_age = 600 in OPTIONS", "django-environ sets CONN_MAX_AGE = 600"}},
		{name: "true", raw: "postgres://u:p@h/db?keepalives=true", want: []string{"OPTIONS['keepalives']: dj-database-url True, django-environ 'true'"}},
		{name: "currentSchema", raw: "postgres://u:p@h/db?currentSchema=app", want: []string{"OPTIONS['currentSchema']: only django-environ sets it", "OPTIONS['options']: only dj-database-url sets it"}},
		{name: "password re-quoted", raw: "postgres://u:p%40ss@host:5432?sslmode=require", want: []string{"PASSWORD: the two decode it differently"}},
		{name: "lifted boolean", raw: "postgres://u:p@h/db?atomic_requests=true", want: []string{"ATOMIC_REQUESTS"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := CompareDialects(tc.raw)
			if len(tc.want) == 0 {
				if len(got) != 0 {
					t.Errorf("CompareDialects(%q) = %q; want none", tc.raw, got)
				}
				return
			}
			joined := strings.Join(got, "\n")
			for _, w := range tc.want {
				if !strings.Contains(joined, w) {
					t.Errorf("CompareDialects(%q) =\n%s\nwant a line containing %q", tc.raw, joined, w)
				}
			}
		})
	}
}

func TestCompareDialectsNeverQuotesPasswords(t *testing.T) {
	pw := url.QueryEscape(testCanary)
	for _, raw := range []string{
		"postgres://u:" + pw + "@host:5432?sslmode=require",
		"postgres://u:" + pw + "@h/my+db?password=" + pw + "&sslpassword=" + pw + "&password=x",
		"postgres://u:" + pw + "@h1:1,h2:2/db",
	} {
		assertNoCanary(t, raw, strings.Join(CompareDialects(raw), "\n"))
	}
}

func TestPyLiteral(t *testing.T) {
	for in, want := range map[string]any{
		"600": int64(600), "-5": int64(-5), "1_000": int64(1000), "0x10": int64(16), "0": int64(0),
		"010": "010", "1.5": 1.5, "1e3": 1000.0, "True": true, "False": false, "None": nil,
		"true": "true", "'x'": "x", " 7": int64(7), "abc": "abc", "--5": "--5", "inf": "inf",
	} {
		if got := pyLiteral(in); !reflect.DeepEqual(got, want) {
			t.Errorf("pyLiteral(%q) = %#v; want %#v", in, got, want)
		}
	}
}

func TestPyUnquote(t *testing.T) {
	for in, want := range map[string]string{
		"p%40ss%2Fw%3Ard": "p@ss/w:rd",
		"a+b":             "a+b",
		"bad%zz%":         "bad%zz%",
		"%C3%A9":          "é",
		"d%C3%e9%A9b":     "d\uFFFD\uFFFDb",
		"é%41":            "éA",
	} {
		if got := pyUnquote(in); got != want {
			t.Errorf("pyUnquote(%q) = %q; want %q", in, got, want)
		}
	}
}

// testCanary is planted wherever a test handles a secret; it and its
// encodings must never come out of the code under test.
const testCanary = "Canary-p@ss/w:rd+9f3a"

// canaryForms are the canary as is and as it could be encoded.
func canaryForms(values ...string) []string {
	var out []string
	for _, v := range append([]string{testCanary}, values...) {
		if v == "" {
			continue
		}
		out = append(out, v, url.QueryEscape(v), url.PathEscape(v),
			base64.StdEncoding.EncodeToString([]byte(v)), base64.URLEncoding.EncodeToString([]byte(v)),
			base64.RawStdEncoding.EncodeToString([]byte(v)), base64.RawURLEncoding.EncodeToString([]byte(v)))
	}
	return out
}

// assertNoCanary fails when text holds the canary, or one of the extra
// values, in any form.
func assertNoCanary(t *testing.T, where, text string, values ...string) {
	t.Helper()
	for _, f := range canaryForms(values...) {
		if strings.Contains(strings.ToLower(text), strings.ToLower(f)) {
			t.Errorf("%s leaks a secret (%q) in: %s", where, f, text)
		}
	}
}

func FuzzParseDatabaseURL(f *testing.F) {
	for _, tc := range dbURLCases {
		f.Add(tc.raw)
	}
	f.Add("postgres://u:p@h/db?sslmode=require&sslmode=disable")
	f.Add("postgres://u:p@%2Fsocket%2Fdir:5432?x=1")
	f.Add("postgres://[fe80::1%25eth0]:5432,h2/db#frag")
	f.Fuzz(func(t *testing.T, raw string) {
		for _, d := range Dialects {
			s, err := ParseDatabaseURL(raw, d)
			if err == nil {
				_ = s.String()
			}
		}
		_ = CompareDialects(raw)

		// The same URL with the canary as its password: errors never show it,
		// nor do the disagreements, wherever the rest of the URL breaks.
		if mentionsCanary(raw) {
			return // the canary would be in the host or path, not a password
		}
		planted := plantPassword(raw)
		for _, d := range Dialects {
			s, err := ParseDatabaseURL(planted, d)
			if err != nil {
				assertNoCanary(t, d+" error", err.Error())
				continue
			}
			assertNoCanary(t, d+" String", s.String())
		}
		assertNoCanary(t, "CompareDialects", strings.Join(CompareDialects(planted), "\n"))
	})
}

// mentionsCanary reports whether raw holds the canary, in any case or
// encoding, before one is planted in it.
func mentionsCanary(raw string) bool {
	texts := []string{raw, pyUnquotePlus(raw)}
	for i := 0; i < 3; i++ {
		texts = append(texts, pyUnquote(texts[len(texts)-1]))
	}
	for _, text := range texts {
		if strings.Contains(strings.ToLower(text), "canary") {
			return true
		}
		for _, f := range canaryForms() {
			if strings.Contains(strings.ToLower(text), strings.ToLower(f)) {
				return true
			}
		}
	}
	return false
}

// plantPassword puts the URL-encoded canary in the userinfo of raw, keeping
// its scheme when it is a valid one.
func plantPassword(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || !vsLooksLikeURL.MatchString(scheme+"://") {
		scheme, rest = "postgres", raw
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	host := rest[:end]
	if i := strings.LastIndexByte(host, '@'); i >= 0 {
		host = host[i+1:]
	}
	return scheme + "://u:" + url.QueryEscape(testCanary) + "@" + host + rest[end:]
}
