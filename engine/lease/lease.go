// Package lease keeps two runs of the same plan from overlapping: a lease is
// a file <dir>/.locks/<key>.lease in the journal directory, locked with
// flock(2) for as long as the run lasts, that names its holder and carries a
// heartbeat.
//
// The kernel lock makes the lease exclusive on one machine, and it dies with
// its process: a run that is killed leaves no lock behind, only a file that
// names it. The file's content is for people and for other machines. It says
// who holds the lease, and it protects a journal directory shared over NFS,
// where flock may not reach the other machines: a lease that names a holder
// on another host whose heartbeat is fresher than [Options.StaleAfter] is
// held even when flock succeeds. A lease whose holder is gone (its process no
// longer runs on this host, or its heartbeat is older than StaleAfter) is
// taken over, and [Lease.TookOver] says from whom.
//
// Lease files are never removed: removing a locked file races with a process
// that has already opened it, which would then lock a file that nobody else
// can find. A released lease is an empty file.
package lease

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pgcutover/cutover/engine/internal/proc"
)

// Defaults of [Options].
const (
	DefaultStaleAfter = 2 * time.Minute
	DefaultHeartbeat  = 15 * time.Second
)

// Ext is the file name extension of lease files.
const Ext = ".lease"

// Dir is the subdirectory of the journal directory that holds lease files.
const Dir = ".locks"

// Holder says who holds a lease: what the lease file records, and what a
// [HeldError] shows to the run that could not start.
type Holder struct {
	// RunID is the holding run's id.
	RunID string `json:"run_id"`
	// PID is the process id of the holder. Acquire sets it to this
	// process's when it is 0, which is how it should be left: liveness is
	// judged by it.
	PID int `json:"pid"`
	// Host is the holder's host name. Acquire sets it to os.Hostname when
	// it is empty.
	Host string `json:"host"`
	// Operator is who started the run, if known.
	Operator string `json:"operator,omitempty"`
	// Plan is the plan's name, if the lease is a plan's.
	Plan string `json:"plan,omitempty"`
	// Started is when the run started. Acquire sets it to now when it is
	// zero.
	Started time.Time `json:"started"`
}

// String describes the holder in one line, without the heartbeat: run id,
// pid, host, operator and start time.
func (h Holder) String() string {
	return "run " + orUnknown(h.RunID) + " (" + h.details(time.Now()) + ")"
}

// details is "pid P on host H, operator O, started T".
func (h Holder) details(now time.Time) string {
	parts := []string{fmt.Sprintf("pid %d on host %s", h.PID, orUnknown(h.Host))}
	if h.Operator != "" {
		parts = append(parts, "operator "+h.Operator)
	}
	if !h.Started.IsZero() {
		parts = append(parts, "started "+formatTime(h.Started, now))
	}
	return strings.Join(parts, ", ")
}

// Options tunes a lease. The zero value gives the defaults.
type Options struct {
	// StaleAfter is how old a heartbeat may be before another run may take
	// the lease over: DefaultStaleAfter if zero. It must be comfortably
	// longer than Heartbeat.
	StaleAfter time.Duration
	// Heartbeat is how often the holder rewrites its heartbeat:
	// DefaultHeartbeat if zero.
	Heartbeat time.Duration
}

