package steps

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgcutover/cutover/schema"
)

func init() {
	Register(&Type{
		Name:    "connection-budget",
		Summary: "Check that the app's planned connections fit the target's max_connections, reserved slots and role limit.",
		Doc: "Reads `max_connections`, `superuser_reserved_connections` (and `reserved_connections` on PostgreSQL 16 and " +
			"later), the client sessions other than its own in `pg_stat_activity`, the connection limits of the " +
			"current role and database, and whether a pooler sits in the path (the backend pid differs from the one " +
			"the connection announced), all on the run's shared connection to `target`.\n\n" +
			"capacity = max_connections − reserved − provider_reserved. Managed services keep slots of their own for " +
			"their agents: set `provider_reserved` to 15 on Azure Database for PostgreSQL Flexible Server.\n\n" +
			"demand = web_hosts × processes × threads (Django opens one connection per thread) + workers (Celery " +
			"concurrency, summed over worker hosts) + cron (management commands that run at once) + migration_jobs + " +
			"monitoring + 1 (this tool).\n\n" +
			"headroom = capacity − in_use − demand. The step fails, spelling the arithmetic out, when headroom is below " +
			"`headroom_min` (the app would get SQLSTATE 53300, `remaining connection slots are reserved…` or " +
			"`sorry, too many clients already`), or when demand exceeds the role's or the database's connection limit " +
			"(`too many connections for role`). Behind a pooler the server sees the pooler's pool rather than the " +
			"app's connections, and a note says so; with `conn_max_age` above 0 another note recommends keeping " +
			"CONN_MAX_AGE small and setting DISABLE_SERVER_SIDE_CURSORS.",
		Inputs: []schema.Field{
			{Name: "target", Kind: schema.String, Ref: schema.RefTarget, Required: true, Doc: "the target the app will connect to"},
			{Name: "web_hosts", Kind: schema.Int, Default: int64(1), Doc: "hosts (containers, dynos, pods) serving the web app"},
			{Name: "processes", Kind: schema.Int, Default: int64(1), Doc: "worker processes per web host (gunicorn/uwsgi workers)"},
			{Name: "threads", Kind: schema.Int, Default: int64(1), Doc: "threads per process; each holds its own connection"},
			{Name: "workers", Kind: schema.Int, Default: int64(0), Doc: "background worker connections in all (Celery concurrency × worker hosts)"},
			{Name: "cron", Kind: schema.Int, Default: int64(1), Doc: "cron jobs and management commands that may run at the same time"},
			{Name: "migration_jobs", Kind: schema.Int, Default: int64(1), Doc: "migration jobs that may run at the same time (manage.py migrate on deploy)"},
			{Name: "monitoring", Kind: schema.Int, Default: int64(1), Doc: "connections of monitoring agents and exporters"},
			{Name: "provider_reserved", Kind: schema.Int, Default: int64(0), Doc: "slots the provider keeps for itself beyond superuser_reserved_connections: 15 on Azure Flexible Server"},
			{Name: "conn_max_age", Kind: schema.Int, Default: int64(0), Doc: "the app's CONN_MAX_AGE in seconds (persistent connections)"},
			{Name: "headroom_min", Kind: schema.Int, Default: int64(5), Doc: "fail when fewer slots than this would be left"},
		},
		Outputs: []schema.Output{
			{Name: "max_connections", Kind: schema.Int, Doc: "the server's max_connections"},
			{Name: "reserved", Kind: schema.Int, Doc: "superuser_reserved_connections (plus reserved_connections on PostgreSQL 16 and later)"},
			{Name: "in_use", Kind: schema.Int, Doc: "client sessions open now, other than this step's own"},
			{Name: "capacity", Kind: schema.Int, Doc: "max_connections − reserved − provider_reserved"},
			{Name: "demand", Kind: schema.Int, Doc: "the connections the plan's numbers add up to"},
			{Name: "headroom", Kind: schema.Int, Doc: "capacity − in_use − demand"},
			{Name: "role_limit", Kind: schema.Int, Doc: "the current role's connection limit (rolconnlimit); -1 when unlimited"},
			{Name: "pooler", Kind: schema.Bool, Doc: "a pooler sits in the path (the backend pid differs from the one the connection announced)"},
			{Name: "notes", Kind: schema.StringList, Doc: "advice that does not fail the step"},
		},
		DryRun: "runs (it is read-only)",
		Example: "- id: budget\n  type: connection-budget\n" +
			"  with: {target: new, web_hosts: 3, processes: 4, threads: 2, workers: 8, provider_reserved: 15, conn_max_age: 60}\n" +
			"  assert: [\"steps.budget.outputs.headroom >= 10\"]\n",
		Impl: connectionBudget{},
	})
}

