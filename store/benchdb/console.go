package benchdb

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// SeedRecentAttempts adds n attempts made in the last hour, spread evenly
// over the records (every (records/n)th id), mostly successes with some
// failures and rejections, for the console's "last hour" and "last error".
func SeedRecentAttempts(ctx context.Context, pool *pgxpool.Pool, n int) error {
	_, err := pool.Exec(ctx, `WITH m AS (SELECT max(id) AS top FROM repeat_records)
		INSERT INTO repeat_record_attempts (record_id, state, status_code, message, duration_ms, created_at)
		SELECT rr.id,
			CASE WHEN g.i % 10 = 0 THEN 2 WHEN g.i % 25 = 1 THEN 32 ELSE 4 END,
			CASE WHEN g.i % 10 = 0 THEN 503 WHEN g.i % 25 = 1 THEN 400 ELSE 200 END,
			CASE WHEN g.i % 10 = 0 THEN 'service unavailable' ELSE '' END,
			20 + g.i % 200, now() - (g.i % 3600) * interval '1 second'
		FROM generate_series(1, $1) g(i) CROSS JOIN m
		JOIN repeat_records rr ON rr.id = 1 + (g.i::bigint * m.top / $1) % m.top`, n)
	if err != nil {
		return fmt.Errorf("benchdb: seed attempts: %w", err)
	}
	_, err = pool.Exec(ctx, `ANALYZE repeat_record_attempts`)
	return err
}

// FeedStats makes repeat_record_stats exact (counted from the records) and
// current as the console sees it: a logical slot of this database named
// slot, and stats_progress naming it, written now. No consumer streams it,
// so the progress counts as current for two minutes (store.StatsFeed);
// TouchStats renews it. DropDatabase drops the slot.
func FeedStats(ctx context.Context, pool *pgxpool.Pool, slot string) error {
	for _, q := range []string{
		`DELETE FROM repeat_record_stats`,
		`INSERT INTO repeat_record_stats (domain, repeater_id, state, count)
			SELECT domain, repeater_id, state, count(*) FROM repeat_records GROUP BY 1, 2, 3`,
		`DELETE FROM stats_progress`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("benchdb: feed stats: %w", err)
		}
	}
	var lsn string
	if err := pool.QueryRow(ctx, `SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')`, slot).Scan(&lsn); err != nil {
		return fmt.Errorf("benchdb: create slot %s: %w", slot, err)
	}
	_, err := pool.Exec(ctx, `INSERT INTO stats_progress (slot_name, applied_lsn, applied_through) VALUES ($1, $2::pg_lsn, now())`, slot, lsn)
	return err
}

// TouchStats renews stats_progress's write time (see FeedStats).
func TouchStats(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, `UPDATE stats_progress SET updated_at = now()`)
	return err
}

// UnfeedStats drops what FeedStats made, so the console counts live.
func UnfeedStats(ctx context.Context, pool *pgxpool.Pool, slot string) error {
	if _, err := pool.Exec(ctx, `DELETE FROM stats_progress`); err != nil {
		return err
	}
	_, err := pool.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, slot)
	return err
}
