package benchdb

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"repeaterd/store"
)

// OrJoinReadinessSQL is the readiness query the dispatcher replaced: one
// join with an OR on next_attempt_at, as it was written but without its
// DISTINCT, so it returns one row per ready record. It does not test the
// domain flag nor next_check.
const OrJoinReadinessSQL = `SELECT r.id, r.domain, r.max_workers, r.rate_limit_per_s, r.rate_burst, r.backoff_count
FROM repeaters r
JOIN repeat_records rr ON rr.repeater_id = r.id AND rr.state IN (1, 2)
WHERE NOT r.is_deleted AND NOT r.is_paused
  AND (r.next_attempt_at IS NULL OR r.next_attempt_at <= now())`

// Query runs sql as the engine runs its queries (pgx's prepared statement
// cache: from a connection's sixth execution Postgres may switch to a
// generic plan), reads every row and returns how many there were.
func Query(ctx context.Context, pool *pgxpool.Pool, sql string, args ...any) (int, error) {
	rows, err := pool.Query(ctx, sql, args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	return n, rows.Err()
}

// QueryCustomPlan is Query on an unnamed statement, which Postgres plans
// for the actual parameters on every execution.
func QueryCustomPlan(ctx context.Context, pool *pgxpool.Pool, sql string, args ...any) (int, error) {
	return Query(ctx, pool, sql, append([]any{pgx.QueryExecModeExec}, args...)...)
}

// PlanNode is one node of an EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) plan.
type PlanNode struct {
	NodeType    string     `json:"Node Type"`
	Relation    string     `json:"Relation Name"`
	Index       string     `json:"Index Name"`
	Subplan     string     `json:"Subplan Name"`
	ActualRows  float64    `json:"Actual Rows"`
	ActualLoops float64    `json:"Actual Loops"`
	HeapFetches float64    `json:"Heap Fetches"`
	RowsRemoved float64    `json:"Rows Removed by Filter"`
	SharedHit   int64      `json:"Shared Hit Blocks"`
	SharedRead  int64      `json:"Shared Read Blocks"`
	Plans       []PlanNode `json:"Plans"`
}

// Plan is an analyzed plan with its timings.
type Plan struct {
	Plan          PlanNode `json:"Plan"`
	PlanningTime  float64  `json:"Planning Time"`
	ExecutionTime float64  `json:"Execution Time"`
}

// Explain runs EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) on sql and returns
// the plan, and the same plan as text.
func Explain(ctx context.Context, pool *pgxpool.Pool, sql string, args ...any) (*Plan, string, error) {
	return explain(ctx, pool, sql, args...)
}

// ExplainGeneric is Explain of the generic plan of sql as a prepared
// statement: the plan a cached statement may run with whatever parameters.
// args may be times, bools and integers.
func ExplainGeneric(ctx context.Context, pool *pgxpool.Pool, sql string, args ...any) (*Plan, string, error) {
	params, err := literals(args)
	if err != nil {
		return nil, "", err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, "", err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `PREPARE bench_generic AS `+sql); err != nil {
		return nil, "", err
	}
	defer conn.Exec(context.WithoutCancel(ctx), `DEALLOCATE bench_generic`)
	if _, err := conn.Exec(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
		return nil, "", err
	}
	defer conn.Exec(context.WithoutCancel(ctx), `RESET plan_cache_mode`)
	return explain(ctx, conn, `EXECUTE bench_generic(`+strings.Join(params, ", ")+`)`)
}

// literals renders args as SQL expressions: EXECUTE takes its arguments as
// expressions, not bind parameters.
func literals(args []any) ([]string, error) {
	params := make([]string, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case time.Time:
			params[i] = "'" + v.UTC().Format("2006-01-02 15:04:05.999999") + "+00'::timestamptz"
		case bool, int, int64:
			params[i] = fmt.Sprint(v)
		default:
			return nil, store.Errorf(store.EINVALID, "benchdb: cannot pass a %T to EXECUTE", a)
		}
	}
	return params, nil
}

// querier is what explain needs of a pool or a connection.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// explain runs sql under EXPLAIN (ANALYZE, BUFFERS) twice, as JSON and as
// text, on q.
func explain(ctx context.Context, q querier, sql string, args ...any) (*Plan, string, error) {
	var raw []byte
	if err := q.QueryRow(ctx, `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) `+sql, args...).Scan(&raw); err != nil {
		return nil, "", err
	}
	var plans []Plan
	if err := json.Unmarshal(raw, &plans); err != nil || len(plans) != 1 {
		return nil, "", fmt.Errorf("benchdb: parse plan: %v", err)
	}
	rows, err := q.Query(ctx, `EXPLAIN (ANALYZE, BUFFERS) `+sql, args...)
	if err != nil {
		return nil, "", err
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, "", err
	}
	return &plans[0], strings.Join(lines, "\n"), nil
}
