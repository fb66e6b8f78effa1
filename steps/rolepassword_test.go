package steps

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgcutover/cutover/schema"
	"github.com/pgcutover/cutover/steps/pgtest"
)

func TestRolePassword(t *testing.T) {
	const adminPW, newPW = "Admin-Canary-pw/1", "Rotated-Canary-pw/2+x"
	cl := pgtest.Start(t, pgtest.Options{
		TLS:       pgtest.TLSEnforced,
		Roles:     []pgtest.Role{{Name: "admin", Password: adminPW, Superuser: true}, {Name: "shop_b", Password: "old-password-1"}},
		Databases: map[string]string{"shop": "admin"},
		Settings:  map[string]string{"log_statement": "all"},
	})
	ctx := context.Background()
	ts := newTargets(t, map[string]string{"pw": adminPW}, &schema.Target{
		Name: "admin", Host: cl.Host, Port: cl.Port, DBName: "shop", User: "admin", Password: "pw",
		SSLMode: "verify-full", SSLRootCert: cl.CAFile,
	})
	run := func(with map[string]any) (Outputs, error) {
		t.Helper()
		c, out := newCall(t, "role-password", with, ts)
		o, err := rolePassword{}.Run(ctx, c)
		if strings.Contains(out.String(), newPW) {
			t.Error("the password is in the live output")
		}
		return o, err
	}
	login := func(pw string) error {
		cfg, err := pgx.ParseConfig(cl.URL("shop_b", pw, "shop", "sslmode=verify-full", "sslrootcert="+cl.CAFile))
		if err != nil {
			t.Fatal(err)
		}
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			c.Close(ctx)
		}
		return err
	}

	out, err := run(map[string]any{"target": "admin", "role": "shop_b", "password": newPW})
	if err != nil || out["password_changed"] != true || out["login"] != true {
		t.Fatalf("out %v err %v", out, err)
	}
	if err := login(newPW); err != nil {
		t.Fatalf("the new password does not log in: %v", err)
	}
	if err := login("old-password-1"); err == nil {
		t.Fatal("the old password still logs in")
	}
	// The server only ever saw a verifier (log_statement=all logs the ALTER).
	if log := cl.LogTail(0); strings.Contains(log, newPW) || !strings.Contains(log, "SCRAM-SHA-256$4096:") {
		t.Error("the server log holds the clear password, or not the verifier")
	}

	if _, err := run(map[string]any{"target": "admin", "role": "shop_b", "login": false}); err != nil {
		t.Fatal(err)
	}
	if err := login(newPW); err == nil || !strings.Contains(err.Error(), "not permitted to log in") {
		t.Fatalf("a NOLOGIN role logged in: %v", err)
	}

	_, err = run(map[string]any{"target": "admin", "role": "nosuch", "password": newPW})
	if err == nil || err.Error() != "role nosuch does not exist" || !IsPermanent(err) {
		t.Fatalf("err = %v", err)
	}
}
