package main

import (
	"net/url"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/pgcutover/cutover/steps/pgtest"
)

// pgPassword is the app role's password in every cluster: a canary that the
// scripts assert appears nowhere.
const pgPassword = "Pg-Canary-s3cr3t/+=9q"

// TestPostgresScripts runs testdata/pg scripts against real throwaway
// clusters, started once for all of them:
//
//	$URL_ENFORCED  TLS enforced (hostssl, plaintext rejected), valid cert, verify-full
//	$URL_OPTIONAL  TLS on but plaintext accepted, verify-full
//	$URL_NOTLS     no TLS at all, sslmode=require
//	$URL_PREFER    the no-TLS server with sslmode=prefer
//	$URL_WRONGCA   TLS enforced, certificate from a CA the client does not trust
//	$PLANS         the repository's plans directory
//	$PGPASSWORD_CANARY the password, to assert it never leaks
func TestPostgresScripts(t *testing.T) {
	roles := []pgtest.Role{{Name: "app", Password: pgPassword}}
	dbs := map[string]string{"appdb": "app"}
	enforced := pgtest.Start(t, pgtest.Options{TLS: pgtest.TLSEnforced, Cert: pgtest.CertValid, Roles: roles, Databases: dbs})
	optional := pgtest.Start(t, pgtest.Options{TLS: pgtest.TLSOptional, Cert: pgtest.CertValid, Roles: roles, Databases: dbs})
	notls := pgtest.Start(t, pgtest.Options{TLS: pgtest.TLSOff, Roles: roles, Databases: dbs})
	wrongCA := pgtest.Start(t, pgtest.Options{TLS: pgtest.TLSEnforced, Cert: pgtest.CertUnknownCA, Roles: roles, Databases: dbs})
	verify := func(c *pgtest.Cluster) string {
		return c.URL("app", pgPassword, "appdb", "sslmode=verify-full", "sslrootcert="+c.CAFile)
	}
	plans, err := filepath.Abs(filepath.Join("..", "..", "plans"))
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 filepath.Join("testdata", "pg"),
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("NO_COLOR", "1")
			env.Setenv("CUTOVER_JOURNAL_DIR", filepath.Join(env.WorkDir, "journal"))
			env.Setenv("PLANS", plans)
			env.Setenv("URL_ENFORCED", verify(enforced))
			env.Setenv("URL_OPTIONAL", verify(optional))
			env.Setenv("URL_NOTLS", notls.URL("app", pgPassword, "appdb", "sslmode=require"))
			env.Setenv("URL_PREFER", notls.URL("app", pgPassword, "appdb", "sslmode=prefer"))
			env.Setenv("URL_WRONGCA", verify(wrongCA))
			env.Setenv("PGPASSWORD_CANARY", pgPassword)
			env.Setenv("PGPASSWORD_CANARY_URL", url.QueryEscape(pgPassword))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"grepjournal": cmdGrepJournal,
			"jsonout":     cmdJSONOut,
			"journalenv":  cmdJournalEnv,
			"journals":    cmdJournals,
		},
	})
}
