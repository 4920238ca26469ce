package benchdb

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Durability names the server's settings that decide what a commit costs,
// as "fsync=on synchronous_commit=on full_page_writes=on shared_buffers=128MB".
func Durability(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	var fsync, syncCommit, fpw, buffers string
	err := pool.QueryRow(ctx, `SELECT current_setting('fsync'), current_setting('synchronous_commit'),
		current_setting('full_page_writes'), current_setting('shared_buffers')`).Scan(&fsync, &syncCommit, &fpw, &buffers)
	return fmt.Sprintf("fsync=%s synchronous_commit=%s full_page_writes=%s shared_buffers=%s",
		fsync, syncCommit, fpw, buffers), err
}

// Durable reports whether the server commits durably: fsync and
// synchronous_commit on, full_page_writes on.
func Durable(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	var ok bool
	err := pool.QueryRow(ctx, `SELECT current_setting('fsync') = 'on' AND current_setting('full_page_writes') = 'on'
		AND current_setting('synchronous_commit') IN ('on', 'remote_apply', 'remote_write', 'local')`).Scan(&ok)
	return ok, err
}

// DBCounters are the database's cumulative commit and WAL counters.
type DBCounters struct {
	Commits  int64 // pg_stat_database.xact_commit of this database
	WALBytes int64 // pg_stat_wal.wal_bytes, server-wide
	WALSyncs int64 // pg_stat_wal.wal_sync, server-wide: fsyncs of the WAL
}

// Counters reads DBCounters. The statistics are read afresh (not from the
// transaction's snapshot of them).
func Counters(ctx context.Context, pool *pgxpool.Pool) (DBCounters, error) {
	var c DBCounters
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_stat_clear_snapshot()`); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT d.xact_commit, w.wal_bytes::bigint, w.wal_sync
			FROM pg_stat_database d, pg_stat_wal w WHERE d.datname = current_database()`).
			Scan(&c.Commits, &c.WALBytes, &c.WALSyncs)
	})
	return c, err
}

// ResetStatements creates pg_stat_statements in the database if the server
// preloads it and empties it; it reports whether the extension is usable.
func ResetStatements(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	var loaded bool
	if err := pool.QueryRow(ctx, `SELECT 'pg_stat_statements' = ANY(string_to_array(current_setting('shared_preload_libraries'), ','))`).
		Scan(&loaded); err != nil || !loaded {
		return false, err
	}
	if _, err := pool.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		return false, err
	}
	_, err := pool.Exec(ctx, `SELECT pg_stat_statements_reset()`)
	return err == nil, err
}

// Statement is one normalized statement's cost since the last reset.
type Statement struct {
	Query   string  `json:"query"`
	Calls   int64   `json:"calls"`
	TotalMs float64 `json:"total_ms"`
	MeanMs  float64 `json:"mean_ms"`
	Rows    int64   `json:"rows"`
}

// TopStatements returns this database's n most expensive statements by
// total execution time since ResetStatements.
func TopStatements(ctx context.Context, pool *pgxpool.Pool, n int) ([]Statement, error) {
	rows, err := pool.Query(ctx, `SELECT left(regexp_replace(query, '\s+', ' ', 'g'), 120), calls,
			round(total_exec_time::numeric, 1)::float8, round(mean_exec_time::numeric, 3)::float8, rows
		FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
		WHERE d.datname = current_database()
		ORDER BY total_exec_time DESC LIMIT $1`, n)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Statement, error) {
		var s Statement
		return s, row.Scan(&s.Query, &s.Calls, &s.TotalMs, &s.MeanMs, &s.Rows)
	})
}

// BackendPID returns the process id of one of the pool's server backends:
// its parent is the server's postmaster.
func BackendPID(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	var pid int
	return pid, pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid)
}
