package benchdb

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"repeaterd/store"
)

// DefaultChunk is how many records one INSERT of SeedHistory writes.
const DefaultChunk = 1_000_000

// HistoryParams shapes a history for the readiness and stats benchmarks.
type HistoryParams struct {
	Domains   int
	Repeaters int
	Records   int
	// ReadyFraction of records are ready (3/4 Pending, 1/4 Fail); the rest
	// are completed (mostly Success, some Cancelled and PayloadRejected).
	ReadyFraction float64
	// Chunk is how many records one INSERT writes. Defaults to DefaultChunk.
	Chunk int
	// Progress, when set, is told after each chunk. Defaults to nothing.
	Progress func(loaded int)
}

// SeedHistory loads repeaters and records as a long-running system would
// hold them, then ANALYZEs. Of the repeaters, 80 % are not backed off, 10 %
// were backed off until a minute ago (due) and 10 % are backed off for
// another hour; 1 % are paused. Ready records are due (next_check an hour
// ago), except half of the Fail ones, whose legacy retry is an hour away.
// Foreign-key triggers are skipped while loading (session_replication_role
// = replica) when the role may do so; the rows satisfy the keys by
// construction.
func SeedHistory(ctx context.Context, pool *pgxpool.Pool, p HistoryParams) error {
	if p.Chunk <= 0 {
		p.Chunk = DefaultChunk
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `INSERT INTO repeaters (domain, name, url, next_attempt_at, backoff_count, is_paused)
		SELECT 'dom' || (i % $1), 'r' || i, 'http://127.0.0.1:9/',
			CASE i % 10 WHEN 1 THEN now() - interval '1 minute' WHEN 2 THEN now() + interval '1 hour' END,
			CASE WHEN i % 10 IN (1, 2) THEN 1 ELSE 0 END,
			i % 100 = 50
		FROM generate_series(1, $2) i`, p.Domains, p.Repeaters); err != nil {
		return fmt.Errorf("benchdb: seed repeaters: %w", err)
	}
	var payload int64
	if err := conn.QueryRow(ctx, `INSERT INTO payloads (domain, body) VALUES ('dom0', '{"seed":true}') RETURNING id`).
		Scan(&payload); err != nil {
		return err
	}
	_, noTriggersErr := conn.Exec(ctx, `SET session_replication_role = replica`)
	defer func() {
		if noTriggersErr == nil {
			_, _ = conn.Exec(context.WithoutCancel(ctx), `RESET session_replication_role`)
		}
	}()
	rebuild, err := dropRecordIndexes(ctx, conn)
	if err != nil {
		return err
	}
	for from := 1; from <= p.Records; from += p.Chunk {
		to := min(from+p.Chunk-1, p.Records)
		if err := seedRecords(ctx, conn, p, payload, from, to); err != nil {
			_ = rebuild(context.WithoutCancel(ctx))
			return err
		}
		if p.Progress != nil {
			p.Progress(to)
		}
	}
	if err := rebuild(ctx); err != nil {
		return err
	}
	if err := MarkRepeatersWithWork(ctx, pool); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, `ANALYZE`)
	return err
}

