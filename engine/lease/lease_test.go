package lease

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the other process of the multi-process tests:
// with childEnv set it runs one of the child modes below instead of the
// tests.
const childEnv = "CUTOVER_LEASE_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "hold":
		childHold()
	case "race":
		childRace()
	default:
		fmt.Fprintln(os.Stderr, "unknown child mode", os.Getenv(childEnv))
		os.Exit(2)
	}
}

// childHold acquires the lease, says so on stdout and sleeps until killed.
func childHold() {
	l, err := Acquire(os.Getenv("LEASE_DIR"), os.Getenv("LEASE_KEY"), Holder{RunID: "child-run", Plan: "hello"}, Options{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("acquired", l.Holder.PID)
	time.Sleep(time.Hour)
	os.Exit(1)
}

// childRace waits for a byte on stdin, tries once to acquire the lease and
// says "won" or "held", then holds what it won until stdin closes.
func childRace() {
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadByte(); err != nil {
		os.Exit(1)
	}
	l, err := Acquire(os.Getenv("LEASE_DIR"), os.Getenv("LEASE_KEY"), Holder{RunID: "race-" + strconv.Itoa(os.Getpid())}, Options{})
	var held *HeldError
	switch {
	case err == nil:
		fmt.Println("won")
	case errors.As(err, &held):
		fmt.Println("held")
	default:
		fmt.Println("error:", err)
	}
	_, _ = io.Copy(io.Discard, in)
	if l != nil {
		_ = l.Release()
	}
	os.Exit(0)
}

// child starts the test binary in a child mode with stdin and stdout pipes.
func child(t *testing.T, mode, dir, key string) (*exec.Cmd, io.WriteCloser, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, "LEASE_DIR="+dir, "LEASE_KEY="+key)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, stdin, bufio.NewReader(stdout)
}

func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading a child's output: %v (got %q)", err, line)
	}
	return strings.TrimSpace(line)
}

func mustAcquire(t *testing.T, dir, key string, h Holder, opts Options) *Lease {
	t.Helper()
	l, err := Acquire(dir, key, h, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Release() })
	return l
}

func readFile(t *testing.T, path string) *record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("lease file %q: %v", b, err)
	}
	return &rec
}

