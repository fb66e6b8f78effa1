package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/pgcutover/cutover/schema"
	"github.com/pgcutover/cutover/steps"
)

// secretTimeout bounds a `from: command` secret.
const secretTimeout = 30 * time.Second

// secretValue is a read secret, or why it could not be read.
type secretValue struct {
	value string
	err   error
	decl  *schema.Secret
}

// MinSecretLen is the shortest secret value a run accepts.
const MinSecretLen = 4

// readSecrets reads every declared secret, registering each value for
// masking before anything else can see it.
func (r *runner) readSecrets(ctx context.Context) []SecretInfo {
	infos := make([]SecretInfo, 0, len(r.prog.Plan.Secrets))
	for _, s := range r.prog.Plan.Secrets {
		info := SecretInfo{Name: s.Name, From: s.From}
		var v string
		var err error
		switch s.From {
		case "env":
			info.Source = s.Env
			var ok bool
			v, ok = r.opts.lookupEnv(s.Env)
			if !ok {
				err = fmt.Errorf("environment variable %s is not set", s.Env)
			}
		case "file":
			info.Source = s.Path
			var b []byte
			b, err = os.ReadFile(s.Path)
			if err != nil {
				var pe *os.PathError
				if errors.As(err, &pe) {
					err = fmt.Errorf("cannot read %s: %v", s.Path, pe.Err)
				}
			}
			v = strings.TrimRight(string(b), "\r\n")
		case "command":
			info.Source = s.Argv[0]
			v, err = r.secretCommand(ctx, s)
		}
		if v != "" && len(v) < MinSecretLen && err == nil {
			// Masking "x" would rewrite every x in every line; a value this
			// short is a placeholder, not a credential.
			err = fmt.Errorf("the value is %d bytes, shorter than %d: a placeholder, not a credential (and too short to be masked in output)", len(v), MinSecretLen)
			v = ""
		}
		if v != "" {
			r.mask.Add(s.Name, v)
		}
		if err != nil {
			info.Error = r.mask.String(err.Error())
		}
		info.OK = err == nil
		r.secrets[s.Name] = secretValue{value: v, err: err, decl: s}
		infos = append(infos, info)
	}
	return infos
}

func (r *runner) secretCommand(ctx context.Context, s *schema.Secret) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, secretTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.Argv[0], s.Argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	v := strings.TrimRight(out.String(), "\r\n")
	if v != "" {
		// Mask before the value can reach an error message.
		r.mask.Add(s.Name, v)
	}
	if err != nil {
		msg := strings.TrimSpace(errb.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		if msg != "" {
			return "", fmt.Errorf("command %s failed: %v: %s", s.Argv[0], err, r.mask.String(msg))
		}
		return "", fmt.Errorf("command %s failed: %v", s.Argv[0], err)
	}
	return v, nil
}

// secret returns a secret's value or a message that names it, never its value.
func (r *runner) secret(name string) (string, error) {
	s, ok := r.secrets[name]
	if !ok {
		return "", fmt.Errorf("secret %s is not declared", name)
	}
	if s.err != nil {
		return "", fmt.Errorf("secret %s is not available: %v", name, s.err)
	}
	return s.value, nil
}

// secretInfo gives a step a secret with where it came from.
func (r *runner) secretInfo(name string) (steps.Secret, error) {
	v, err := r.secret(name)
	d := r.secrets[name].decl
	if d == nil {
		return steps.Secret{Name: name}, err
	}
	out := steps.Secret{Name: name, Value: v, From: d.From}
	switch d.From {
	case "env":
		out.Source = d.Env
	case "file":
		out.Source = d.Path
	case "command":
		out.Source = strings.Join(d.Argv, " ")
	}
	if err != nil {
		out.Value = ""
	}
	return out, err
}
