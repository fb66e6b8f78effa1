package steps

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgcutover/cutover/schema"
)

// scramIterations is PostgreSQL's default scram_iterations.
const scramIterations = 4096

func init() {
	Register(&Type{
		Name:    "role-password",
		Summary: "Set a role's password from a secret (as a SCRAM verifier, never in clear) and whether it may log in.",
		Doc: "Runs `ALTER ROLE … PASSWORD` on an admin target. The password comes from a secret and is turned into a " +
			"SCRAM-SHA-256 verifier here, so the server, its logs and pg_stat_statements only ever see the verifier. " +
			"`login: false` stops new logins of a role that is being retired; its open sessions drain. " +
			"Used by credential rotation: stage the standby role's new password, switch the app, then revoke the old role's login.",
		Inputs: []schema.Field{
			{Name: "target", Kind: schema.String, Ref: schema.RefTarget, Required: true, Doc: "a target whose role may ALTER ROLE (CREATEROLE or superuser)"},
			{Name: "role", Kind: schema.String, Required: true, Doc: "the role to change"},
			{Name: "password", Kind: schema.String, Secret: true, Doc: "the new password, {secret: name}; unset leaves the password as it is"},
			{Name: "login", Kind: schema.Bool, Default: true, Doc: "whether the role may log in"},
		},
		Outputs: []schema.Output{
			{Name: "role", Kind: schema.String, Doc: "the role changed"},
			{Name: "login", Kind: schema.Bool, Doc: "whether it may log in now"},
			{Name: "password_changed", Kind: schema.Bool, Doc: "a new password was set"},
		},
		Mutates: func(schema.Inputs) bool { return true },
		DryRun:  "mutating: checks that the role exists and that the target may alter it, changes nothing",
		Example: "- id: stage\n  type: role-password\n  with: {target: admin, role: shop_b, password: {secret: new_password}}\n",
		Impl:    rolePassword{},
	})
}

type rolePassword struct{}

func (rolePassword) Run(ctx context.Context, c *Call) (Outputs, error) {
	a := c.Args
	conn, err := c.Targets.Conn(ctx, a.String("target"))
	if err != nil {
		return nil, err
	}
	role := a.String("role")
	if err := roleCheck(ctx, conn, role); err != nil {
		return nil, err
	}
	login := "NOLOGIN"
	if a.Bool("login") {
		login = "LOGIN"
	}
	stmt := fmt.Sprintf("ALTER ROLE %s WITH %s", pgx.Identifier{role}.Sanitize(), login)
	changed := false
	if a.Has("password") {
		pw := a.String("password")
		if pw == "" {
			return nil, Permanent(fmt.Errorf("role %s: the new password is empty", role))
		}
		verifier, err := scramVerifier(pw)
		if err != nil {
			return nil, err
		}
		stmt += " PASSWORD '" + verifier + "'"
		changed = true
	}
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return nil, Permanent(fmt.Errorf("role %s: %s", role, c.Mask(err.Error())))
	}
	fmt.Fprintf(c.Out, "role-password: %s %s%s\n", role, login, map[bool]string{true: ", new password set", false: ""}[changed])
	return Outputs{"role": role, "login": a.Bool("login"), "password_changed": changed}, nil
}

func (rolePassword) DryRun(ctx context.Context, c *Call) (Outputs, bool, error) {
	conn, err := c.Targets.Conn(ctx, c.Args.String("target"))
	if err != nil {
		return nil, true, err
	}
	return nil, true, roleCheck(ctx, conn, c.Args.String("role"))
}

// roleCheck says whether role exists and the connected role may alter it.
func roleCheck(ctx context.Context, conn *pgx.Conn, role string) error {
	var exists, may bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1),
		(SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user)`, role).Scan(&exists, &may)
	if err != nil {
		return fmt.Errorf("role %s: %w", role, err)
	}
	if !exists {
		return Permanent(fmt.Errorf("role %s does not exist", role))
	}
	if !may {
		return Permanent(fmt.Errorf("role %s: the target's role may not alter roles (needs CREATEROLE)", role))
	}
	return nil
}

// scramVerifier computes what PostgreSQL stores for a SCRAM-SHA-256
// password (RFC 5802, RFC 7677), so the clear password never leaves.
func scramVerifier(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, scramIterations, sha256.Size)
	if err != nil {
		return "", err
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	serverKey := mac(salted, "Server Key")
	enc := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", scramIterations, enc(salt), enc(stored[:]), enc(serverKey)), nil
}
