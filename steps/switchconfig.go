package steps

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/pgcutover/cutover/schema"
)

// Backup files are named <file>.cutover-<UTC time><suffix>, next to the file
// unless backup_dir says otherwise. An .absent backup is empty and records
// that the file did not exist: restoring it removes the file.
const (
	envBackupInfix      = ".cutover-"
	envBackupSuffix     = ".bak"
	envAbsentSuffix     = ".absent"
	envBackupTimeFormat = "20060102T150405Z"
	envBackupMode       = 0o600
	envNewFileMode      = 0o600
	envBackupTrials     = 1000
)

// envKeyPattern is a variable name both python-dotenv and django-environ
// read.
var envKeyPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func init() {
	Register(&Type{
		Name:    "switch-config",
		Summary: "Atomically set or unset keys in a dotenv-style file, keeping the previous version (0600) for rollback; or restore such a backup.",
		Doc: "Reads `file` (KEY=value lines, as python-dotenv and django-environ read them), sets the keys in `set` (values may be " +
			"`{secret: name}`) and removes the keys in `unset`. Comments, blank lines, `export ` prefixes, line endings and every " +
			"other line stay byte for byte. A rewritten line is `KEY=value` (keeping its `export `), without the spaces around `=` " +
			"or the trailing comment that django-environ would read as part of the value. A value made only of letters, digits and " +
			"`_ - . / : @ % + , =` is written bare; any other is double-quoted, with `\\` and `\"` escaped and a newline written as " +
			"`\\n` (python-dotenv reads it back as a newline; django-environ keeps `\\n` unless read with `multiline=True`). " +
			"python-dotenv expands `${NAME}` inside any value, quoted or not: keep such text out of values an app reads with it. " +
			"Every value is parsed back before anything is written, and a key whose value is already the one asked for is left as it is.\n\n" +
			"Before the file changes, its previous content is written to `<file>.cutover-<UTC time>.bak` (mode 0600, in `backup_dir`, " +
			"never overwriting an existing file) and fsynced: that path is the `backup` output and the rollback's `restore` input. " +
			"The new content goes to a temporary file in the same directory with the file's mode (or `mode`) and owner, is fsynced, " +
			"renamed over the file, and the directory is fsynced, so a reader sees the old file or the new one, never a mix. " +
			"A file that changed while the step ran is left alone and the step fails. A symbolic link is followed: its target is rewritten.\n\n" +
			"With `restore`, the backup is copied back the same way, byte for byte (after backing up what it replaces); a `.absent` " +
			"backup, written when `create` made the file, removes it. `restore_sha256` makes the restore refuse a backup whose content changed.\n\n" +
			"Outputs and errors name keys and paths, never values; the journal gets content hashes.",
		Inputs: []schema.Field{
			{Name: "file", Kind: schema.String, Required: true, Doc: "the dotenv file to change"},
			{Name: "set", Kind: schema.StringMap, Secret: true, Doc: "keys to set and their values"},
			{Name: "unset", Kind: schema.StringList, Doc: "keys to remove"},
			{Name: "restore", Kind: schema.String, Doc: "path of a backup to copy back (restore mode: excludes set and unset), usually ${{ steps.switch.outputs.backup }}"},
			{Name: "restore_sha256", Kind: schema.String, Doc: "in restore mode, the sha256 the backup must have, usually ${{ steps.switch.outputs.previous_sha256 }}"},
			{Name: "backup_dir", Kind: schema.String, Doc: "directory for the backup (default: the file's directory)"},
			{Name: "create", Kind: schema.Bool, Default: false, Doc: "create the file when it does not exist"},
			{Name: "mode", Kind: schema.Int, Doc: "permission bits of the written file, in octal (0640); default: the file's current mode, 0600 for a new file"},
		},
		Outputs: []schema.Output{
			{Name: "backup", Kind: schema.String, Doc: "path of the backup of the previous content (empty in a dry run, or when there was nothing to do)"},
			{Name: "previous_sha256", Kind: schema.String, Doc: "sha256 (hex) of the file before the step; empty when it did not exist"},
			{Name: "new_sha256", Kind: schema.String, Doc: "sha256 (hex) of the file after the step; empty when it no longer exists"},
			{Name: "changed", Kind: schema.StringList, Doc: "the keys whose value changed, added or removed, sorted (never values)"},
		},
		Mutates: func(schema.Inputs) bool { return true },
		DryRun:  "writes nothing: reads the file and reports the keys that would change and the content hashes before and after; backup is empty",
		Example: "- id: switch\n  type: switch-config\n  commit: true\n  with: {file: /etc/app/db.env, set: {DATABASE_URL: {secret: new_url}}}\n" +
			"  rollback:\n    - type: switch-config\n      with: {file: /etc/app/db.env, restore: \"${{ steps.switch.outputs.backup }}\"}\n",
		Impl:            switchConfig{},
		AnnouncesEffect: true,
	})
}

