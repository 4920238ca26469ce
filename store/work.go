package store

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// DefaultPruneLimit bounds how many repeaters one PruneIdleRepeaters call
// takes out of the work set.
const DefaultPruneLimit = 1000

// pruneHook, when set (tests), runs at each stage of a prune: "candidates"
// (found, nothing locked yet) and "locked" (locks held, before the second
// look for ready records).
var pruneHook func(stage string)

// PruneIdleRepeaters takes out of the work set (repeater_work, migration
// 00120) up to limit repeaters that have no ready record, and returns their
// ids. Candidates are found without locks (usually none); only then, in a
// transaction, are their repeaters locked FOR UPDATE SKIP LOCKED — which
// skips any repeater whose record writer has not committed, since writers
// hold FOR KEY SHARE on it — and checked again in a later statement, whose
// snapshot sees every writer that committed before the lock. A writer that
// comes after the lock waits for this commit, then adds the entry again
// itself. So a ready record's repeater never leaves the
// set.
func (s *Store) PruneIdleRepeaters(ctx context.Context, limit int) ([]int64, error) {
	if limit <= 0 {
		limit = DefaultPruneLimit
	}
	rows, err := s.pool.Query(ctx, `SELECT w.repeater_id FROM repeater_work w
		WHERE NOT EXISTS (SELECT 1 FROM repeat_records rr
			WHERE rr.repeater_id = w.repeater_id AND rr.`+sqlReady+`)
		ORDER BY 1 LIMIT $1`, limit)
	candidates, err := collectIDs(rows, err)
	if err != nil || len(candidates) == 0 {
		return nil, err
	}
	if pruneHook != nil {
		pruneHook("candidates")
	}
	var pruned []int64
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id FROM repeaters WHERE id = ANY($1)
			ORDER BY id FOR UPDATE SKIP LOCKED`, candidates)
		locked, err := collectIDs(rows, err)
		if err != nil || len(locked) == 0 {
			return err
		}
		if pruneHook != nil {
			pruneHook("locked")
		}
		// A new statement: its snapshot is taken after the locks are held.
		rows, err = tx.Query(ctx, `DELETE FROM repeater_work w
			WHERE w.repeater_id = ANY($1) AND NOT EXISTS (SELECT 1 FROM repeat_records rr
				WHERE rr.repeater_id = w.repeater_id AND rr.`+sqlReady+`)
			RETURNING w.repeater_id`, locked)
		pruned, err = collectIDs(rows, err)
		return err
	})
	return pruned, err
}

func collectIDs(rows pgx.Rows, err error) ([]int64, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}
