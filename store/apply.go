package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// BatchDecision is update_repeater's verdict on a repeater after a batch.
type BatchDecision struct {
	NextAttemptAt    *time.Time // nil = not backed off
	BackoffCount     int
	EffectiveWorkers int
	// The learned pace (pacing.go in repeaters): requests/s (0 = none), clean
	// batches in a row while paced, and whether this batch had a success.
	PacePerS  float64
	PaceClean int
	Flowing   bool
}

// Decide turns a repeater's batch state and a batch's summary into the
// repeater's next state. The repeater it is given holds only its batch
// state: ID, Domain, MaxWorkers and the columns a BatchDecision writes.
type Decide func(r *Repeater, sum BatchSummary) BatchDecision

// Lock strengths on a repeater's row. Registrations hold FOR KEY SHARE (as
// their foreign key check does); the engine's writes of a repeater's batch
// state take FOR NO KEY UPDATE, which does not wait for them; only
// DeleteRepeater takes FOR UPDATE, so that it waits for registrations in
// flight and then cancels their records too.
//
// sqlLockBatchState reads a repeater's batch state so; given $2, only while
// $2 is its pending batch.
const sqlLockBatchState = `SELECT id, domain, max_workers, next_attempt_at, backoff_count,
		effective_workers, pace_per_s, pace_clean, flowing, pending_batch, pending_summary
	FROM repeaters WHERE id = $1 AND ($2::text IS NULL OR pending_batch = $2) FOR NO KEY UPDATE`

// sqlApplyDecision writes a verdict and clears the repeater's batch mark;
// $8 says the batch is being recorded now (the mark's last_attempt_at).
const sqlApplyDecision = `UPDATE repeaters SET next_attempt_at = $2, backoff_count = $3,
		effective_workers = $4, pace_per_s = $5, pace_clean = $6, flowing = $7,
		pending_batch = NULL, pending_summary = NULL, updated_at = now(),
		last_attempt_at = CASE WHEN $8 THEN now() ELSE last_attempt_at END
	WHERE id = $1`

// batchState is a repeater's row as sqlLockBatchState reads it.
type batchState struct {
	found   bool
	rep     Repeater
	summary BatchSummary // of the pending batch, if any
}

// queueLockBatchState queues sqlLockBatchState into st; a non-empty token
// reads the row only while token is its pending batch.
func queueLockBatchState(b *pgx.Batch, repeaterID int64, token string, st *batchState) {
	var pending *string
	if token != "" {
		pending = &token
	}
	b.Queue(sqlLockBatchState, repeaterID, pending).Query(func(rows pgx.Rows) error {
		r := &st.rep
		var summary []byte
		_, err := pgx.ForEachRow(rows, []any{&r.ID, &r.Domain, &r.MaxWorkers, &r.NextAttemptAt, &r.BackoffCount,
			&r.EffectiveWorkers, &r.PacePerS, &r.PaceClean, &r.Flowing, &r.PendingBatch, &summary}, func() error {
			st.found = true
			if summary != nil {
				return json.Unmarshal(summary, &st.summary)
			}
			return nil
		})
		return err
	})
}

func queueDecision(b *pgx.Batch, repeaterID int64, d BatchDecision, recordedNow bool) {
	b.Queue(sqlApplyDecision, repeaterID, d.NextAttemptAt, d.BackoffCount, d.EffectiveWorkers,
		d.PacePerS, d.PaceClean, d.Flowing, recordedNow)
}

// ApplyBatch applies decide's verdict to the repeater once per batch token:
// it runs only while the repeater's pending batch is token, and clears it in
// the same transaction (two round trips). It reports whether it applied
// anything.
func (s *Store) ApplyBatch(ctx context.Context, repeaterID int64, token string, decide Decide) (bool, error) {
	var st batchState
	applied := false
	err := s.inTx(ctx, func(b *pgx.Batch) {
		queueLockBatchState(b, repeaterID, token, &st)
	}, func(b *pgx.Batch) {
		if st.found {
			queueDecision(b, repeaterID, decide(&st.rep, st.summary), false)
			applied = true
		}
	})
	if err != nil {
		return false, fmt.Errorf("store: apply batch: %w", err)
	}
	return applied, nil
}

// RecordAndApply is RecordBatch for a batch that sent something, applying
// it to its repeater in the same transaction: decide gets the repeater's
// batch state (locked) and the mark's summary, and its verdict commits with
// the outcomes, so no recorded batch waits for its update. Two round trips
// and one commit, where recording and then applying took five and two. If
// another batch's mark is pending (its update is late), this batch neither
// applies nor marks (applied is false), as RecordBatch would not mark: the
// next batch applies the earlier one first.
func (s *Store) RecordAndApply(ctx context.Context, p RecordBatchParams, decide Decide) (changed int, applied bool, err error) {
	if p.Mark == nil || len(p.Outcomes) == 0 {
		return 0, false, Errorf(EINVALID, "a batch applied as it is recorded needs outcomes and a mark")
	}
	args, err := outcomeArgs(p.Outcomes)
	if err != nil {
		return 0, false, err
	}
	var st batchState
	err = s.inTx(ctx, func(b *pgx.Batch) {
		// The repeater's row before its records, as DeleteRepeater locks
		// them: the other order deadlocks with a delete.
		queueLockBatchState(b, p.Mark.RepeaterID, "", &st)
		if len(p.Unsent) > 0 {
			b.Queue(sqlReleaseClaims, p.Unsent, p.Owner)
		}
		b.Queue(sqlRecordOutcomes, args...).QueryRow(func(row pgx.Row) error { return row.Scan(&changed) })
	}, func(b *pgx.Batch) {
		pending := st.rep.PendingBatch
		if st.found && (pending == nil || *pending == p.Mark.Token) {
			queueDecision(b, p.Mark.RepeaterID, decide(&st.rep, p.Mark.Summary), true)
			applied = true
		}
	})
	if err != nil {
		return 0, false, fmt.Errorf("store: record and apply batch: %w", err)
	}
	return changed, applied, nil
}

// inTx runs a transaction of two pipelined round trips on one connection:
// BEGIN and first's statements, then then's (queued once first's results
// are in) and COMMIT. On an error the transaction is rolled back.
func (s *Store) inTx(ctx context.Context, first, then func(*pgx.Batch)) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	first(b)
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		rollback(conn.Conn())
		return err
	}
	b = &pgx.Batch{}
	then(b)
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		rollback(conn.Conn())
		return err
	}
	return nil
}
