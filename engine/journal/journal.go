// Package journal writes and reads run journals: append-only JSON Lines files,
// one per run, that record what a run did.
//
// Every line is a JSON object whose first two keys are "seq", the 1-based
// record number, and "prev", the hex SHA-256 of the previous line as written
// (without its newline; "" for the first line). The chain makes edits and
// removals detectable by [Verify], except for the removal of records from
// the end of the file, which a hash chain alone cannot reveal.
//
// Each record is written with a single write(2) on a file opened with
// O_APPEND, so a crash can leave at most one partial ("torn") last line,
// which [Read] and [Verify] report separately and never mistake for a record.
//
// With a key ([Writer.SetKey]), every line also ends with a "mac" field: the
// hex HMAC-SHA256, under that key, of the line up to that field. The chain
// shows edits to any line but the last; the MACs show edits to any line,
// the last included, by someone who does not hold the key. [VerifyKey]
// checks both.
package journal

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Ext is the file name extension of journal files.
const Ext = ".jsonl"

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("journal is closed")

// maxRetained is the largest line buffer a Writer keeps between appends.
const maxRetained = 64 << 10

// Writer appends records to one run's journal file <dir>/<runID>.jsonl.
// Safe for concurrent use.
type Writer struct {
	path string
	mask func([]byte) []byte

	mu   sync.Mutex
	f    *os.File  // nil after Close
	seq  int       // seq of the last record written
	prev string    // hex SHA-256 of the last line written
	size int64     // bytes of complete lines in the file
	buf  []byte    // reusable line buffer
	err  error     // first write or sync failure; sticky
	mac  hash.Hash // HMAC-SHA256 under the key; nil: no "mac" fields
}

// SetKey makes every line appended from now on carry a "mac" field, the
// HMAC-SHA256 under key of the line up to that field. Set it before the
// first record, so that [VerifyKey] can require a MAC on every line.
func (w *Writer) SetKey(key []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mac = hmac.New(sha256.New, slices.Clone(key))
}

// Create makes dir (mode 0700, with parents) if needed and creates the
// journal file for runID in it with mode 0600. It fails if the file already
// exists: a journal is never appended to by two runs.
//
// mask, which may be nil, is applied to every record before it is written;
// see [Writer.Append].
func Create(dir, runID string, mask func([]byte) []byte) (*Writer, error) {
	if err := checkRunID(runID); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create journal: %w", err)
	}
	path := filepath.Join(dir, runID+Ext)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create journal: %w", err)
	}
	syncDir(dir)
	return &Writer{path: path, mask: mask, f: f}, nil
}

