package steps

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgcutover/cutover/schema"
	"github.com/pgcutover/cutover/steps/pgtest"
)

// pidRewritingProxy forwards plaintext PostgreSQL connections to upstream
// and changes the process id in the server's BackendKeyData, as a pooler's
// own BackendKeyData differs from the pid of the server connection it
// lends. It returns the proxy's port on 127.0.0.1.
func pidRewritingProxy(t *testing.T, upstream string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer client.Close()
				server, err := net.Dial("tcp", upstream)
				if err != nil {
					return
				}
				defer server.Close()
				go func() {
					io.Copy(server, client)
					server.Close()
				}()
				rewriteBackendKeyData(client, server)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// rewriteBackendKeyData copies server messages to dst, flipping a high bit
// of the pid in BackendKeyData ('K').
func rewriteBackendKeyData(dst io.Writer, src io.Reader) {
	r := bufio.NewReader(src)
	header := make([]byte, 5)
	for {
		if _, err := io.ReadFull(r, header); err != nil {
			return
		}
		body := make([]byte, int(binary.BigEndian.Uint32(header[1:]))-4)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		if header[0] == 'K' && len(body) >= 4 {
			binary.BigEndian.PutUint32(body, binary.BigEndian.Uint32(body)^0x40000000)
		}
		if _, err := dst.Write(append(header, body...)); err != nil {
			return
		}
	}
}

// waitForClients waits until want client sessions (besides the one that
// counts them) are connected, so that in_use is exact: a closed
// connection's backend takes a moment to leave pg_stat_activity.
func waitForClients(t *testing.T, cl *pgtest.Cluster, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := cl.Connections(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d client sessions connected, want %d", n, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConnectionBudget(t *testing.T) {
	const canary = "Budget-Canary-pw/5+k"
	cl := pgtest.Start(t, pgtest.Options{
		TLS:       pgtest.TLSEnforced,
		Roles:     []pgtest.Role{{Name: "app", Password: canary}},
		Databases: map[string]string{"appdb": "app"},
		Settings:  map[string]string{"max_connections": "20"},
	})
	ctx := context.Background()
	ts := newTargets(t, map[string]string{"pw": canary}, &schema.Target{
		Name: "new", Host: cl.Host, Port: cl.Port, DBName: "appdb", User: "app", Password: "pw",
		SSLMode: "verify-full", SSLRootCert: cl.CAFile,
	})
	run := func(t *testing.T, with map[string]any) (Outputs, error, string) {
		t.Helper()
		with["target"] = "new"
		c, live := newCall(t, "connection-budget", with, ts)
		out, err := connectionBudget{}.Run(ctx, c)
		if (err != nil && strings.Contains(err.Error(), canary)) || strings.Contains(live.String(), canary) {
			t.Error("the password is in the message")
		}
		return out, err, live.String()
	}
	waitForClients(t, cl, 0)

	t.Run("enough headroom passes", func(t *testing.T) {
		out, err, live := run(t, map[string]any{"processes": 2, "threads": 2})
		if err != nil {
			t.Fatal(err)
		}
		wantOutputs(t, out, Outputs{
			"max_connections": int64(20), "reserved": int64(3), "in_use": int64(0), "capacity": int64(17),
			"demand": int64(8), "headroom": int64(9), "role_limit": int64(-1), "pooler": false, "notes": []string{},
		})
		if len(out) != 9 {
			t.Errorf("outputs %v, want the 9 declared", out)
		}
		want := "connection-budget new: capacity 17 (max_connections 20 − 3 reserved); 0 in use; demand 1 host × 2 processes × 2 threads = 4 + 1 cron + 1 migration job + 1 monitoring + 1 cutover = 8; headroom 9\n"
		if live != want {
			t.Errorf("live output:\n got %q\nwant %q", live, want)
		}
	})

	t.Run("demand over capacity fails with the arithmetic", func(t *testing.T) {
		out, err, _ := run(t, map[string]any{"web_hosts": 2, "processes": 2, "threads": 4, "workers": 2})
		wantError(t, err, "target new: demand 2 hosts × 2 processes × 4 threads = 16 + 2 workers + 1 cron + 1 migration job + 1 monitoring + 1 cutover = 22 > capacity 17 (max_connections 20 − 3 reserved): "+
			`the app would get "remaining connection slots are reserved" or "sorry, too many clients already" (SQLSTATE 53300); `+
			"lower processes or threads, put a pooler (PgBouncer in transaction mode) in front, or raise max_connections (on a managed service, a larger instance class)")
		if !IsPermanent(err) {
			t.Error("a budget that does not fit cannot pass on retry")
		}
		wantOutputs(t, out, Outputs{"capacity": int64(17), "demand": int64(22), "headroom": int64(-5)})
	})

	t.Run("provider reserve and headroom_min", func(t *testing.T) {
		out, err, _ := run(t, map[string]any{"processes": 3, "threads": 2, "cron": 0, "migration_jobs": 0, "monitoring": 0, "provider_reserved": 4, "headroom_min": 8})
		wantError(t, err, "target new: headroom 6 < headroom_min 8: capacity 13 (max_connections 20 − 3 reserved − 4 provider reserved) − 0 in use − demand 7 = 6, "+
			"where demand is 1 host × 3 processes × 2 threads = 6 + 1 cutover = 7; "+
			"lower processes or threads, put a pooler (PgBouncer in transaction mode) in front, or raise max_connections (on a managed service, a larger instance class)")
		wantOutputs(t, out, Outputs{"capacity": int64(13), "demand": int64(7), "headroom": int64(6)})
	})

	t.Run("sessions in use count against headroom", func(t *testing.T) {
		// Two sessions held open by another client of the same server.
		var held []*Targets
		for i := range 2 {
			h := newTargets(t, map[string]string{"pw": canary}, &schema.Target{
				Name: "held" + strconv.Itoa(i), Host: cl.Host, Port: cl.Port, DBName: "appdb", User: "app", Password: "pw",
				SSLMode: "verify-full", SSLRootCert: cl.CAFile,
			})
			if _, err := h.Conn(ctx, "held"+strconv.Itoa(i)); err != nil {
				t.Fatal(err)
			}
			held = append(held, h)
		}
		out, err, _ := run(t, map[string]any{"processes": 2, "threads": 2})
		if err != nil {
			t.Fatal(err)
		}
		wantOutputs(t, out, Outputs{"in_use": int64(2), "headroom": int64(7)})
		_, err, _ = run(t, map[string]any{"processes": 2, "threads": 2, "headroom_min": 8})
		wantError(t, err, "target new: headroom 7 < headroom_min 8: capacity 17 (max_connections 20 − 3 reserved) − 2 in use − demand 8 = 7, "+
			"where demand is 1 host × 2 processes × 2 threads = 4 + 1 cron + 1 migration job + 1 monitoring + 1 cutover = 8; "+
			"lower processes or threads, put a pooler (PgBouncer in transaction mode) in front, or raise max_connections (on a managed service, a larger instance class)")
		for _, h := range held {
			h.Close()
		}
	})

	t.Run("role and database connection limits", func(t *testing.T) {
		waitForClients(t, cl, 1) // the run's own connection
		if err := cl.Exec(ctx, "postgres", "ALTER ROLE app CONNECTION LIMIT 6; ALTER DATABASE appdb CONNECTION LIMIT 7"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cl.Exec(ctx, "postgres", "ALTER ROLE app CONNECTION LIMIT -1; ALTER DATABASE appdb CONNECTION LIMIT -1")
		})
		out, err, _ := run(t, map[string]any{"processes": 2, "threads": 2})
		wantError(t, err, `target new: (1) demand 8 > connection limit 6 of role app: connections beyond it fail with: too many connections for role "app" (SQLSTATE 53300); `+
			`raise it (ALTER ROLE "app" CONNECTION LIMIT 8) or lower the demand; `+
			`(2) demand 8 > connection limit 7 of database appdb: connections beyond it fail with: too many connections for database "appdb" (SQLSTATE 53300); `+
			`raise it (ALTER DATABASE "appdb" CONNECTION LIMIT 8) or lower the demand`)
		wantOutputs(t, out, Outputs{"role_limit": int64(6), "headroom": int64(9)})
	})

	t.Run("negative numbers are refused", func(t *testing.T) {
		_, err, _ := run(t, map[string]any{"threads": -1, "headroom_min": -2})
		wantError(t, err, "threads is -1, headroom_min is -2: the numbers of connection-budget cannot be negative")
	})
}

func TestConnectionBudgetBehindPooler(t *testing.T) {
	const canary = "Pooler-Canary-pw/8+m"
	cl := pgtest.Start(t, pgtest.Options{
		TLS:       pgtest.TLSOff,
		Roles:     []pgtest.Role{{Name: "app", Password: canary}},
		Databases: map[string]string{"appdb": "app"},
		Settings:  map[string]string{"max_connections": "20"},
	})
	port := pidRewritingProxy(t, fmt.Sprintf("%s:%d", cl.Host, cl.Port))
	ts := newTargets(t, map[string]string{"pw": canary}, &schema.Target{
		Name: "new", Host: "127.0.0.1", Port: port, DBName: "appdb", User: "app", Password: "pw", SSLMode: "disable",
	})
	waitForClients(t, cl, 0)
	c, live := newCall(t, "connection-budget", map[string]any{"target": "new", "conn_max_age": 600}, ts)
	out, err := connectionBudget{}.Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	wantOutputs(t, out, Outputs{
		"pooler": true, "demand": int64(5), "headroom": int64(12),
		"notes": []string{
			"a pooler sits in the path to new: the server counts the pooler's server connections (its pool size), not the app's 5; the pooler's client limit (max_client_conn) must cover the demand",
			"conn_max_age is 600: keep CONN_MAX_AGE at 0 or small behind a pooler; set DISABLE_SERVER_SIDE_CURSORS=True for transaction pooling",
		},
	})
	if !strings.Contains(live.String(), "connection-budget new: note: conn_max_age is 600: keep CONN_MAX_AGE at 0 or small behind a pooler") {
		t.Errorf("live output does not carry the note:\n%s", live)
	}
	if strings.Contains(live.String(), canary) {
		t.Error("the password is in the live output")
	}
}

func TestConnDemandSpelling(t *testing.T) {
	tests := []struct {
		d    connDemand
		want string
	}{
		{connDemand{hosts: 3, processes: 4, threads: 8, workers: 4, cron: 1, migrationJobs: 1, monitoring: 1},
			"3 hosts × 4 processes × 8 threads = 96 + 4 workers + 1 cron + 1 migration job + 1 monitoring + 1 cutover = 104"},
		{connDemand{hosts: 1, processes: 1, threads: 1, workers: 1, migrationJobs: 2, monitoring: 2},
			"1 host × 1 process × 1 thread = 1 + 1 worker + 2 migration jobs + 2 monitoring + 1 cutover = 7"},
		{connDemand{}, "0 hosts × 0 processes × 0 threads = 0 + 1 cutover = 1"},
	}
	for _, tt := range tests {
		if got := tt.d.String(); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
	s := serverSlots{maxConnections: 100, superuserReserved: 3, reservedConns: 2, providerReserved: 15}
	if got, want := s.String(), "capacity 80 (max_connections 100 − 3 reserved − 2 reserved_connections − 15 provider reserved)"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
