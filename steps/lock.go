package steps

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// AdvisoryLockClass is the first key of the session advisory lock that
// [Targets.Lock] takes: "cutv" in ASCII. The second is [AdvisoryLockObject].
// In pg_locks the lock shows as locktype 'advisory', classid 1668641910,
// objid 0, objsubid 2.
const AdvisoryLockClass int32 = 0x63757476

// AdvisoryLockObject is the second key of cutover's advisory lock: 0, so
// that there is one lock per database.
const AdvisoryLockObject int32 = 0

// maxAppName is PostgreSQL's limit on application_name (NAMEDATALEN-1).
const maxAppName = 63

// relockWait bounds how long Conn waits, when it takes a target's lock again
// on a new connection, for the run's previous session to let go of it. A
// variable for tests.
var relockWait = 5 * time.Second

// targetLock is a target whose advisory lock this run holds.
type targetLock struct {
	appName string
	pid     int32 // pg_backend_pid() of the session holding it
}

// LockHeldError says that another session holds cutover's advisory lock on
// a target's database, and what can be seen of it. PostgreSQL shows a
// session's application_name, user and pid to everyone, but its client
// address and start only to its own role, superusers and pg_read_all_stats.
type LockHeldError struct {
	// Target is the target's name, Database its database.
	Target, Database string
	// PID is the holder's backend pid; 0 if it could not be identified
	// (it let go while we looked).
	PID int32
	// ApplicationName is the holder's application_name: for another
	// cutover run, the holder it passed to Lock.
	ApplicationName string
	// User is the holder's user name.
	User string
	// ClientAddr is the holder's client address; empty for a Unix socket
	// or when it is not visible.
	ClientAddr string
	// Since is when the holder's session started; zero when not visible.
	Since time.Time
	// Lost is set when this run held the lock, its connection was
	// reopened, and another session had taken the lock meanwhile.
	Lost bool
	// Previous is set when the holder is this run's own previous session
	// on the target, which the server has not ended yet.
	Previous bool
}

// Error names the target and the holder, for example
//
//	target new (database appdb) is locked by another cutover run "cutover run 20261124T101500000Z-ab12cd" (backend pid 4242, user app, from 10.0.0.5, connected since 2026-11-24 10:15:00Z); one mutating cutover run per database at a time: wait for it to end
func (e *LockHeldError) Error() string {
	where := fmt.Sprintf("target %s (database %s)", e.Target, e.Database)
	switch {
	case e.Previous:
		return fmt.Sprintf("%s is still locked by this run's previous session (%s), which the server has not ended yet: it may still be running a statement; if it stays, end it with SELECT pg_terminate_backend(%d)",
			where, e.details(), e.PID)
	case e.Lost:
		return fmt.Sprintf("%s: the run's connection was reopened, and its advisory lock had been taken meanwhile by %s; this run no longer has the database to itself: stop and find out what the other session did",
			where, e.holder())
	case e.PID == 0:
		return fmt.Sprintf("%s is locked by %s; try again", where, e.holder())
	case e.cutover():
		return fmt.Sprintf("%s is locked by %s; one mutating cutover run per database at a time: wait for it to end", where, e.holder())
	default:
		return fmt.Sprintf("%s is locked by %s, which holds cutover's advisory lock pg_advisory_lock(%d, %d); wait for it to let go, or end it",
			where, e.holder(), AdvisoryLockClass, AdvisoryLockObject)
	}
}

func (e *LockHeldError) cutover() bool { return strings.HasPrefix(e.ApplicationName, "cutover") }

// holder is "another cutover run "…" (details)" or what is known instead.
func (e *LockHeldError) holder() string {
	switch {
	case e.PID == 0:
		return "another session, which let go or could not be identified"
	case e.cutover():
		return fmt.Sprintf("another cutover run %q (%s)", e.ApplicationName, e.details())
	case e.ApplicationName == "":
		return fmt.Sprintf("a session with no application_name, not a cutover run (%s)", e.details())
	default:
		return fmt.Sprintf("a session that is not a cutover run, application_name %q (%s)", e.ApplicationName, e.details())
	}
}