// switchConfig implements switch-config. now is the clock that names
// backups (time.Now when nil).
type switchConfig struct {
	now func() time.Time
}

// Run backs the file up and applies the change, or restores a backup.
func (s switchConfig) Run(ctx context.Context, c *Call) (Outputs, error) {
	return s.apply(ctx, c, false)
}

// DryRun computes the change and writes nothing.
func (s switchConfig) DryRun(ctx context.Context, c *Call) (Outputs, bool, error) {
	out, err := s.apply(ctx, c, true)
	return out, true, err
}

// envFile is what the step knows of the file before changing it.
type envFile struct {
	path    string // absolute, symbolic links resolved when it exists
	exists  bool
	content []byte
	mode    fs.FileMode
	uid     int
	gid     int
}

func (s switchConfig) apply(ctx context.Context, c *Call, dry bool) (Outputs, error) {
	a := c.Args
	name := a.String("file")
	if name == "" {
		return nil, Permanent(errors.New("file is empty"))
	}
	restoring := a.Has("restore")
	if restoring && (a.Has("set") || a.Has("unset")) {
		return nil, Permanent(errors.New("restore excludes set and unset: a step either restores a backup or changes keys"))
	}
	if !restoring && a.Has("restore_sha256") {
		return nil, Permanent(errors.New("restore_sha256 needs restore"))
	}
	var mode fs.FileMode
	if a.Has("mode") {
		m := a.Int("mode")
		if m <= 0 || m > 0o777 {
			return nil, Permanent(fmt.Errorf("mode %d (octal %o) is not a permission mode between 0001 and 0777: write it in octal with a leading 0, as in 0640", m, m))
		}
		mode = fs.FileMode(m)
	}
	f, err := readEnvFile(name)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	var next []byte
	var changed []string
	remove := false
	if restoring {
		next, remove, changed, err = restoreEnvContent(f, a.String("restore"), a.String("restore_sha256"))
	} else {
		if !f.exists && !a.Bool("create") {
			return nil, Permanent(fmt.Errorf("%s does not exist (set create: true to create it)", f.path))
		}
		next, changed, err = editEnvContent(f.content, a.Map("set"), a.Strings("unset"))
	}
	if err != nil {
		return nil, err
	}

	out := Outputs{
		"backup":          "",
		"previous_sha256": "",
		"new_sha256":      "",
		"changed":         changed,
	}
	if f.exists {
		out["previous_sha256"] = envSHA256(f.content)
	}
	if !remove {
		out["new_sha256"] = envSHA256(next)
	}
	if !f.exists && (remove || len(next) == 0 && !restoring) {
		// Restoring an absence that is already there, or only unsetting
		// keys of a file that does not exist: nothing to do.
		out["new_sha256"] = ""
		return out, nil
	}
	if dry {
		return out, nil
	}

	dir := a.String("backup_dir")
	if dir == "" {
		dir = filepath.Dir(f.path)
	}
	backup, err := writeEnvBackup(dir, f, s.clock())
	if err != nil {
		return out, err
	}
	out["backup"] = backup
	if c.Announce != nil {
		// Before the file changes: a crash after this point leaves the
		// rollback the backup to restore.
		if err := c.Announce(Outputs{"backup": backup, "previous_sha256": out["previous_sha256"]}); err != nil {
			return out, fmt.Errorf("not changed: the backup path could not be journaled: %w", err)
		}
	}
	if f.exists && !remove && bytes.Equal(next, f.content) && (mode == 0 || mode == f.mode.Perm()) {
		return out, nil // nothing to change: the backup still serves a rollback
	}
	if err := ctx.Err(); err != nil {
		return out, err
	}
	if remove {
		if err := removeEnvFile(f); err != nil {
			return out, err
		}
		return out, nil
	}
	if mode == 0 {
		mode = envNewFileMode
		if f.exists {
			mode = f.mode.Perm()
		}
	}
	if err := replaceEnvFile(f, next, mode); err != nil {
		return out, err
	}
	return out, nil
}