func (o Options) withDefaults() Options {
	if o.StaleAfter <= 0 {
		o.StaleAfter = DefaultStaleAfter
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	return o
}

// record is the content of a lease file: one JSON object and a newline.
type record struct {
	Key string `json:"key"`
	Holder
	Heartbeat time.Time `json:"heartbeat"`
}

// Stale describes a lease that [Acquire] took over: who held it, how old its
// heartbeat was, and why it was judged stale.
type Stale struct {
	// Holder is the previous holder; zero if the file could not be read.
	Holder
	// Heartbeat is the previous holder's last heartbeat.
	Heartbeat time.Time
	// HeartbeatAge is how old that heartbeat was when it was taken over.
	HeartbeatAge time.Duration
	// Reason says why the lease was stale, for example "pid 4242 is not
	// running on db-admin-1".
	Reason string
}

// String is a line for the journal and the terminal, such as
//
//	took over a stale lease from run 20261124T101500000Z-ab12cd (pid 4242 on host db-admin-1, last heartbeat 5m ago): pid 4242 is not running on db-admin-1
func (s *Stale) String() string {
	if s.RunID == "" && s.PID == 0 {
		return "took over a stale lease: " + s.Reason
	}
	return fmt.Sprintf("took over a stale lease from run %s (pid %d on host %s, last heartbeat %s ago): %s",
		orUnknown(s.RunID), s.PID, orUnknown(s.Host), formatAge(s.HeartbeatAge), s.Reason)
}

// HeldError is returned by [Acquire] when another run holds the lease.
type HeldError struct {
	// Key is the lease's key, Path its file.
	Key, Path string
	// Holder is who holds it; zero if its file names nobody yet (the holder
	// is between locking and writing).
	Holder Holder
	// Heartbeat is the holder's last heartbeat, HeartbeatAge its age when
	// Acquire looked.
	Heartbeat    time.Time
	HeartbeatAge time.Duration
	// StaleAfter is the Options.StaleAfter of the failed Acquire.
	StaleAfter time.Duration
	// Locked reports whether the holder holds the file's kernel lock, as
	// opposed to a lease of another host known only by its heartbeat.
	Locked bool

	now time.Time
}

// Error names the holder and says what to do, for example
//
//	plan "hello" is locked by run 20261124T101500000Z-ab12cd (pid 4242 on host db-admin-1, operator alice, started 10:15:00Z, heartbeat 3s ago); wait for it to end, or stop pid 4242 on db-admin-1 if it is stuck
func (e *HeldError) Error() string {
	subject := fmt.Sprintf("lease %q", e.Key)
	if e.Holder.Plan != "" {
		subject = fmt.Sprintf("plan %q", e.Holder.Plan)
	}
	now := e.now
	if now.IsZero() {
		now = time.Now()
	}
	h := e.Holder
	if h.RunID == "" && h.PID == 0 {
		return fmt.Sprintf("%s is locked by another process that has not written its name yet (%s); try again in a moment", subject, e.Path)
	}
	who := fmt.Sprintf("%s is locked by run %s (%s, heartbeat %s ago)", subject, orUnknown(h.RunID), h.details(now), formatAge(e.HeartbeatAge))
	switch {
	case e.Locked && e.HeartbeatAge > e.StaleAfter:
		return fmt.Sprintf("%s; its heartbeat stopped %s ago but its process still holds the lock, so it may be stuck: stop pid %d on %s, or wait for it to end",
			who, formatAge(e.HeartbeatAge), h.PID, orUnknown(h.Host))
	case e.Locked:
		return fmt.Sprintf("%s; wait for it to end, or stop pid %d on %s if it is stuck", who, h.PID, orUnknown(h.Host))
	default:
		left := e.StaleAfter - e.HeartbeatAge
		if left < time.Second {
			left = time.Second
		}
		return fmt.Sprintf("%s; wait for it to end, or if it is dead, its lease goes stale in %s (%s after its last heartbeat)",
			who, formatAge(left), formatAge(e.StaleAfter))
	}
}

// Lease is a held lease. Release it when the run ends.
type Lease struct {
	// Key is the key it was acquired with, Path its file.
	Key, Path string
	// Holder is what the file says about this run.
	Holder Holder
	// TookOver is set when Acquire took the lease over from a stale holder,
	// which the caller should record (see [Stale.String]).
	TookOver *Stale

	opts Options
	stop chan struct{}
	done chan struct{}
	once sync.Once
	// relErr is Release's result.
	relErr error

	mu   sync.Mutex
	f    *os.File
	err  error // the last heartbeat failure, nil after a success
	lost error // set when another holder took the lease; sticky
}

// Acquire takes the lease named key in dir (the journal directory), creating
// dir/.locks/<key>.lease if needed (key is made a safe file name), and starts
// its heartbeat. holder describes this run; its zero PID, Host and Started
// are filled in.
//
// It returns a *[HeldError] if another run holds the lease: it holds the
// file's flock, or the file names a holder on another host whose heartbeat
// is fresher than opts.StaleAfter, or one on this host whose process is
// alive and whose heartbeat is fresh. A holder on this host whose process is
// not running (a zombie process counts as running), or whose heartbeat is
// older than StaleAfter, is stale: Acquire takes the lease over and says so
// in Lease.TookOver. Any other error is an I/O failure.
//
// Two processes on different hosts that find a lease free at the same moment
// over a file system that does not propagate flock can both take it; the
// heartbeat makes every other overlap detectable, not that one.
func Acquire(dir, key string, holder Holder, opts Options) (*Lease, error) {
	opts = opts.withDefaults()
	name, err := fileName(key)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	if holder.PID == 0 {
		holder.PID = os.Getpid()
	}
	if holder.Host == "" {
		holder.Host = host
	}
	if holder.Started.IsZero() {
		holder.Started = time.Now()
	}
	holder.Started = holder.Started.UTC()
	locks := filepath.Join(dir, Dir)
	if err := os.MkdirAll(locks, 0o700); err != nil {
		return nil, fmt.Errorf("lease %q: %w", key, err)
	}
	path := filepath.Join(locks, name)
	f, err := openLocked(key, path, opts)
	if err != nil {
		return nil, err
	}
	l := &Lease{Key: key, Path: path, Holder: holder, opts: opts, f: f,
		stop: make(chan struct{}), done: make(chan struct{})}
	fail := func(err error) (*Lease, error) {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
		return nil, err
	}

	now := time.Now()
	rec, err := readRecord(f)
	switch {
	case errors.Is(err, errUnreadable):
		l.TookOver = &Stale{Reason: fmt.Sprintf("its file %s held no readable lease (%v)", path, err)}
	case err != nil:
		return fail(fmt.Errorf("lease %q: reading %s: %w", key, path, err))
	case rec != nil:
		age := now.Sub(rec.Heartbeat)
		stale := &Stale{Holder: rec.Holder, Heartbeat: rec.Heartbeat, HeartbeatAge: age}
		switch {
		case rec.Host == host && rec.PID == os.Getpid():
			// This process holds the flock, so the pid in the file is an
			// earlier incarnation's (a container's pid 1, say).
			stale.Reason = fmt.Sprintf("pid %d on %s is this process, so that run is gone", rec.PID, host)
		case rec.Host == host && !proc.Alive(rec.PID):
			stale.Reason = fmt.Sprintf("pid %d is not running on %s", rec.PID, host)
		case age > opts.StaleAfter:
			stale.Reason = fmt.Sprintf("its last heartbeat is %s old, older than %s", formatAge(age), formatAge(opts.StaleAfter))
		default:
			return fail(&HeldError{Key: key, Path: path, Holder: rec.Holder, Heartbeat: rec.Heartbeat,
				HeartbeatAge: age, StaleAfter: opts.StaleAfter, now: now})
		}
		l.TookOver = stale
	}
	if err := l.write(now); err != nil {
		return fail(fmt.Errorf("lease %q: writing %s: %w", key, path, err))
	}
	go l.heartbeat()
	return l, nil
}

// openLocked opens path and takes its flock, or returns a *HeldError naming
// the process that has it.
func openLocked(key, path string, opts Options) (*os.File, error) {
	for attempt := 0; ; attempt++ {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lease %q: %w", key, err)
		}
		err = flock(f, syscall.LOCK_EX|syscall.LOCK_NB)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			now := time.Now()
			held := &HeldError{Key: key, Path: path, StaleAfter: opts.StaleAfter, Locked: true, now: now}
			// The holder may be between locking and writing, or writing.
			for i := 0; i < 10; i++ {
				rec, err := readRecord(f)
				if err == nil && rec != nil {
					held.Holder, held.Heartbeat, held.HeartbeatAge = rec.Holder, rec.Heartbeat, now.Sub(rec.Heartbeat)
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			_ = f.Close()
			return nil, held
		}
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("lease %q: locking %s: %w", key, path, err)
		}
		// Someone may have removed the file between our open and flock
		// (by hand: this package never does); a lock on an unlinked inode
		// excludes nobody.
		fi, err1 := f.Stat()
		pi, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(fi, pi) {
			return f, nil
		}
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
		if attempt >= 3 {
			return nil, fmt.Errorf("lease %q: %s keeps being replaced while it is locked", key, path)
		}
	}
}