// dropRecordIndexes drops repeat_records' indexes but its primary key, for
// a bulk load: building an index once after it is several times faster
// than keeping it during 100 M inserts, as a restore does. rebuild creates
// them again, as they were; if the load fails first, rebuild still has to
// run (its own context), so callers run it however they leave.
func dropRecordIndexes(ctx context.Context, conn *pgxpool.Conn) (rebuild func(context.Context) error, err error) {
	rows, err := conn.Query(ctx, `SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
		FROM pg_index i WHERE i.indrelid = 'repeat_records'::regclass AND NOT i.indisprimary`)
	if err != nil {
		return nil, err
	}
	var names, defs []string
	var name, def string
	if _, err := pgx.ForEachRow(rows, []any{&name, &def}, func() error {
		names, defs = append(names, name), append(defs, def)
		return nil
	}); err != nil {
		return nil, err
	}
	done := false
	rebuild = func(ctx context.Context) error {
		if done {
			return nil
		}
		done = true
		for _, set := range []string{`SET maintenance_work_mem = '1GB'`, `SET max_parallel_maintenance_workers = 2`} {
			if _, err := conn.Exec(ctx, set); err != nil {
				return err
			}
		}
		for _, def := range defs {
			// IF NOT EXISTS: after a failed drop, some were never dropped.
			if _, err := conn.Exec(ctx, strings.Replace(def, " INDEX ", " INDEX IF NOT EXISTS ", 1)); err != nil {
				return fmt.Errorf("benchdb: rebuild index: %w", err)
			}
		}
		_, err := conn.Exec(ctx, `RESET maintenance_work_mem; RESET max_parallel_maintenance_workers`)
		return err
	}
	for _, n := range names {
		if _, err := conn.Exec(ctx, `DROP INDEX `+n); err != nil {
			_ = rebuild(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("benchdb: drop index %s: %w", n, err)
		}
	}
	return rebuild, nil
}

// seedRecords inserts history records from to to (1-based, inclusive),
// spread over the repeaters by a stride prime to their number.
func seedRecords(ctx context.Context, conn *pgxpool.Conn, p HistoryParams, payload int64, from, to int) error {
	_, err := conn.Exec(ctx, `WITH r AS (
			SELECT id, domain, (row_number() OVER (ORDER BY id) - 1) AS n FROM repeaters
		), g AS (
			SELECT i, random() AS x FROM generate_series($1::bigint, $2::bigint) i
		)
		INSERT INTO repeat_records (domain, repeater_id, payload_id, state, registered_at, next_check, attempt_count)
		SELECT r.domain, r.id, $3,
			CASE WHEN g.x < $5 * 0.75 THEN 1 WHEN g.x < $5 THEN 2
			     WHEN g.x < $5 + 0.01 THEN 8 WHEN g.x < $5 + 0.02 THEN 32 ELSE 4 END,
			now() - interval '30 days' + g.i * (interval '30 days' / $6),
			CASE WHEN g.x >= $5 * 0.875 AND g.x < $5 THEN now() + interval '1 hour' ELSE now() - interval '1 hour' END,
			CASE WHEN g.x < $5 * 0.75 THEN 0 ELSE 1 END
		FROM g JOIN r ON r.n = (g.i * 7919) % $4`,
		from, to, payload, p.Repeaters, p.ReadyFraction, p.Records)
	if err != nil {
		return fmt.Errorf("benchdb: seed records %d-%d: %w", from, to, err)
	}
	return nil
}

// LoadReady registers perRepeater records for each repeater, interleaved
// across repeaters in id order (as records from many tenants arrive), in one
// transaction, then notifies the dispatcher. Each repeater's records share
// one payload of about bodyBytes bytes. It returns the number of records.
func LoadReady(ctx context.Context, pool *pgxpool.Pool, repeaterIDs []int64, perRepeater, bodyBytes int) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `WITH r AS (
				SELECT id, domain, max_attempts FROM repeaters WHERE id = ANY($1)
			), p AS (
				INSERT INTO payloads (domain, content_type, body)
				SELECT r.domain, 'application/json',
					convert_to('{"bench":true,"repeater":' || r.id || ',"pad":"' || repeat('x', $3) || '"}', 'UTF8')
				FROM r ORDER BY r.id
				RETURNING id, domain, convert_from(body, 'UTF8')::jsonb->>'repeater' AS repeater
			), ins AS (
				INSERT INTO repeat_records (domain, repeater_id, payload_id, max_possible_tries)
				SELECT r.domain, r.id, p.id, r.max_attempts
				FROM generate_series(1, $2) g
				CROSS JOIN r
				JOIN p ON p.repeater::bigint = r.id
				ORDER BY g, r.id
				RETURNING 1
			)
			SELECT count(*) FROM ins`, repeaterIDs, perRepeater, max(bodyBytes-40, 0)).Scan(&n)
		if err != nil {
			return err
		}
		return store.NotifyRecords(ctx, tx)
	})
	return n, err
}
