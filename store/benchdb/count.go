package benchdb

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// CountReady returns how many ready records there are and how many
// distinct repeaters hold them.
func CountReady(ctx context.Context, pool *pgxpool.Pool) (records, repeaters int64, err error) {
	err = pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT repeater_id) FROM repeat_records WHERE state IN (1, 2)`).
		Scan(&records, &repeaters)
	return records, repeaters, err
}

// CountSuccess counts the Success records of the given repeaters (of all
// repeaters when repeaterIDs is nil).
func CountSuccess(ctx context.Context, pool *pgxpool.Pool, repeaterIDs []int64) (int64, error) {
	var n int64
	err := pool.QueryRow(ctx, `SELECT count(*) FROM repeat_records
		WHERE ($1::bigint[] IS NULL OR repeater_id = ANY($1)) AND state = 4`, repeaterIDs).Scan(&n)
	return n, err
}

// Attempts is what was spent on one repeater.
type Attempts struct {
	// Attempts is how many attempts were made on its records.
	Attempts int64
	// Records is how many of its records were attempted at least once.
	Records int64
	// BackoffCount and NextAttemptAt are its backoff state.
	BackoffCount  int
	NextAttemptAt *time.Time
}

// RepeaterAttempts returns the attempts made on a repeater's records and its
// backoff state.
func RepeaterAttempts(ctx context.Context, pool *pgxpool.Pool, repeaterID int64) (Attempts, error) {
	var a Attempts
	err := pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM repeat_record_attempts a JOIN repeat_records r ON r.id = a.record_id WHERE r.repeater_id = $1),
			(SELECT count(*) FROM repeat_records WHERE repeater_id = $1 AND attempt_count > 0),
			backoff_count, next_attempt_at
		FROM repeaters WHERE id = $1`, repeaterID).Scan(&a.Attempts, &a.Records, &a.BackoffCount, &a.NextAttemptAt)
	return a, err
}

// RecordTimes returns, for each record id, when it was registered and when
// its first attempt began (absent if none yet).
func RecordTimes(ctx context.Context, pool *pgxpool.Pool, ids []int64) (registered, firstAttempt map[int64]time.Time, err error) {
	rows, err := pool.Query(ctx, `SELECT r.id, r.registered_at,
			(SELECT min(a.created_at) FROM repeat_record_attempts a WHERE a.record_id = r.id)
		FROM repeat_records r WHERE r.id = ANY($1)`, ids)
	if err != nil {
		return nil, nil, err
	}
	registered, firstAttempt = map[int64]time.Time{}, map[int64]time.Time{}
	var id int64
	var reg time.Time
	var first *time.Time
	_, err = pgx.ForEachRow(rows, []any{&id, &reg, &first}, func() error {
		registered[id] = reg
		if first != nil {
			firstAttempt[id] = *first
		}
		return nil
	})
	return registered, firstAttempt, err
}

// RepeaterIDs returns up to limit active repeater ids in id order.
func RepeaterIDs(ctx context.Context, pool *pgxpool.Pool, limit int) ([]int64, error) {
	rows, err := pool.Query(ctx, `SELECT id FROM repeaters WHERE NOT is_deleted ORDER BY id LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}