func writeFile(t *testing.T, dir, key string, rec record) string {
	t.Helper()
	name, err := fileName(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, Dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rec)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func hostname(t *testing.T) string {
	t.Helper()
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestLeaseAcquireReleaseReacquire(t *testing.T) {
	dir := t.TempDir()
	started := time.Date(2026, 11, 24, 10, 15, 0, 0, time.UTC)
	l, err := Acquire(dir, "hello", Holder{RunID: "run-1", Operator: "alice", Plan: "hello", Started: started}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if l.TookOver != nil {
		t.Errorf("TookOver = %+v on a fresh lease", l.TookOver)
	}
	if want := filepath.Join(dir, ".locks", "hello.lease"); l.Path != want {
		t.Errorf("Path = %s, want %s", l.Path, want)
	}
	rec := readFile(t, l.Path)
	if rec == nil || rec.RunID != "run-1" || rec.PID != os.Getpid() || rec.Host != hostname(t) ||
		rec.Operator != "alice" || rec.Plan != "hello" || !rec.Started.Equal(started) || rec.Key != "hello" {
		t.Fatalf("lease file = %+v", rec)
	}
	if age := time.Since(rec.Heartbeat); age < 0 || age > time.Minute {
		t.Errorf("heartbeat %v is not now", rec.Heartbeat)
	}
	fi, err := os.Stat(l.Path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("lease file mode %v (%v), want 0600", fi.Mode(), err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Errorf("a second Release: %v", err)
	}
	if b, err := os.ReadFile(l.Path); err != nil || len(b) != 0 {
		t.Errorf("released lease file: %q, %v; want it empty and present", b, err)
	}
	if l.Err() != nil {
		t.Errorf("Err = %v", l.Err())
	}

	l2 := mustAcquire(t, dir, "hello", Holder{RunID: "run-2"}, Options{})
	if l2.TookOver != nil {
		t.Errorf("TookOver = %+v after a clean release", l2.TookOver)
	}
	if rec := readFile(t, l2.Path); rec == nil || rec.RunID != "run-2" {
		t.Errorf("lease file = %+v", rec)
	}
}

func TestLeaseSecondAcquireInProcessIsHeld(t *testing.T) {
	dir := t.TempDir()
	first := mustAcquire(t, dir, "hello", Holder{RunID: "20261124T101500000Z-ab12cd", Operator: "alice", Plan: "hello"}, Options{})
	_, err := Acquire(dir, "hello", Holder{RunID: "run-2"}, Options{})
	var held *HeldError
	if !errors.As(err, &held) {
		t.Fatalf("err = %v, want a HeldError", err)
	}
	if !held.Locked || held.Holder.RunID != first.Holder.RunID || held.Holder.PID != os.Getpid() || held.Path != first.Path {
		t.Errorf("HeldError = %+v", held)
	}
	msg := err.Error()
	for _, want := range []string{`plan "hello" is locked by run 20261124T101500000Z-ab12cd`,
		fmt.Sprintf("pid %d on host %s", os.Getpid(), hostname(t)), "operator alice", "s ago); wait for it to end"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	t.Log(msg)
	// The failed attempt did not disturb the holder's record.
	if rec := readFile(t, first.Path); rec == nil || rec.RunID != first.Holder.RunID {
		t.Errorf("lease file after a failed Acquire = %+v", rec)
	}
	// Another key is another lease.
	mustAcquire(t, dir, "other", Holder{RunID: "run-3"}, Options{})
}

func TestLeaseKilledHolderIsTakenOver(t *testing.T) {
	dir := t.TempDir()
	cmd, _, out := child(t, "hold", dir, "hello")
	line := readLine(t, out)
	pid := cmd.Process.Pid
	if line != "acquired "+strconv.Itoa(pid) {
		t.Fatalf("child said %q", line)
	}

	_, err := Acquire(dir, "hello", Holder{RunID: "run-2"}, Options{})
	var held *HeldError
	if !errors.As(err, &held) || held.Holder.PID != pid || held.Holder.RunID != "child-run" || !held.Locked {
		t.Fatalf("while the child holds it: err = %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // reaped: its pid is gone

	l := mustAcquire(t, dir, "hello", Holder{RunID: "run-2"}, Options{})
	s := l.TookOver
	if s == nil || s.PID != pid || s.RunID != "child-run" || s.Host != hostname(t) || s.Plan != "hello" {
		t.Fatalf("TookOver = %+v, want the killed child's (pid %d)", s, pid)
	}
	if s.HeartbeatAge < 0 || s.HeartbeatAge > time.Minute || s.Heartbeat.IsZero() {
		t.Errorf("heartbeat %v, age %v", s.Heartbeat, s.HeartbeatAge)
	}
	want := fmt.Sprintf("took over a stale lease from run child-run (pid %d on host %s, last heartbeat ", pid, hostname(t))
	if msg := s.String(); !strings.HasPrefix(msg, want) || !strings.Contains(msg, fmt.Sprintf("pid %d is not running", pid)) {
		t.Errorf("String() = %q", msg)
	} else {
		t.Log(msg)
	}
	if rec := readFile(t, l.Path); rec == nil || rec.RunID != "run-2" {
		t.Errorf("lease file = %+v", rec)
	}
}

func TestLeaseOtherHost(t *testing.T) {
	other := Holder{RunID: "20261124T101500000Z-ab12cd", PID: 4242, Host: "db-admin-1.invalid", Operator: "alice", Plan: "hello",
		Started: time.Now().Add(-time.Minute).UTC()}

	t.Run("fresh heartbeat is held", func(t *testing.T) {
		dir := t.TempDir()
		path := writeFile(t, dir, "hello", record{Key: "hello", Holder: other, Heartbeat: time.Now().Add(-3 * time.Second)})
		_, err := Acquire(dir, "hello", Holder{RunID: "run-2"}, Options{})
		var held *HeldError
		if !errors.As(err, &held) || held.Locked || held.Holder != other || held.StaleAfter != DefaultStaleAfter {
			t.Fatalf("err = %#v", err)
		}
		msg := err.Error()
		re := regexp.MustCompile(`^plan "hello" is locked by run 20261124T101500000Z-ab12cd \(pid 4242 on host db-admin-1\.invalid, operator alice, started \d\d:\d\d:\d\dZ, heartbeat \d+s ago\); wait for it to end, or if it is dead, its lease goes stale in 1m\d+s \(2m after its last heartbeat\)$`)
		if !re.MatchString(msg) {
			t.Errorf("error %q does not match %s", msg, re)
		}
		t.Log(msg)
		if rec := readFile(t, path); rec == nil || rec.Holder != other {
			t.Errorf("the other host's record was changed: %+v", rec)
		}
	})

	t.Run("stale heartbeat is taken over", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "hello", record{Key: "hello", Holder: other, Heartbeat: time.Now().Add(-5 * time.Minute)})
		l := mustAcquire(t, dir, "hello", Holder{RunID: "run-2"}, Options{})
		s := l.TookOver
		if s == nil || s.Holder != other || s.HeartbeatAge < 5*time.Minute || s.HeartbeatAge > 6*time.Minute {
			t.Fatalf("TookOver = %+v", s)
		}
		re := regexp.MustCompile(`^took over a stale lease from run 20261124T101500000Z-ab12cd \(pid 4242 on host db-admin-1\.invalid, last heartbeat 5m(\d+s)? ago\): its last heartbeat is 5m(\d+s)? old, older than 2m$`)
		if !re.MatchString(s.String()) {
			t.Errorf("String() = %q, does not match %s", s, re)
		}
	})

	t.Run("StaleAfter is an option", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "hello", record{Key: "hello", Holder: other, Heartbeat: time.Now().Add(-5 * time.Minute)})
		_, err := Acquire(dir, "hello", Holder{RunID: "run-2"}, Options{StaleAfter: 10 * time.Minute})
		var held *HeldError
		if !errors.As(err, &held) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestLeaseSameHost(t *testing.T) {
	host := hostname(t)

	t.Run("a live process with a fresh heartbeat is held", func(t *testing.T) {
		dir := t.TempDir()
		// The parent process is alive, but holds no flock: as if the
		// directory were shared with a machine of the same name.
		writeFile(t, dir, "k", record{Key: "k", Holder: Holder{RunID: "r", PID: os.Getppid(), Host: host}, Heartbeat: time.Now()})
		_, err := Acquire(dir, "k", Holder{RunID: "run-2"}, Options{})
		var held *HeldError
		if !errors.As(err, &held) || held.Holder.PID != os.Getppid() {
			t.Fatalf("err = %v", err)
		}
		if msg := err.Error(); !strings.HasPrefix(msg, `lease "k" is locked by run r (pid `) {
			t.Errorf("error = %q", msg)
		}
	})

	t.Run("a live process with a stale heartbeat is taken over", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "k", record{Key: "k", Holder: Holder{RunID: "r", PID: os.Getppid(), Host: host}, Heartbeat: time.Now().Add(-time.Hour)})
		l := mustAcquire(t, dir, "k", Holder{RunID: "run-2"}, Options{})
		if l.TookOver == nil || l.TookOver.PID != os.Getppid() || !strings.Contains(l.TookOver.Reason, "last heartbeat is 1h") {
			t.Fatalf("TookOver = %+v", l.TookOver)
		}
	})

	t.Run("this process's own pid is an earlier incarnation", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "k", record{Key: "k", Holder: Holder{RunID: "r", PID: os.Getpid(), Host: host}, Heartbeat: time.Now()})
		l := mustAcquire(t, dir, "k", Holder{RunID: "run-2"}, Options{})
		if l.TookOver == nil || l.TookOver.RunID != "r" || !strings.Contains(l.TookOver.Reason, "is this process") {
			t.Fatalf("TookOver = %+v", l.TookOver)
		}
	})

	t.Run("unreadable content is taken over", func(t *testing.T) {
		dir := t.TempDir()
		path := writeFile(t, dir, "k", record{})
		if err := os.WriteFile(path, []byte("{torn"), 0o600); err != nil {
			t.Fatal(err)
		}
		l := mustAcquire(t, dir, "k", Holder{RunID: "run-2"}, Options{})
		if l.TookOver == nil || !strings.Contains(l.TookOver.String(), "held no readable lease") {
			t.Fatalf("TookOver = %+v", l.TookOver)
		}
	})
}

func TestLeaseHeartbeatAdvances(t *testing.T) {
	dir := t.TempDir()
	l := mustAcquire(t, dir, "hello", Holder{RunID: "run-1"}, Options{Heartbeat: 10 * time.Millisecond})
	first := readFile(t, l.Path).Heartbeat
	deadline := time.Now().Add(20 * time.Second)
	for {
		// A reader may catch a heartbeat half written; the lease's own
		// readers retry, and so does this one.
		b, _ := os.ReadFile(l.Path)
		var rec record
		if json.Unmarshal(b, &rec) == nil && rec.Heartbeat.After(first) {
			if rec.RunID != "run-1" {
				t.Fatalf("record after a heartbeat = %+v", rec)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("heartbeat still %v", first)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	// Released: no heartbeat writes the file again.
	time.Sleep(50 * time.Millisecond)
	if b, _ := os.ReadFile(l.Path); len(b) != 0 {
		t.Errorf("file after Release = %q", b)
	}
}

func TestLeaseLostToAnotherHost(t *testing.T) {
	dir := t.TempDir()
	l := mustAcquire(t, dir, "hello", Holder{RunID: "run-1"}, Options{Heartbeat: 10 * time.Millisecond})
	thief := Holder{RunID: "run-x", PID: 7, Host: "elsewhere.invalid"}
	writeFile(t, dir, "hello", record{Key: "hello", Holder: thief, Heartbeat: time.Now()})
	deadline := time.Now().Add(20 * time.Second)
	for l.Err() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the heartbeat did not notice that the file names another holder")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if msg := l.Err().Error(); !strings.Contains(msg, "taken over by run run-x (pid 7 on host elsewhere.invalid") {
		t.Errorf("Err = %q", msg)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if rec := readFile(t, l.Path); rec == nil || rec.Holder != thief {
		t.Errorf("Release cleared the new holder's record: %+v", rec)
	}
}

func TestLeaseConcurrentGoroutines(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		mu      sync.Mutex
		winners []*Lease
		helds   int
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			l, err := Acquire(dir, "hello", Holder{RunID: fmt.Sprintf("run-%d", i)}, Options{})
			mu.Lock()
			defer mu.Unlock()
			var held *HeldError
			switch {
			case err == nil:
				winners = append(winners, l)
			case errors.As(err, &held):
				helds++
			default:
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(winners) != 1 || helds != n-1 {
		t.Fatalf("%d winners, %d held, want 1 and %d", len(winners), helds, n-1)
	}
	if err := winners[0].Release(); err != nil {
		t.Fatal(err)
	}
}

func TestLeaseConcurrentProcesses(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	stdins := make([]io.WriteCloser, n)
	outs := make([]*bufio.Reader, n)
	for i := range n {
		_, stdins[i], outs[i] = child(t, "race", dir, "hello")
	}
	for _, w := range stdins {
		if _, err := w.Write([]byte{'\n'}); err != nil {
			t.Fatal(err)
		}
	}
	results := map[string]int{}
	for _, r := range outs {
		results[readLine(t, r)]++
	}
	for _, w := range stdins {
		_ = w.Close()
	}
	if results["won"] != 1 || results["held"] != n-1 {
		t.Fatalf("results %v, want 1 won and %d held", results, n-1)
	}
}

func TestLeaseFileName(t *testing.T) {
	for key, want := range map[string]string{
		"hello":       "hello.lease",
		"plan-1.v2_x": "plan-1.v2_x.lease",
	} {
		if got, err := fileName(key); err != nil || got != want {
			t.Errorf("fileName(%q) = %q, %v; want %q", key, got, err, want)
		}
	}
	a, _ := fileName("a/b")
	b, _ := fileName("a_b")
	c, _ := fileName("../etc")
	if a == b || strings.ContainsAny(a+c, "/") || strings.HasPrefix(c, ".") || !strings.HasPrefix(a, "a_b-") {
		t.Errorf("unsafe keys: %q %q %q", a, b, c)
	}
	long, _ := fileName(strings.Repeat("x", 300))
	if len(long) > maxStem+20 {
		t.Errorf("long key gives %d-byte name", len(long))
	}
	if _, err := fileName(""); err == nil {
		t.Error("an empty key is accepted")
	}
}

func TestLeaseHeldErrorWording(t *testing.T) {
	now := time.Date(2026, 11, 24, 10, 20, 0, 0, time.UTC)
	h := Holder{RunID: "20261124T101500000Z-ab12cd", PID: 4242, Host: "db-admin-1", Operator: "alice", Plan: "x",
		Started: time.Date(2026, 11, 24, 10, 15, 0, 0, time.UTC)}
	for _, tc := range []struct {
		err  HeldError
		want string
	}{
		{HeldError{Key: "x", Holder: h, HeartbeatAge: 3 * time.Second, StaleAfter: 2 * time.Minute, Locked: true, now: now},
			`plan "x" is locked by run 20261124T101500000Z-ab12cd (pid 4242 on host db-admin-1, operator alice, started 10:15:00Z, heartbeat 3s ago); wait for it to end, or stop pid 4242 on db-admin-1 if it is stuck`},
		{HeldError{Key: "x", Holder: h, HeartbeatAge: 5 * time.Minute, StaleAfter: 2 * time.Minute, Locked: true, now: now},
			`plan "x" is locked by run 20261124T101500000Z-ab12cd (pid 4242 on host db-admin-1, operator alice, started 10:15:00Z, heartbeat 5m ago); its heartbeat stopped 5m ago but its process still holds the lock, so it may be stuck: stop pid 4242 on db-admin-1, or wait for it to end`},
		{HeldError{Key: "x", Holder: h, HeartbeatAge: 30 * time.Second, StaleAfter: 2 * time.Minute, now: now.Add(24 * time.Hour)},
			`plan "x" is locked by run 20261124T101500000Z-ab12cd (pid 4242 on host db-admin-1, operator alice, started 2026-11-24 10:15:00Z, heartbeat 30s ago); wait for it to end, or if it is dead, its lease goes stale in 1m30s (2m after its last heartbeat)`},
		{HeldError{Key: "x", Path: "/j/locks/x.lease", StaleAfter: 2 * time.Minute, Locked: true, now: now},
			`lease "x" is locked by another process that has not written its name yet (/j/locks/x.lease); try again in a moment`},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("got\n%s\nwant\n%s", got, tc.want)
		}
	}
}
