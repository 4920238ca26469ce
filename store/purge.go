package store

import (
	"context"
	"time"
)

// PurgeResult counts what one purge removed (or, for a dry run, would).
type PurgeResult struct {
	Records  int64 `json:"records"`
	Attempts int64 `json:"attempts"`
	Payloads int64 `json:"payloads"`
}

// Add adds o's counts to r.
func (r *PurgeResult) Add(o PurgeResult) {
	r.Records += o.Records
	r.Attempts += o.Attempts
	r.Payloads += o.Payloads
}

// sqlPurgeable selects the terminal records completed before $1, the ones
// the purge removes. Its completion time is the expression of
// repeat_records_completed_idx (migration 00071): keep the two identical, or
// the planner cannot use the index and every purge scans the table.
const sqlPurgeable = `coalesce(state_changed_at, registered_at) < $1 AND ` + sqlTerminal

// sqlPurgeableAs is sqlPurgeable on a table aliased by prefix ("rr.").
func sqlPurgeableAs(prefix string) string {
	return `coalesce(` + prefix + `state_changed_at, ` + prefix + `registered_at) < $1 AND ` + prefix + sqlTerminal
}

// PurgeBatch deletes up to limit terminal records completed before cutoff
// (oldest first), their attempts and the payloads no record uses any more,
// in one short transaction. Ready records are never purged. A batch that
// deletes records notes the time in purge_progress, for the stats_drift
// invariant (the WAL consumer counts the deletions out a moment later).
func (s *Store) PurgeBatch(ctx context.Context, cutoff time.Time, limit int) (PurgeResult, error) {
	var r PurgeResult
	sql, args := PurgeBatchSQL(cutoff, limit)
	err := s.pool.QueryRow(ctx, sql, args...).Scan(&r.Records, &r.Attempts, &r.Payloads)
	return r, err
}

// PurgeBatchSQL is PurgeBatch's statement and arguments, for tests that
// EXPLAIN it. It returns the records, attempts and payloads deleted.
func PurgeBatchSQL(cutoff time.Time, limit int) (string, []any) {
	// Within one statement every CTE sees the rows as they were before it,
	// so the orphan test must leave out the records deleted beside it.
	return `WITH doomed AS (
			SELECT id, payload_id FROM repeat_records
			WHERE ` + sqlPurgeable + `
			ORDER BY coalesce(state_changed_at, registered_at)
			LIMIT $2
			FOR UPDATE SKIP LOCKED
		), attempts AS (
			DELETE FROM repeat_record_attempts a USING doomed d WHERE a.record_id = d.id RETURNING 1
		), gone AS (
			DELETE FROM repeat_records r USING doomed d WHERE r.id = d.id RETURNING r.payload_id
		), orphans AS (
			DELETE FROM payloads p
			WHERE p.id IN (SELECT payload_id FROM gone)
			  AND NOT EXISTS (SELECT 1 FROM repeat_records rr
			                  WHERE rr.payload_id = p.id AND rr.id NOT IN (SELECT id FROM doomed))
			RETURNING 1
		), noted AS (
			INSERT INTO purge_progress (last_deleted_at)
			SELECT clock_timestamp() WHERE EXISTS (SELECT 1 FROM doomed)
			ON CONFLICT (one) DO UPDATE SET last_deleted_at = EXCLUDED.last_deleted_at
		)
		SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM attempts), (SELECT count(*) FROM orphans)`,
		[]any{cutoff, limit}
}

// PurgeCandidates counts what a purge at cutoff would remove now, deleting
// nothing: `repeaterd purge --dry-run`. Payloads are those every one of whose
// records would go.
func (s *Store) PurgeCandidates(ctx context.Context, cutoff time.Time) (PurgeResult, error) {
	var r PurgeResult
	// A payload goes when no record outside the doomed set uses it: one
	// probe of repeat_records_payload_idx per payload.
	err := s.pool.QueryRow(ctx, `WITH doomed AS MATERIALIZED (
			SELECT id, payload_id FROM repeat_records WHERE `+sqlPurgeable+`
		)
		SELECT (SELECT count(*) FROM doomed),
		       (SELECT count(*) FROM repeat_record_attempts a JOIN doomed d ON d.id = a.record_id),
		       (SELECT count(*) FROM (SELECT DISTINCT payload_id FROM doomed) d
		        WHERE NOT EXISTS (SELECT 1 FROM repeat_records rr
		                          WHERE rr.payload_id = d.payload_id AND NOT (`+sqlPurgeableAs("rr.")+`)))`,
		cutoff).Scan(&r.Records, &r.Attempts, &r.Payloads)
	return r, err
}

// PurgeParams configures Purge.
type PurgeParams struct {
	// Cutoff: terminal records completed before it are purged. Required.
	Cutoff time.Time
	// Batch is the records one transaction deletes at most. Defaults to 1000.
	Batch int
	// Pause is the wait between batches, so the dispatcher and the WAL
	// consumer keep their pace. Defaults to none.
	Pause time.Duration
	// Progress, when set, is told the running total after each batch that
	// deleted something. Defaults to none.
	Progress func(total PurgeResult)
}

// Purge runs PurgeBatch until nothing completed before the cutoff is left.
// It returns what it removed, also when ctx ends or a batch fails.
func (s *Store) Purge(ctx context.Context, p PurgeParams) (PurgeResult, error) {
	if p.Batch <= 0 {
		p.Batch = 1000
	}
	var total PurgeResult
	for {
		r, err := s.PurgeBatch(ctx, p.Cutoff, p.Batch)
		total.Add(r)
		if r.Records > 0 && p.Progress != nil {
			p.Progress(total)
		}
		if err != nil || r.Records < int64(p.Batch) {
			return total, err
		}
		t := time.NewTimer(p.Pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return total, ctx.Err()
		case <-t.C:
		}
	}
}
