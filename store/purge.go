package store

import (
	"context"
	"time"
)

// PurgeResult counts what one purge removed.
type PurgeResult struct {
	Records  int64 `json:"records"`
	Payloads int64 `json:"payloads"`
}

// PurgeBatch deletes up to limit terminal records registered before cutoff,
// their attempts (by cascade) and the payloads no record uses any more, in
// one short transaction. Ready records are never purged.
func (s *Store) PurgeBatch(ctx context.Context, cutoff time.Time, limit int) (PurgeResult, error) {
	var r PurgeResult
	// Within one statement every CTE sees the rows as they were before it,
	// so the orphan test must leave out the records deleted beside it.
	err := s.pool.QueryRow(ctx, `WITH doomed AS (
			SELECT id, payload_id FROM repeat_records
			WHERE registered_at < $1 AND `+sqlTerminal+`
			ORDER BY id
			LIMIT $2
			FOR UPDATE SKIP LOCKED
		), gone AS (
			DELETE FROM repeat_records r USING doomed d WHERE r.id = d.id RETURNING r.payload_id
		), orphans AS (
			DELETE FROM payloads p
			WHERE p.id IN (SELECT payload_id FROM gone)
			  AND NOT EXISTS (SELECT 1 FROM repeat_records rr
			                  WHERE rr.payload_id = p.id AND rr.id NOT IN (SELECT id FROM doomed))
			RETURNING 1
		)
		SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM orphans)`, cutoff, limit).Scan(&r.Records, &r.Payloads)
	return r, err
}

// Purge runs PurgeBatch until nothing older than cutoff is left, pausing
// between batches so the dispatcher and the WAL consumer keep their pace.
func (s *Store) Purge(ctx context.Context, cutoff time.Time, batch int, pause time.Duration) (PurgeResult, error) {
	if batch <= 0 {
		batch = 1000
	}
	var total PurgeResult
	for {
		r, err := s.PurgeBatch(ctx, cutoff, batch)
		total.Records += r.Records
		total.Payloads += r.Payloads
		if err != nil || r.Records < int64(batch) {
			return total, err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return total, ctx.Err()
		case <-t.C:
		}
	}
}