// flock is syscall.Flock, retried when a signal interrupts it.
func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			return err
		}
	}
}

// errUnreadable marks a lease file whose content is not a lease record.
var errUnreadable = errors.New("not a lease record")

// maxRecord bounds how much of a lease file is read.
const maxRecord = 64 << 10

// readRecord reads the lease record in f: nil for an empty file (a released
// lease), an error wrapping errUnreadable for content that does not parse.
func readRecord(f *os.File) (*record, error) {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, maxRecord))
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, nil
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%w: %v", errUnreadable, err)
	}
	if rec.RunID == "" && rec.PID == 0 && rec.Host == "" {
		return nil, fmt.Errorf("%w: it names no holder", errUnreadable)
	}
	return &rec, nil
}

// write replaces the file's content with this lease's record, heartbeat now.
// It writes in place (a rename would put the lock on a file nobody opens),
// first over the old record and then cutting what is left, so a reader never
// sees an empty file, and syncs.
func (l *Lease) write(now time.Time) error {
	b, err := json.Marshal(record{Key: l.Key, Holder: l.Holder, Heartbeat: now.UTC()})
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if _, err := l.f.WriteAt(b, 0); err != nil {
		return err
	}
	if err := l.f.Truncate(int64(len(b))); err != nil {
		return err
	}
	return l.f.Sync()
}