// checkRunID rejects ids that are not a plain file name stem.
func checkRunID(id string) error {
	if id == "" || id[0] == '.' || strings.ContainsAny(id, `/\`+"\x00") {
		return fmt.Errorf("invalid run id %q", id)
	}
	return nil
}

// syncDir makes a new directory entry in dir durable. It is best effort:
// some file systems cannot sync a directory.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

// Path returns the journal file's path.
func (w *Writer) Path() string {
	return w.path
}

// Append writes rec as the next line of the journal.
//
// rec must marshal to a JSON object without top-level "seq" or "prev" keys.
// The line written is that object with "seq" and "prev" inserted first:
//
//	{"seq":3,"prev":"ab12…",<the rest of the marshaled object>}
//
// If the Writer has a mask, it is applied to the marshaled record. Should
// the masked bytes no longer be a single-line JSON object (a mask can cut
// through JSON syntax), the record is instead decoded, every string in it,
// keys included, is masked on its own, and the result is encoded again.
// The "seq" and "prev" keys are never masked.
//
// The line is written with a single write(2). With sync set, Append also
// syncs the file to stable storage before returning: use it for intent
// records, which must be durable before the step they announce takes
// effect.
//
// A failed write is removed from the file if possible. After a write or
// sync failure, Append returns that error without writing anything.
func (w *Writer) Append(rec any, sync bool) error {
	body, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("journal record: %w", err)
	}
	if len(body) < 2 || body[0] != '{' {
		return fmt.Errorf("journal record must be a JSON object, not %.40s", body)
	}
	if err := checkReserved(body); err != nil {
		return err
	}
	if w.mask != nil {
		if body, err = applyMask(body, w.mask); err != nil {
			return err
		}
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return ErrClosed
	}
	if w.err != nil {
		return w.err
	}

	line := append(w.buf[:0], `{"seq":`...)
	line = strconv.AppendInt(line, int64(w.seq+1), 10)
	line = append(line, `,"prev":"`...)
	line = append(line, w.prev...)
	line = append(line, '"')
	if len(body) > 2 {
		line = append(line, ',')
	}
	line = append(line, body[1:]...)
	if w.mac != nil {
		line = appendMAC(line, w.mac)
	}
	sum := sha256.Sum256(line)
	line = append(line, '\n')
	if cap(line) <= maxRetained {
		w.buf = line[:0]
	}

	n, err := w.f.Write(line)
	if err != nil {
		if n > 0 {
			// Leave no torn line behind a live writer.
			_ = w.f.Truncate(w.size)
		}
		w.err = fmt.Errorf("append to journal: %w", err)
		return w.err
	}
	w.size += int64(n)
	w.seq++
	w.prev = hex.EncodeToString(sum[:])
	if sync {
		if err := w.f.Sync(); err != nil {
			w.err = fmt.Errorf("sync journal: %w", err)
			return w.err
		}
	}
	return nil
}

// macField is the last field of a line written with a key.
const macField = `,"mac":"`

// appendMAC replaces line's closing brace with a "mac" field over the line
// up to it, and closes the object again.
func appendMAC(line []byte, m hash.Hash) []byte {
	m.Reset()
	m.Write(line[:len(line)-1])
	var sum [sha256.Size]byte
	line = append(line[:len(line)-1], macField...)
	line = hex.AppendEncode(line, m.Sum(sum[:0]))
	return append(line, '"', '}')
}

// checkReserved rejects an object with a top-level "seq", "prev" or "mac"
// key.
func checkReserved(body []byte) error {
	if !bytes.Contains(body, []byte(`"seq"`)) && !bytes.Contains(body, []byte(`"prev"`)) && !bytes.Contains(body, []byte(`"mac"`)) {
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return fmt.Errorf("journal record: %w", err)
	}
	for _, k := range []string{"seq", "prev", "mac"} {
		if _, ok := fields[k]; ok {
			return fmt.Errorf("journal record must not have a %q field", k)
		}
	}
	return nil
}

// applyMask masks a marshaled object, falling back to masking its strings
// one by one when masking the whole breaks it.
func applyMask(body []byte, mask func([]byte) []byte) ([]byte, error) {
	if m := mask(body); validObjectLine(m) {
		return m, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("journal record: %w", err)
	}
	out, err := json.Marshal(maskValue(v, mask))
	if err != nil {
		return nil, fmt.Errorf("journal record: %w", err)
	}
	// A masked string may still show a secret in its JSON-escaped form.
	if m := mask(out); validObjectLine(m) {
		return m, nil
	}
	return out, nil
}

// validObjectLine reports whether b is one JSON object on one line.
func validObjectLine(b []byte) bool {
	return len(b) >= 2 && b[0] == '{' && b[len(b)-1] == '}' &&
		bytes.IndexByte(b, '\n') < 0 && bytes.IndexByte(b, '\r') < 0 && json.Valid(b)
}

// maskValue returns a copy of a decoded JSON value with mask applied to
// every string and object key in it.
func maskValue(v any, mask func([]byte) []byte) any {
	switch x := v.(type) {
	case string:
		return string(mask([]byte(x)))
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[string(mask([]byte(k)))] = maskValue(e, mask)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = maskValue(e, mask)
		}
		return out
	}
	return v
}

// Head returns the hex sha256 of the last line written: the value the next
// record's prev will carry. Printed at the end of a run, it lets an operator
// prove later that nothing was edited or dropped at the end of the journal,
// which the chain alone cannot show.
func (w *Writer) Head() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.prev
}

// Close syncs the journal to stable storage and closes it. Closing a closed
// Writer does nothing.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	serr := w.f.Sync()
	cerr := w.f.Close()
	w.f = nil
	if serr != nil {
		return fmt.Errorf("close journal: %w", serr)
	}
	if cerr != nil {
		return fmt.Errorf("close journal: %w", cerr)
	}
	return nil
}