func (s switchConfig) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

func envSHA256(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// readEnvFile reads the file, following symbolic links.
func readEnvFile(name string) (*envFile, error) {
	abs, err := filepath.Abs(name)
	if err != nil {
		return nil, Permanent(fmt.Errorf("file %s: %w", name, err))
	}
	f := &envFile{path: abs}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		f.path = real
	}
	st, err := os.Stat(f.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return f, nil
	case err != nil:
		return nil, Permanent(err)
	case !st.Mode().IsRegular():
		return nil, Permanent(fmt.Errorf("%s is not a regular file (%s)", f.path, st.Mode().Type()))
	}
	content, err := os.ReadFile(f.path)
	if err != nil {
		return nil, Permanent(err)
	}
	f.exists, f.content, f.mode = true, content, st.Mode()
	f.uid, f.gid = -1, -1
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		f.uid, f.gid = int(sys.Uid), int(sys.Gid)
	}
	return f, nil
}

// editEnvContent applies set and unset, checking that every value reads back as
// given. Errors name keys, never values.
func editEnvContent(content []byte, set map[string]string, unset []string) ([]byte, []string, error) {
	if len(set) == 0 && len(unset) == 0 {
		return nil, nil, Permanent(errors.New("nothing to do: give set or unset (or restore)"))
	}
	var bad []string
	for k, v := range set {
		if !envKeyPattern.MatchString(k) {
			bad = append(bad, fmt.Sprintf("set: %q is not a variable name (letters, digits and _, not starting with a digit)", k))
		}
		if strings.ContainsRune(v, 0) {
			bad = append(bad, fmt.Sprintf("set: the value of %s contains a NUL byte, which no environment variable can hold", k))
		}
		if slices.Contains(unset, k) {
			bad = append(bad, fmt.Sprintf("%s is both in set and in unset", k))
		}
	}
	for _, k := range unset {
		if !envKeyPattern.MatchString(k) {
			bad = append(bad, fmt.Sprintf("unset: %q is not a variable name (letters, digits and _, not starting with a digit)", k))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return nil, nil, Permanent(errors.New(strings.Join(bad, "; ")))
	}
	next := editDotenv(string(content), set, unset)
	got := dotenvValues(parseDotenv(next))
	for k, v := range set {
		if w, ok := got[k]; !ok || !w.set || w.value != v {
			return nil, nil, Permanent(fmt.Errorf("the value of %s would not read back as given; nothing was written", k))
		}
	}
	for _, k := range unset {
		if _, ok := got[k]; ok {
			return nil, nil, Permanent(fmt.Errorf("%s would still be set; nothing was written", k))
		}
	}
	return []byte(next), changedEnvKeys(string(content), next), nil
}

// restoreEnvContent reads a backup of f. remove is true for an .absent backup.
func restoreEnvContent(f *envFile, backup, wantSum string) (next []byte, remove bool, changed []string, err error) {
	if backup == "" {
		return nil, false, nil, Permanent(errors.New("restore is empty: there is no backup to restore (did the step that makes it run?)"))
	}
	base := filepath.Base(backup)
	prefix := filepath.Base(f.path) + envBackupInfix
	if !strings.HasPrefix(base, prefix) || !(strings.HasSuffix(base, envBackupSuffix) || strings.HasSuffix(base, envAbsentSuffix)) {
		return nil, false, nil, Permanent(fmt.Errorf("restore: %s is not a backup of %s (those are named %s<time>%s)", backup, f.path, prefix, envBackupSuffix))
	}
	st, err := os.Stat(backup)
	if err != nil {
		return nil, false, nil, Permanent(fmt.Errorf("restore: %w", err))
	}
	if !st.Mode().IsRegular() {
		return nil, false, nil, Permanent(fmt.Errorf("restore: %s is not a regular file", backup))
	}
	content, err := os.ReadFile(backup)
	if err != nil {
		return nil, false, nil, Permanent(fmt.Errorf("restore: %w", err))
	}
	if strings.HasSuffix(base, envAbsentSuffix) {
		if len(content) != 0 {
			return nil, false, nil, Permanent(fmt.Errorf("restore: %s should be empty: it records that %s did not exist", backup, f.path))
		}
		remove = true
		content = nil
	}
	if wantSum != "" {
		got := envSHA256(content)
		if remove {
			got = ""
		}
		if !strings.EqualFold(got, wantSum) {
			return nil, false, nil, Permanent(fmt.Errorf("restore: %s has sha256 %s, want %s: the backup changed since it was made", backup, envSHAOrAbsent(got), wantSum))
		}
	}
	return content, remove, changedEnvKeys(string(f.content), string(content)), nil
}

func envSHAOrAbsent(s string) string {
	if s == "" {
		return "none (the file did not exist)"
	}
	return s
}

// changedEnvKeys lists the keys whose value differs between two contents.
func changedEnvKeys(before, after string) []string {
	a, b := dotenvValues(parseDotenv(before)), dotenvValues(parseDotenv(after))
	out := []string{}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// writeEnvBackup saves f's content (or, when it does not exist, an empty
// .absent marker) under a new name in dir, fsynced, mode 0600.
func writeEnvBackup(dir string, f *envFile, now time.Time) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", Permanent(fmt.Errorf("backup_dir: %w", err))
	}
	suffix := envBackupSuffix
	if !f.exists {
		suffix = envAbsentSuffix
	}
	stem := filepath.Base(f.path) + envBackupInfix + now.UTC().Format(envBackupTimeFormat)
	for i := 1; i <= envBackupTrials; i++ {
		name := stem + suffix
		if i > 1 {
			name = fmt.Sprintf("%s-%d%s", stem, i, suffix)
		}
		path := filepath.Join(dir, name)
		out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, envBackupMode)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", Permanent(fmt.Errorf("cannot write the backup: %w", err))
		}
		err = out.Chmod(envBackupMode)
		if err == nil {
			_, err = out.Write(f.content)
		}
		if err == nil {
			err = out.Sync()
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = syncEnvDir(dir)
		}
		if err != nil {
			os.Remove(path)
			return "", fmt.Errorf("cannot write the backup %s: %w", path, err)
		}
		return path, nil
	}
	return "", fmt.Errorf("cannot write the backup: %d names starting %s are taken in %s", envBackupTrials, stem, dir)
}

