package benchdb

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"repeaterd/store"
)

// MarkRepeatersWithWork adds to the work set (repeater_work, migration
// 00120) every repeater with a ready record, for loads that skipped its triggers
// (session_replication_role = replica).
func MarkRepeatersWithWork(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, `INSERT INTO repeater_work (repeater_id)
		SELECT r.id FROM repeaters r WHERE EXISTS (
			SELECT 1 FROM repeat_records rr WHERE rr.repeater_id = r.id AND rr.state IN (1, 2))
		ON CONFLICT DO NOTHING`)
	if err != nil {
		return fmt.Errorf("benchdb: mark repeaters with work: %w", err)
	}
	return nil
}

// ProbeAllReadinessSQL is the readiness query as it was before the work
// set: it looks at every active repeater (the "before" of bench readiness's
// endpoints variant). It takes store.ReadyRepeatersSQL's arguments.
func ProbeAllReadinessSQL(st *store.Store) string {
	sql, _ := st.ReadyRepeatersSQL(time.Time{})
	return strings.ReplaceAll(sql, "r.id = ANY (ARRAY(SELECT w.repeater_id FROM repeater_work w)) AND ", "")
}

// EndpointParams shapes a platform with many endpoints, most idle.
type EndpointParams struct {
	Domains   int
	Repeaters int
	// WithWork is how many repeaters have ready records (all due); the
	// others have none.
	WithWork int
	// Records is how many ready records, spread evenly over WithWork.
	Records int
}

// SeedEndpoints loads repeaters and ready records for the endpoints variant,
// marks the work set and ANALYZEs. The repeaters with work are spread over
// the id range (every Repeaters/WithWork-th), none backed off or paused.
func SeedEndpoints(ctx context.Context, pool *pgxpool.Pool, p EndpointParams) error {
	if p.WithWork <= 0 || p.WithWork > p.Repeaters {
		return fmt.Errorf("benchdb: %d repeaters with work of %d", p.WithWork, p.Repeaters)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `INSERT INTO repeaters (domain, name, url)
		SELECT 'dom' || (i % $1), 'r' || i, 'http://127.0.0.1:9/' FROM generate_series(1, $2) i`,
		p.Domains, p.Repeaters); err != nil {
		return fmt.Errorf("benchdb: seed repeaters: %w", err)
	}
	var payload int64
	if err := conn.QueryRow(ctx, `INSERT INTO payloads (domain, body) VALUES ('dom0', '{"seed":true}') RETURNING id`).
		Scan(&payload); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err == nil {
		defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `RESET session_replication_role`) }()
	}
	stride := p.Repeaters / p.WithWork
	if _, err := conn.Exec(ctx, `WITH r AS (
			SELECT id, domain, row_number() OVER (ORDER BY id) - 1 AS n FROM repeaters
		), busy AS (
			SELECT id, domain, n / $1 AS k FROM r WHERE n % $1 = 0 AND n / $1 < $2
		)
		INSERT INTO repeat_records (domain, repeater_id, payload_id, registered_at, next_check)
		SELECT b.domain, b.id, $3, now() - interval '1 day' + g.i * interval '1 ms', now() - interval '1 hour'
		FROM generate_series(0, $4 - 1) g(i) JOIN busy b ON b.k = g.i % $2`,
		stride, p.WithWork, payload, p.Records); err != nil {
		return fmt.Errorf("benchdb: seed ready records: %w", err)
	}
	if err := MarkRepeatersWithWork(ctx, pool); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, `ANALYZE`)
	return err
}

// BackendCPU runs q n times on one connection of pool (unnamed statements,
// planned every time, as store.ReadyRepeaters runs) and returns the server
// backend's CPU time (user + system, from /proc; clock-tick resolution) per
// run: what the query costs Postgres, whatever else the machine is doing.
// It needs the server on this machine; ok is false when /proc cannot tell.
func BackendCPU(ctx context.Context, pool *pgxpool.Pool, n int, sql string, args ...any) (perRun time.Duration, ok bool, err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, false, err
	}
	defer conn.Release()
	var pid int
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		return 0, false, err
	}
	before, ok := procCPU(pid)
	if !ok {
		return 0, false, nil
	}
	for range n {
		rows, err := conn.Query(ctx, sql, append([]any{pgx.QueryExecModeExec}, args...)...)
		if err != nil {
			return 0, false, err
		}
		for rows.Next() {
		}
		if rows.Close(); rows.Err() != nil {
			return 0, false, rows.Err()
		}
	}
	after, ok := procCPU(pid)
	return (after - before) / time.Duration(n), ok, nil
}

// procCPU is a process's utime + stime from /proc/PID/stat (USER_HZ = 100).
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // after "pid (comm) "
	if len(fields) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, true
}