type connectionBudget struct{}

// connDemand is the planned connections, term by term.
type connDemand struct {
	hosts, processes, threads, workers, cron, migrationJobs, monitoring int64
}

func (d connDemand) web() int64 { return d.hosts * d.processes * d.threads }

// total counts the tool's own connection too.
func (d connDemand) total() int64 {
	return d.web() + d.workers + d.cron + d.migrationJobs + d.monitoring + 1
}

// String spells the sum out: "3 hosts × 4 processes × 8 threads = 96 + 4
// workers + 1 cron + 1 migration job + 1 monitoring + 1 cutover = 104".
func (d connDemand) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s × %s × %s = %d", budgetCount(d.hosts, "host", "hosts"),
		budgetCount(d.processes, "process", "processes"), budgetCount(d.threads, "thread", "threads"), d.web())
	for _, term := range []struct {
		n    int64
		name string
	}{
		{d.workers, budgetCount(d.workers, "worker", "workers")},
		{d.cron, strconv.FormatInt(d.cron, 10) + " cron"},
		{d.migrationJobs, budgetCount(d.migrationJobs, "migration job", "migration jobs")},
		{d.monitoring, strconv.FormatInt(d.monitoring, 10) + " monitoring"},
		{1, "1 cutover"},
	} {
		if term.n != 0 {
			b.WriteString(" + " + term.name)
		}
	}
	fmt.Fprintf(&b, " = %d", d.total())
	return b.String()
}

func budgetCount(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.FormatInt(n, 10) + " " + many
}

// serverSlots is what a server allows, read on the target.
type serverSlots struct {
	maxConnections    int64
	superuserReserved int64
	reservedConns     int64 // reserved_connections, PostgreSQL 16 and later
	providerReserved  int64
	inUse             int64
	role              string
	roleLimit         int64
	database          string
	dbLimit           int64
}

func (s serverSlots) reserved() int64 { return s.superuserReserved + s.reservedConns }

func (s serverSlots) capacity() int64 { return s.maxConnections - s.reserved() - s.providerReserved }

// String spells capacity out: "capacity 97 (max_connections 100 − 3 reserved)".
func (s serverSlots) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "capacity %d (max_connections %d − %d reserved", s.capacity(), s.maxConnections, s.superuserReserved)
	if s.reservedConns > 0 {
		fmt.Fprintf(&b, " − %d reserved_connections", s.reservedConns)
	}
	if s.providerReserved > 0 {
		fmt.Fprintf(&b, " − %d provider reserved", s.providerReserved)
	}
	b.WriteString(")")
	return b.String()
}