// replaceEnvFile writes content to a temporary file next to f, with mode and
// f's owner, fsyncs it and renames it over f, then fsyncs the directory.
func replaceEnvFile(f *envFile, content []byte, mode fs.FileMode) error {
	dir := filepath.Dir(f.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.path)+".cutover-*.tmp")
	if err != nil {
		return Permanent(fmt.Errorf("cannot write next to %s: %w", f.path, err))
	}
	name := tmp.Name()
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if f.exists && f.uid >= 0 {
		if st, err := tmp.Stat(); err == nil {
			if sys, ok := st.Sys().(*syscall.Stat_t); ok && (int(sys.Uid) != f.uid || int(sys.Gid) != f.gid) {
				if err := tmp.Chown(f.uid, f.gid); err != nil {
					return Permanent(fmt.Errorf("cannot keep the owner %d:%d of %s (the app may no longer read it): %w", f.uid, f.gid, f.path, err))
				}
			}
		}
	}
	if _, err := tmp.Write(content); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := checkEnvUnchanged(f); err != nil {
		os.Remove(name)
		done = true
		return err
	}
	if err := os.Rename(name, f.path); err != nil {
		os.Remove(name)
		done = true
		return fmt.Errorf("cannot replace %s: %w", f.path, err)
	}
	done = true
	if err := syncEnvDir(dir); err != nil {
		return fmt.Errorf("%s was replaced but its directory could not be synced: %w", f.path, err)
	}
	return nil
}