// details is "backend pid P, user U, from A, connected since T", with what
// is known.
func (e *LockHeldError) details() string {
	parts := []string{fmt.Sprintf("backend pid %d", e.PID)}
	if e.User != "" {
		parts = append(parts, "user "+e.User)
	}
	switch {
	case e.ClientAddr != "":
		parts = append(parts, "from "+e.ClientAddr)
	case !e.Since.IsZero():
		parts = append(parts, "over a Unix socket")
	}
	if !e.Since.IsZero() {
		parts = append(parts, "connected since "+e.Since.UTC().Format("2006-01-02 15:04:05Z"))
	} else {
		parts = append(parts, "its address and start are not visible to this user")
	}
	return strings.Join(parts, ", ")
}

// Lock takes cutover's session-level advisory lock (AdvisoryLockClass,
// AdvisoryLockObject) on target name's database, on the run's shared
// connection (see Conn), so that one mutating cutover run at a time works on
// a database. First it sets the session's application_name to holder (made
// printable ASCII and cut to 63 bytes, as PostgreSQL would), which should
// name the run, such as "cutover run 20261124T101500000Z-ab12cd": another run
// that finds the lock taken reads it from pg_stat_activity, and a holder
// whose name starts with "cutover" is reported as a cutover run.
//
// If another session holds the lock, Lock returns a *[LockHeldError] naming
// it, unless that session is this run's own connection to another target of
// the same database (an admin role and the app's role): then the run
// already has the database to itself and Lock returns nil. Locking a target
// this run has locked already does nothing.
//
// The lock lives as long as the session: closing the connection releases it.
// When Conn has to open a new connection to a locked target (the old one
// broke), it takes the lock again before returning it, and fails with a
// LockHeldError (Lost set, Permanent) if another session took it meanwhile.
// Close releases the locks with the connections, but a Conn after Close
// takes them again; Unlock forgets a lock.
//
// Behind a transaction-mode pooler (PgBouncer's pool_mode=transaction) a
// session advisory lock is not reliable: it stays on whichever server
// connection ran the statement, which the pooler hands to other clients,
// while this run's later statements may run on other server connections.
// Targets that need the lock should reach the server directly or through a
// session-mode pool.
func (ts *Targets) Lock(ctx context.Context, name, holder string) error {
	t, err := ts.Get(name)
	if err != nil {
		return err
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	// For a locked target, conn returns the session that holds the lock,
	// or a new one on which it has taken it again.
	c, err := ts.conn(ctx, t)
	if err != nil || ts.locks[name] != nil {
		return err
	}
	lk := &targetLock{appName: appName(holder)}
	if err := takeLock(ctx, t, c, lk, 0); err != nil {
		var held *LockHeldError
		if errors.As(err, &held) && ts.ownSession(name, held.PID) {
			return nil
		}
		return err
	}
	if ts.locks == nil {
		ts.locks = map[string]*targetLock{}
	}
	ts.locks[name] = lk
	return nil
}

// Unlock releases the advisory lock that Lock took on target name, if this
// run holds it, and forgets it: a new connection will not take it again.
// The connection stays open.
func (ts *Targets) Unlock(ctx context.Context, name string) error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.locks[name] == nil {
		return nil
	}
	delete(ts.locks, name)
	c := ts.conns[name]
	if c == nil || c.IsClosed() {
		return nil // the lock went with its session
	}
	var ok bool
	if err := c.QueryRow(ctx, "SELECT pg_advisory_unlock($1::int4, $2::int4)", AdvisoryLockClass, AdvisoryLockObject).Scan(&ok); err != nil {
		return fmt.Errorf("target %s: releasing the advisory lock: %w", name, err)
	}
	if !ok {
		return fmt.Errorf("target %s: releasing the advisory lock: the session did not hold it", name)
	}
	return nil
}

// ownSession reports whether backend pid is this run's connection to a
// target other than name. ts.mu is held.
func (ts *Targets) ownSession(name string, pid int32) bool {
	for other, c := range ts.conns {
		if other != name && !c.IsClosed() && int32(c.PgConn().PID()) == pid {
			return true
		}
	}
	return false
}