func (connectionBudget) Run(ctx context.Context, c *Call) (Outputs, error) {
	a := c.Args
	name := a.String("target")
	d := connDemand{
		hosts: a.Int("web_hosts"), processes: a.Int("processes"), threads: a.Int("threads"),
		workers: a.Int("workers"), cron: a.Int("cron"), migrationJobs: a.Int("migration_jobs"), monitoring: a.Int("monitoring"),
	}
	var negative []string
	for _, in := range []string{"web_hosts", "processes", "threads", "workers", "cron", "migration_jobs", "monitoring", "provider_reserved", "conn_max_age", "headroom_min"} {
		if a.Int(in) < 0 {
			negative = append(negative, fmt.Sprintf("%s is %d", in, a.Int(in)))
		}
	}
	if len(negative) > 0 {
		return nil, Permanent(fmt.Errorf("%s: the numbers of connection-budget cannot be negative", strings.Join(negative, ", ")))
	}
	if c.Targets == nil {
		return nil, Permanent(fmt.Errorf("no target %q", name))
	}
	conn, err := c.Targets.Conn(ctx, name)
	if err != nil {
		return nil, err
	}
	s := serverSlots{providerReserved: a.Int("provider_reserved")}
	var reservedConns *string
	err = conn.QueryRow(ctx, `SELECT current_setting('max_connections')::bigint,
	current_setting('superuser_reserved_connections')::bigint,
	current_setting('reserved_connections', true),
	(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()),
	current_user, (SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user),
	current_database(), (SELECT datconnlimit FROM pg_database WHERE datname = current_database())`).Scan(
		&s.maxConnections, &s.superuserReserved, &reservedConns, &s.inUse, &s.role, &s.roleLimit, &s.database, &s.dbLimit)
	if err != nil {
		return nil, queryError(name, err)
	}
	if reservedConns != nil && *reservedConns != "" {
		if s.reservedConns, err = strconv.ParseInt(*reservedConns, 10, 64); err != nil {
			return nil, fmt.Errorf("target %s: reserved_connections is %q", name, *reservedConns)
		}
	}
	pooler, _, err := poolerInPath(ctx, conn)
	if err != nil {
		return nil, queryError(name, err)
	}
	demand := d.total()
	headroom := s.capacity() - s.inUse - demand
	notes := []string{}
	if pooler {
		notes = append(notes, fmt.Sprintf("a pooler sits in the path to %s: the server counts the pooler's server connections (its pool size), not the app's %d; the pooler's client limit (max_client_conn) must cover the demand", name, demand))
		if a.Int("conn_max_age") > 0 {
			notes = append(notes, fmt.Sprintf("conn_max_age is %d: keep CONN_MAX_AGE at 0 or small behind a pooler; set DISABLE_SERVER_SIDE_CURSORS=True for transaction pooling", a.Int("conn_max_age")))
		}
	}
	out := Outputs{
		"max_connections": s.maxConnections, "reserved": s.reserved(), "in_use": s.inUse,
		"capacity": s.capacity(), "demand": demand, "headroom": headroom,
		"role_limit": s.roleLimit, "pooler": pooler, "notes": notes,
	}
	say(c, "connection-budget %s: %s; %d in use; demand %s; headroom %d", name, s, s.inUse, d, headroom)
	for _, n := range notes {
		say(c, "connection-budget %s: note: %s", name, n)
	}

	var problems []string
	const what = "lower processes or threads, put a pooler (PgBouncer in transaction mode) in front, or raise max_connections (on a managed service, a larger instance class)"
	switch {
	case demand > s.capacity():
		p := fmt.Sprintf("demand %s > %s", d, s)
		if s.inUse > 0 {
			p += fmt.Sprintf(", and %d sessions are open already", s.inUse)
		}
		problems = append(problems, p+": the app would get \"remaining connection slots are reserved\" or \"sorry, too many clients already\" (SQLSTATE 53300); "+what)
	case headroom < a.Int("headroom_min"):
		problems = append(problems, fmt.Sprintf("headroom %d < headroom_min %d: %s − %d in use − demand %d = %d, where demand is %s; %s",
			headroom, a.Int("headroom_min"), s, s.inUse, demand, headroom, d, what))
	}
	if s.roleLimit >= 0 && demand > s.roleLimit {
		problems = append(problems, fmt.Sprintf("demand %d > connection limit %d of role %s: connections beyond it fail with: too many connections for role %q (SQLSTATE 53300); raise it (ALTER ROLE %s CONNECTION LIMIT %d) or lower the demand",
			demand, s.roleLimit, s.role, s.role, pgx.Identifier{s.role}.Sanitize(), demand))
	}
	if s.dbLimit >= 0 && demand > s.dbLimit {
		problems = append(problems, fmt.Sprintf("demand %d > connection limit %d of database %s: connections beyond it fail with: too many connections for database %q (SQLSTATE 53300); raise it (ALTER DATABASE %s CONNECTION LIMIT %d) or lower the demand",
			demand, s.dbLimit, s.database, s.database, pgx.Identifier{s.database}.Sanitize(), demand))
	}
	if len(problems) > 0 {
		return out, Permanent(fmt.Errorf("target %s: %s", name, listProblems(problems)))
	}
	return out, nil
}

// poolerInPath reports whether a pooler sits between conn and the server:
// the backend pid the server reports differs from the one announced in
// BackendKeyData when the connection was opened.
func poolerInPath(ctx context.Context, conn *pgx.Conn) (pooler bool, backendPID int64, err error) {
	if conn == nil {
		return false, 0, errors.New("no connection")
	}
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backendPID); err != nil {
		return false, 0, err
	}
	return backendPID != int64(conn.PgConn().PID()), backendPID, nil
}
