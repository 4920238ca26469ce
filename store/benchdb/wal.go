package benchdb

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ChurnParams is one transaction of the stats benchmark's load.
type ChurnParams struct {
	// RepeaterIDs are the repeaters new records are spread over.
	RepeaterIDs []int64
	// Inserts is how many records to register.
	Inserts int
	// Complete moves these records to Success (even ids) or Fail (odd).
	Complete []int64
	// SyncCommit sets synchronous_commit = on for the transaction, whatever
	// the server's setting. Defaults to the server's setting.
	SyncCommit bool
}

// Churn runs one transaction of the stats load. It returns the WAL insert
// position read just before the commit (the transaction's end LSN is past
// it, every earlier transaction's before it) and the ids it inserted.
func Churn(ctx context.Context, pool *pgxpool.Pool, p ChurnParams) (lsn string, inserted []int64, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if p.SyncCommit {
			if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = on`); err != nil {
				return err
			}
		}
		if p.Inserts > 0 {
			if inserted, err = churnInsert(ctx, tx, p); err != nil {
				return err
			}
		}
		if len(p.Complete) > 0 {
			if _, err := tx.Exec(ctx, `UPDATE repeat_records SET state = CASE WHEN id % 2 = 0 THEN 4 ELSE 2 END,
					attempt_count = attempt_count + 1
				WHERE id = ANY($1) AND state IN (1, 2)`, p.Complete); err != nil {
				return err
			}
		}
		return tx.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&lsn)
	})
	return lsn, inserted, err
}

// churnInsert registers p.Inserts records over p.RepeaterIDs at random.
func churnInsert(ctx context.Context, tx pgx.Tx, p ChurnParams) ([]int64, error) {
	rows, err := tx.Query(ctx, `INSERT INTO repeat_records (domain, repeater_id, payload_id)
		SELECT r.domain, r.id, (SELECT min(id) FROM payloads) FROM generate_series(1, $2) g
		JOIN repeaters r ON r.id = ($1::bigint[])[1 + (g + (random() * 1000)::int) % cardinality($1::bigint[])]
		RETURNING id`, p.RepeaterIDs, p.Inserts)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// AppliedLSN returns the stats' applied LSN as text, "" when no slot feeds
// them yet.
func AppliedLSN(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	var lsn string
	err := pool.QueryRow(ctx, `SELECT applied_lsn::text FROM stats_progress`).Scan(&lsn)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return lsn, err
}

// LSNReached reports whether the stats have applied WAL up to lsn.
func LSNReached(ctx context.Context, pool *pgxpool.Pool, lsn string) (bool, error) {
	var ok bool
	err := pool.QueryRow(ctx, `SELECT COALESCE((SELECT applied_lsn >= $1::pg_lsn FROM stats_progress), false)`, lsn).
		Scan(&ok)
	return ok, err
}