// removeEnvFile removes f, unless it changed since it was read.
func removeEnvFile(f *envFile) error {
	if err := checkEnvUnchanged(f); err != nil {
		return err
	}
	if err := os.Remove(f.path); err != nil {
		return fmt.Errorf("cannot remove %s: %w", f.path, err)
	}
	if err := syncEnvDir(filepath.Dir(f.path)); err != nil {
		return fmt.Errorf("%s was removed but its directory could not be synced: %w", f.path, err)
	}
	return nil
}

// checkEnvUnchanged fails when another writer changed the file since it was
// read: its change would be lost.
func checkEnvUnchanged(f *envFile) error {
	now, err := os.ReadFile(f.path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !f.exists:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s was removed while the step ran; it was left as it was", f.path)
	case err != nil:
		return fmt.Errorf("cannot read %s again: %w", f.path, err)
	case !f.exists:
		return fmt.Errorf("%s was created by someone else while the step ran; it was left as it was", f.path)
	case !bytes.Equal(now, f.content):
		return fmt.Errorf("%s changed while the step ran (another writer?); it was left as it was", f.path)
	}
	return nil
}

func syncEnvDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// The dotenv syntax, as python-dotenv's parser reads it (its regular
// expressions, with the same leftmost-first matching), so that the spans of
// bindings are found exactly and values read back the way the app reads them.
var (
	dotenvMultilineSpace = regexp.MustCompile(`\A[ \t\n\r\f\v]*`)
	dotenvSpace          = regexp.MustCompile(`\A[ \t\f\v]*`)
	dotenvExport         = regexp.MustCompile(`\A(?:export[ \t\f\v]+)?`)
	dotenvQuotedKey      = regexp.MustCompile(`\A'([^']+)'`)
	dotenvKey            = regexp.MustCompile(`\A([^=#\t\n\r\f\v ]+)`)
	dotenvEquals         = regexp.MustCompile(`\A=[ \t\f\v]*`)
	dotenvSingleQuoted   = regexp.MustCompile(`\A'((?:\\'|[^'])*)'`)
	dotenvDoubleQuoted   = regexp.MustCompile(`\A"((?:\\"|[^"])*)"`)
	dotenvUnquoted       = regexp.MustCompile(`\A[^\r\n]*`)
	dotenvComment        = regexp.MustCompile(`\A(?:[ \t\f\v]*#[^\r\n]*)?`)
	dotenvEndOfLine      = regexp.MustCompile(`\A[ \t\f\v]*(?:\r\n|\n|\r|\z)`)
	dotenvRestOfLine     = regexp.MustCompile(`\A[^\r\n]*(?:\r|\n|\r\n)?`)
	dotenvInlineComment  = regexp.MustCompile(`[ \t\n\r\f\v]+#.*`)
	dotenvDoubleEscapes  = regexp.MustCompile(`\\[\\'"abfnrtv]`)
	dotenvSingleEscapes  = regexp.MustCompile(`\\[\\']`)
)

