package steps

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgcutover/cutover/schema"
)

func init() {
	Register(&Type{
		Name:    "smoke-query",
		Summary: "Run SQL against a target in a read-only transaction (or a read/write one) and hand the rows to asserts.",
		Doc: "The statement runs on the run's shared connection to the target, inside `BEGIN READ ONLY` unless `write: true`; " +
			"a read-only transaction is always rolled back, and a write is rolled back too unless `commit: true`. " +
			"`args` are bind parameters ($1, $2, …), sent separately from the SQL; the SQL itself is literal, so no value is ever spliced into it. " +
			"`statement_timeout` is set for the transaction only. Rows become CEL values (`rows[0].db`), at most `max_rows` of them.",
		Inputs: []schema.Field{
			{Name: "target", Kind: schema.String, Ref: schema.RefTarget, Required: true, Doc: "the target to query"},
			{Name: "sql", Kind: schema.String, Literal: true, Required: true, Doc: "one SQL statement; use $1, $2… for values"},
			{Name: "args", Kind: schema.StringList, Doc: "bind parameters, as text; the server casts them"},
			{Name: "write", Kind: schema.Bool, Literal: true, Default: false, Doc: "run in a read/write transaction"},
			{Name: "commit", Kind: schema.Bool, Literal: true, Default: false, Doc: "with write: commit instead of rolling back"},
			{Name: "statement_timeout", Kind: schema.Duration, Default: 30 * time.Second, Doc: "server-side limit for the statement"},
			{Name: "max_rows", Kind: schema.Int, Default: int64(1000), Doc: "rows kept for asserts and the journal"},
		},
		Outputs: []schema.Output{
			{Name: "rows", Kind: schema.Rows, Doc: "the rows, each a map of column name to value"},
			{Name: "row_count", Kind: schema.Int, Doc: "rows returned (or affected, for a write)"},
			{Name: "command_tag", Kind: schema.String, Doc: "the server's command tag, e.g. SELECT 1"},
			{Name: "duration_ms", Kind: schema.Int, Doc: "time the statement took"},
		},
		Mutates: func(in schema.Inputs) bool {
			w := in["write"]
			return w != nil && w.Bool
		},
		DryRun:  "runs when read-only (the default); with write: true it is mutating and does not run",
		Example: "- id: identity\n  type: smoke-query\n  with: {target: new, sql: \"SELECT current_database() AS db, current_user AS usr\"}\n  assert: [\"rows[0].db == 'appdb'\"]\n",
		Impl:    smokeQuery{},
	})
}

type smokeQuery struct{}

func (smokeQuery) Run(ctx context.Context, c *Call) (Outputs, error) {
	a := c.Args
	conn, err := c.Targets.Conn(ctx, a.String("target"))
	if err != nil {
		return nil, err
	}
	mode := pgx.ReadOnly
	if a.Bool("write") {
		mode = pgx.ReadWrite
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: mode})
	if err != nil {
		return nil, fmt.Errorf("target %s: begin: %w", a.String("target"), err)
	}
	// Rolled back unless committed below; harmless after a commit.
	defer tx.Rollback(context.WithoutCancel(ctx))
	if d := a.Duration("statement_timeout"); d > 0 {
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL statement_timeout = %d", d.Milliseconds())); err != nil {
			return nil, fmt.Errorf("target %s: setting statement_timeout: %w", a.String("target"), err)
		}
	}
	var args []any
	for _, s := range a.Strings("args") {
		args = append(args, s)
	}
	start := time.Now()
	rows, err := tx.Query(ctx, a.String("sql"), args...)
	if err != nil {
		return nil, queryError(a.String("target"), err)
	}
	out, tag, err := collect(rows, int(a.Int("max_rows")))
	elapsed := time.Since(start)
	if err != nil {
		return nil, queryError(a.String("target"), err)
	}
	count := int64(len(out))
	if tag.Update() || tag.Insert() || tag.Delete() {
		count = tag.RowsAffected()
	}
	if a.Bool("write") && a.Bool("commit") {
		if err := tx.Commit(ctx); err != nil {
			return nil, fmt.Errorf("target %s: commit: %w", a.String("target"), err)
		}
	}
	return Outputs{"rows": out, "row_count": count, "command_tag": tag.String(), "duration_ms": elapsed.Milliseconds()}, nil
}

func collect(rows pgx.Rows, max int) ([]map[string]any, pgconn.CommandTag, error) {
	defer rows.Close()
	fields := rows.FieldDescriptions()
	out := []map[string]any{}
	for rows.Next() {
		if max > 0 && len(out) >= max {
			continue
		}
		vals, err := rows.Values()
		if err != nil {
			return nil, pgconn.CommandTag{}, err
		}
		row := make(map[string]any, len(vals))
		for i, v := range vals {
			row[fields[i].Name] = celValue(v)
		}
		out = append(out, row)
	}
	return out, rows.CommandTag(), rows.Err()
}

// celValue turns a pgx value into one CEL understands.
func celValue(v any) any {
	switch x := v.(type) {
	case nil, string, bool, int64, float64, time.Time, time.Duration, []byte:
		return x
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int:
		return int64(x)
	case uint32:
		return int64(x)
	case float32:
		return float64(x)
	case pgtype.Numeric:
		if f, err := x.Float64Value(); err == nil && f.Valid {
			return f.Float64
		}
		return nil
	case *big.Int:
		return x.String()
	case [16]byte:
		return fmt.Sprintf("%x-%x-%x-%x-%x", x[0:4], x[4:6], x[6:8], x[8:10], x[10:16])
	case pgtype.Interval:
		return time.Duration(x.Microseconds)*time.Microsecond + time.Duration(x.Days)*24*time.Hour + time.Duration(x.Months)*30*24*time.Hour
	case map[string]any:
		return x
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = celValue(e)
		}
		return out
	}
	return fmt.Sprint(v)
}

func queryError(target string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		msg := fmt.Sprintf("target %s: %s (SQLSTATE %s)", target, pgErr.Message, pgErr.Code)
		switch pgErr.Code {
		case "25006":
			msg += ": the query writes, but smoke-query runs read-only unless write: true"
		case "57014":
			msg += ": statement_timeout reached"
		}
		if pgErr.Detail != "" {
			msg += "; " + pgErr.Detail
		}
		if pgErr.Hint != "" {
			msg += "; hint: " + pgErr.Hint
		}
		if pgErr.Code == "57014" {
			return errors.New(msg)
		}
		return Permanent(errors.New(msg))
	}
	return fmt.Errorf("target %s: %w", target, err)
}