// owns reports whether rec is this lease's record.
func (l *Lease) owns(rec *record) bool {
	return rec != nil && rec.RunID == l.Holder.RunID && rec.PID == l.Holder.PID && rec.Host == l.Holder.Host
}

func (l *Lease) heartbeat() {
	defer close(l.done)
	t := time.NewTicker(l.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		if !l.beat() {
			return
		}
	}
}

// beat rewrites the heartbeat, unless the file no longer names this lease's
// holder: then the lease is lost (another host took it over after our
// heartbeat went stale) and beat returns false.
func (l *Lease) beat() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec, err := readRecord(l.f)
	if err != nil && !errors.Is(err, errUnreadable) {
		l.err = fmt.Errorf("lease %q: reading %s: %w", l.Key, l.Path, err)
		return true
	}
	if !l.owns(rec) {
		if rec != nil {
			l.lost = fmt.Errorf("lease %q was taken over by %s: this run no longer holds it", l.Key, rec.Holder)
		} else {
			l.lost = fmt.Errorf("lease %q: its file %s no longer names this run: this run no longer holds it", l.Key, l.Path)
		}
		return false
	}
	if err := l.write(time.Now()); err != nil {
		l.err = fmt.Errorf("lease %q: writing the heartbeat to %s: %w", l.Key, l.Path, err)
	} else {
		l.err = nil
	}
	return true
}

// Err reports trouble with a held lease: that it was lost (the file now
// names another holder, which can only happen when another host judged it
// stale), or else the last heartbeat's failure to write, or nil. A lost
// lease stays lost; a write failure clears when a later heartbeat succeeds.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return l.lost
	}
	return l.err
}

// Lost reports whether another holder took the lease over (see Err). A nil
// Lease is never lost.
func (l *Lease) Lost() bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost != nil
}

// Release stops the heartbeat, empties the file (unless another holder has
// taken the lease over), and unlocks and closes it. The file stays. Release
// may be called more than once; later calls return the first one's result.
func (l *Lease) Release() error {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		l.mu.Lock()
		defer l.mu.Unlock()
		var errs []error
		if rec, err := readRecord(l.f); err == nil && (rec == nil || l.owns(rec)) {
			if err := l.f.Truncate(0); err != nil {
				errs = append(errs, err)
			} else if err := l.f.Sync(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := flock(l.f, syscall.LOCK_UN); err != nil {
			errs = append(errs, err)
		}
		if err := l.f.Close(); err != nil {
			errs = append(errs, err)
		}
		if err := errors.Join(errs...); err != nil {
			l.relErr = fmt.Errorf("lease %q: releasing %s: %w", l.Key, l.Path, err)
		}
	})
	return l.relErr
}

// maxStem bounds the part of a lease file name taken from the key.
const maxStem = 100

// fileName turns key into a lease file name: the key itself if it is made of
// letters, digits, '.', '_' and '-' (and does not start with '.'), else the
// key with every other character replaced by '_' and a short hash of the key
// appended, so that different keys never share a file.
func fileName(key string) (string, error) {
	if key == "" {
		return "", errors.New("lease: empty key")
	}
	var b strings.Builder
	changed := false
	for i, r := range key {
		ok := r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.' && i > 0)
		if !ok {
			r, changed = '_', true
		}
		b.WriteRune(r)
	}
	stem := b.String()
	if len(stem) > maxStem {
		stem, changed = stem[:maxStem], true
	}
	if changed {
		sum := sha256.Sum256([]byte(key))
		stem += "-" + hex.EncodeToString(sum[:4])
	}
	return stem + Ext, nil
}

// formatAge is a duration for people: "3s", "5m", "5m30s", "2h10m".
func formatAge(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		m, s := int(d/time.Minute), int((d%time.Minute)/time.Second)
		if s == 0 {
			return fmt.Sprintf("%dm", m)
		}
		return fmt.Sprintf("%dm%ds", m, s)
	default:
		h, m := int(d/time.Hour), int((d%time.Hour)/time.Minute)
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%dm", h, m)
	}
}

// formatTime is t in UTC: the time of day if it is the same UTC day as now,
// else date and time.
func formatTime(t, now time.Time) string {
	t, now = t.UTC(), now.UTC()
	if t.Format(time.DateOnly) == now.Format(time.DateOnly) {
		return t.Format("15:04:05Z")
	}
	return t.Format("2006-01-02 15:04:05Z")
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}