var dotenvEscapes = map[string]string{
	`\\`: `\`, `\'`: `'`, `\"`: `"`, `\a`: "\a", `\b`: "\b",
	`\f`: "\f", `\n`: "\n", `\r`: "\r", `\t`: "\t", `\v`: "\v",
}

// envBinding is one span of a dotenv file. The spans of a file are
// contiguous and cover all of it.
type envBinding struct {
	start, end int // the span, its line ending included
	lineStart  int // start of the line the key is on
	keyEnd     int // just after the key
	key        string
	value      string
	hasValue   bool // KEY=... rather than a bare KEY
	eol        string
}

// parseDotenv splits content into bindings (key is empty for blank lines,
// comments and lines python-dotenv cannot read).
func parseDotenv(s string) []envBinding {
	var out []envBinding
	pos := 0
	read := func(re *regexp.Regexp) ([]int, bool) {
		m := re.FindStringSubmatchIndex(s[pos:])
		if m == nil {
			return nil, false
		}
		for i := range m {
			if m[i] >= 0 {
				m[i] += pos
			}
		}
		pos = m[1]
		return m, true
	}
	for pos < len(s) {
		b := envBinding{start: pos}
		ok := func() bool {
			read(dotenvMultilineSpace)
			if pos == len(s) {
				return true
			}
			b.lineStart = strings.LastIndexAny(s[:pos], "\r\n") + 1
			if b.lineStart < b.start {
				b.lineStart = b.start
			}
			read(dotenvExport)
			switch s[pos] {
			case '#':
			case '\'':
				m, ok := read(dotenvQuotedKey)
				if !ok {
					return false
				}
				b.key, b.keyEnd = s[m[2]:m[3]], pos
			default:
				m, ok := read(dotenvKey)
				if !ok {
					return false
				}
				b.key, b.keyEnd = s[m[2]:m[3]], pos
			}
			read(dotenvSpace)
			if pos < len(s) && s[pos] == '=' {
				read(dotenvEquals)
				b.hasValue = true
				switch {
				case pos == len(s) || s[pos] == '\n' || s[pos] == '\r':
				case s[pos] == '\'':
					m, ok := read(dotenvSingleQuoted)
					if !ok {
						return false
					}
					b.value = unescapeDotenv(dotenvSingleEscapes, s[m[2]:m[3]])
				case s[pos] == '"':
					m, ok := read(dotenvDoubleQuoted)
					if !ok {
						return false
					}
					b.value = unescapeDotenv(dotenvDoubleEscapes, s[m[2]:m[3]])
				default:
					m, _ := read(dotenvUnquoted)
					v := dotenvInlineComment.ReplaceAllString(s[m[0]:m[1]], "")
					b.value = strings.TrimRight(v, " \t\n\r\f\v")
				}
			}
			read(dotenvComment)
			m, ok := read(dotenvEndOfLine)
			if !ok {
				return false
			}
			b.eol = strings.TrimLeft(s[m[0]:m[1]], " \t\f\v")
			return true
		}()
		if !ok {
			read(dotenvRestOfLine)
			b = envBinding{start: b.start}
		}
		b.end = pos
		out = append(out, b)
	}
	return out
}

func unescapeDotenv(re *regexp.Regexp, s string) string {
	return re.ReplaceAllStringFunc(s, func(e string) string { return dotenvEscapes[e] })
}

// envValue is a key's value as the app reads it; set is false for a bare
// KEY line, which python-dotenv reads as no value.
type envValue struct {
	value string
	set   bool
}

// dotenvValues is what the bindings define, the last one of a key winning.
func dotenvValues(bs []envBinding) map[string]envValue {
	out := map[string]envValue{}
	for _, b := range bs {
		if b.key != "" {
			out[b.key] = envValue{b.value, b.hasValue}
		}
	}
	return out
}

// editDotenv rewrites the lines of the keys in set whose value differs,
// removes the lines of the keys in unset and appends the keys of set that
// were not there, in name order. Everything else is kept byte for byte.
func editDotenv(s string, set map[string]string, unset []string) string {
	bs := parseDotenv(s)
	var b strings.Builder
	seen := map[string]bool{}
	eol := "\n"
	for _, x := range bs {
		if x.eol != "" {
			eol = x.eol
			break
		}
	}
	for _, x := range bs {
		v, setting := set[x.key]
		switch {
		case x.key == "":
			b.WriteString(s[x.start:x.end])
		case slices.Contains(unset, x.key):
			b.WriteString(s[x.start:x.lineStart])
		case setting:
			seen[x.key] = true
			if x.hasValue && x.value == v {
				b.WriteString(s[x.start:x.end])
				break
			}
			b.WriteString(s[x.start:x.keyEnd])
			b.WriteString("=" + quoteDotenv(v) + x.eol)
		default:
			b.WriteString(s[x.start:x.end])
		}
	}
	var add []string
	for k := range set {
		if !seen[k] {
			add = append(add, k)
		}
	}
	sort.Strings(add)
	for _, k := range add {
		if out := b.String(); out != "" && !strings.HasSuffix(out, "\n") && !strings.HasSuffix(out, "\r") {
			b.WriteString(eol)
		}
		b.WriteString(k + "=" + quoteDotenv(set[k]) + eol)
	}
	return b.String()
}

// quoteDotenv writes a value so that python-dotenv and django-environ read
// it back: bare when it is made of safe characters only, otherwise in double
// quotes with backslash, double quote, newline and carriage return escaped.
func quoteDotenv(v string) string {
	bare := v != ""
	for i := 0; i < len(v) && bare; i++ {
		c := v[i]
		bare = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-./:@%+,=", c) >= 0
	}
	if bare {
		return v
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