// relock takes target t's advisory lock on c, a new connection, if this run
// holds it: the old connection, and the lock with it, is gone. ts.mu is
// held.
func (ts *Targets) relock(ctx context.Context, t *Target, c *pgx.Conn) error {
	lk := ts.locks[t.Name]
	if lk == nil {
		return nil
	}
	err := takeLock(ctx, t, c, lk, lk.pid)
	var held *LockHeldError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &held) && held.Previous:
		return err // may pass once the server ends the old session
	case errors.As(err, &held):
		held.Lost = true
		return Permanent(err)
	default:
		return fmt.Errorf("target %s: the connection was reopened, and taking its advisory lock again failed: %w", t.Name, err)
	}
}

// takeLock sets application_name on c and takes the advisory lock, or
// returns a *LockHeldError. previous is the backend pid of this run's
// earlier session that held the lock, or 0: if that session still holds it
// (the server has not yet ended it), takeLock waits up to relockWait.
func takeLock(ctx context.Context, t *Target, c *pgx.Conn, lk *targetLock, previous int32) error {
	if _, err := c.Exec(ctx, "SELECT set_config('application_name', $1, false)", lk.appName); err != nil {
		return fmt.Errorf("target %s: setting application_name: %w", t.Name, err)
	}
	var deadline time.Time
	for vanished := 0; ; {
		var ok bool
		var pid int32
		err := c.QueryRow(ctx, "SELECT pg_try_advisory_lock($1::int4, $2::int4), pg_backend_pid()",
			AdvisoryLockClass, AdvisoryLockObject).Scan(&ok, &pid)
		if err != nil {
			return fmt.Errorf("target %s: taking the advisory lock: %w", t.Name, err)
		}
		if ok {
			lk.pid = pid
			return nil
		}
		held, err := lockHolder(ctx, t, c)
		if err != nil {
			return err
		}
		switch {
		case held.PID == 0 && vanished < 3:
			vanished++ // it let go while we looked
			continue
		case previous != 0 && held.PID == previous && held.ApplicationName == lk.appName:
			held.Previous = true
			if deadline.IsZero() {
				deadline = time.Now().Add(relockWait)
			}
			if time.Now().Before(deadline) {
				select {
				case <-ctx.Done():
					return held
				case <-time.After(50 * time.Millisecond):
				}
				continue
			}
		}
		return held
	}
}

// lockHolder finds the session that holds cutover's advisory lock on c's
// database; PID is 0 if none does any more.
func lockHolder(ctx context.Context, t *Target, c *pgx.Conn) (*LockHeldError, error) {
	e := &LockHeldError{Target: t.Name, Database: t.DBName}
	var (
		app, user, addr *string
		since           *time.Time
	)
	err := c.QueryRow(ctx, `
		SELECT l.pid, a.application_name, a.usename::text, host(a.client_addr), a.backend_start
		FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.classid::int8 = $1::int8 AND l.objid::int8 = $2::int8 AND l.objsubid = 2
		  AND l.pid <> pg_backend_pid()
		LIMIT 1`, int64(AdvisoryLockClass), int64(AdvisoryLockObject)).Scan(&e.PID, &app, &user, &addr, &since)
	if errors.Is(err, pgx.ErrNoRows) {
		return e, nil
	}
	if err != nil {
		return nil, fmt.Errorf("target %s: finding who holds the advisory lock: %w", t.Name, err)
	}
	if app != nil {
		e.ApplicationName = *app
	}
	if user != nil {
		e.User = *user
	}
	if addr != nil {
		e.ClientAddr = *addr
	}
	if since != nil {
		e.Since = *since
	}
	return e, nil
}

// appName makes holder an application_name that PostgreSQL keeps as it is:
// printable ASCII (anything else becomes '?'), at most 63 bytes.
func appName(holder string) string {
	b := make([]byte, 0, len(holder))
	for _, r := range holder {
		if len(b) == maxAppName {
			break
		}
		if r < 0x20 || r > 0x7e {
			r = '?'
		}
		b = append(b, byte(r))
	}
	return string(b)
}

// closeConn closes c, waiting at most two seconds for the server.
func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}