// NewRunID returns a new run id for a run started at t. Ids sort by start
// time (to the millisecond, in UTC): the time in the layout
// "20060102T150405000Z", a hyphen, and six random hex digits, for example
// "20261124T015400123Z-3f9a0c".
func NewRunID(t time.Time) string {
	stamp := strings.Replace(t.UTC().Format("20060102T150405.000Z"), ".", "", 1)
	var b [3]byte
	_, _ = rand.Read(b[:]) // never fails; crashes the program instead
	return stamp + "-" + hex.EncodeToString(b[:])
}

// DefaultDir returns the default journal directory: $CUTOVER_JOURNAL_DIR if
// set, else $XDG_STATE_HOME/cutover/journal if XDG_STATE_HOME is an absolute
// path, else $HOME/.local/state/cutover/journal. If no home directory is
// known either, it returns the relative path ".cutover/journal".
func DefaultDir() string {
	if d := os.Getenv("CUTOVER_JOURNAL_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "cutover", "journal")
	}
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		return filepath.Join(home, ".local", "state", "cutover", "journal")
	}
	return filepath.Join(".cutover", "journal")
}

// List returns the ids of the runs with a journal in dir (the files named
// *.jsonl), sorted ascending, which for ids from [NewRunID] is oldest first.
// A directory that does not exist holds no runs.
func List(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list journals: %w", err)
	}
	var ids []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, Ext) {
			continue
		}
		ids = append(ids, strings.TrimSuffix(name, Ext))
	}
	slices.Sort(ids)
	return ids, nil
}

// maxListed is how many candidates an ambiguity error names.
const maxListed = 10

// Resolve returns the path of a run's journal. arg may be the path of an
// existing file, a run id in dir, or a prefix of exactly one run id in dir.
func Resolve(dir, arg string) (string, error) {
	if arg == "" {
		return "", errors.New("no run id given")
	}
	if fi, err := os.Stat(arg); err == nil && fi.Mode().IsRegular() {
		return arg, nil
	}
	if strings.ContainsAny(arg, `/\`) {
		return "", fmt.Errorf("no journal file %s", arg)
	}
	id := strings.TrimSuffix(arg, Ext)
	exact := filepath.Join(dir, id+Ext)
	if fi, err := os.Stat(exact); err == nil && fi.Mode().IsRegular() {
		return exact, nil
	}
	ids, err := List(dir)
	if err != nil {
		return "", err
	}
	var matches []string
	for _, candidate := range ids {
		if strings.HasPrefix(candidate, id) {
			matches = append(matches, candidate)
		}
	}
	switch len(matches) {
	case 0:
		return "", fmt.Errorf("no run %s in %s", arg, dir)
	case 1:
		return filepath.Join(dir, matches[0]+Ext), nil
	}
	names := strings.Join(matches[:min(len(matches), maxListed)], ", ")
	if len(matches) > maxListed {
		names += fmt.Sprintf(" and %d more", len(matches)-maxListed)
	}
	return "", fmt.Errorf("run id prefix %s is ambiguous: %s", arg, names)
}

// Open reopens an existing journal to append to it, as a resumed run does.
// A torn last line, the remains of a write a crash interrupted, is cut off
// first (and returned, so the caller can journal that it was); the chain
// continues from the last complete line. The caller verifies the chain
// before trusting what it reads: Open only needs the last line.
func Open(path string, mask func([]byte) []byte) (*Writer, *Torn, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open journal: %w", err)
	}
	lines := splitLines(data)
	torn := tornLast(lines)
	if torn != nil {
		lines = lines[:len(lines)-1]
	}
	w := &Writer{path: path, mask: mask, size: int64(len(data))}
	if torn != nil {
		w.size -= int64(torn.Bytes)
	}
	if len(lines) > 0 {
		last := lines[len(lines)-1]
		rec, err := parseLine(last)
		if err != nil || rec.Seq < 1 {
			return nil, nil, fmt.Errorf("open journal: %s: line %d is not a record", path, last.num)
		}
		w.seq, w.prev = rec.Seq, hashLine(last.text)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open journal: %w", err)
	}
	if torn != nil {
		if err := f.Truncate(w.size); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("open journal: cut the torn last line: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("open journal: %w", err)
		}
	}
	w.f = f
	return w, torn, nil
}
