package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ClaimReadyRecords claims up to limit due ready records of a repeater,
// oldest first, with their payloads, in one round trip. A claim moves
// next_check to now+claimFor, so neither path takes the records again until
// the claim is recorded, released or lapses (a crashed worker).
func (s *Store) ClaimReadyRecords(ctx context.Context, repeaterID int64, limit int, claimFor time.Duration) ([]ReadyRecord, error) {
	rows, err := s.pool.Query(ctx, `WITH picked AS (
			SELECT id FROM repeat_records
			WHERE repeater_id = $1 AND `+sqlReady+` AND next_check <= now()
			ORDER BY registered_at, id
			LIMIT $2
			FOR UPDATE SKIP LOCKED
		), claimed AS (
			UPDATE repeat_records r SET next_check = now() + $3::interval
			FROM picked WHERE r.id = picked.id
			RETURNING r.*
		)
		SELECT c.id, c.domain, c.repeater_id, c.payload_id, c.state, c.registered_at, c.next_check,
			c.attempt_count, c.max_possible_tries, c.idempotency_key, p.content_type, p.body
		FROM claimed c JOIN payloads p ON p.id = c.payload_id
		ORDER BY c.registered_at, c.id`, repeaterID, limit, claimFor)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (ReadyRecord, error) {
		var r ReadyRecord
		return r, row.Scan(append(r.scanTargets(), &r.ContentType, &r.Body)...)
	})
}

// ClaimRecord claims one due ready record for the legacy sender.
func (s *Store) ClaimRecord(ctx context.Context, id int64, claimFor time.Duration) (*ReadyRecord, error) {
	var r ReadyRecord
	err := s.pool.QueryRow(ctx, `WITH claimed AS (
			UPDATE repeat_records SET next_check = now() + $2::interval
			WHERE id = $1 AND `+sqlReady+`
			RETURNING *
		)
		SELECT c.id, c.domain, c.repeater_id, c.payload_id, c.state, c.registered_at, c.next_check,
			c.attempt_count, c.max_possible_tries, c.idempotency_key, p.content_type, p.body
		FROM claimed c JOIN payloads p ON p.id = c.payload_id`, id, claimFor).
		Scan(append(r.scanTargets(), &r.ContentType, &r.Body)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, Errorf(ENOTFOUND, "record %d is not ready", id)
	}
	return &r, err
}

// ExtendClaims pushes the claim on still-ready records forward.
func (s *Store) ExtendClaims(ctx context.Context, ids []int64, claimFor time.Duration) error {
	_, err := s.pool.Exec(ctx, `UPDATE repeat_records SET next_check = now() + $2::interval
		WHERE id = ANY($1) AND `+sqlReady, ids, claimFor)
	return err
}

// ReleaseClaims makes claimed but unsent records due again at once.
func (s *Store) ReleaseClaims(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, `UPDATE repeat_records SET next_check = now()
		WHERE id = ANY($1) AND `+sqlReady, ids)
	return err
}

// BatchMark ties recorded outcomes to the process_repeater batch that made
// them, so a retried task finds its batch already recorded.
type BatchMark struct {
	RepeaterID int64
	Token      string
	Summary    BatchSummary
}

// RecordOutcomes writes every attempt and state change of a batch in one
// transaction, and the batch mark when given. Only records still ready are
// changed; a Fail past the record's tries becomes Cancelled. A Fail's
// next_check is its outcome's NextCheck (legacy retry) or now. It returns
// how many records changed.
func (s *Store) RecordOutcomes(ctx context.Context, outcomes []Outcome, mark *BatchMark) (int, error) {
	n := len(outcomes)
	ids := make([]int64, n)
	states := make([]int16, n)
	codes := make([]int32, n)
	msgs := make([]string, n)
	durs := make([]int32, n)
	ats := make([]time.Time, n)
	nexts := make([]time.Time, n)
	now := time.Now()
	for i, o := range outcomes {
		if o.State.Ready() && o.State != StateFail || o.State == StateCancelled {
			return 0, Errorf(EINVALID, "outcome state %s is not an attempt result", o.State)
		}
		ids[i], states[i], codes[i] = o.RecordID, int16(o.State), int32(o.StatusCode)
		msgs[i], durs[i] = Truncate(o.Message, 1024, ""), int32(o.Duration/time.Millisecond)
		ats[i], nexts[i] = o.AttemptedAt, o.NextCheck
		if ats[i].IsZero() {
			ats[i] = now
		}
		if nexts[i].IsZero() {
			nexts[i] = now
		}
	}
	var changed int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `WITH o AS (
				SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::int[], $4::text[], $5::int[], $6::timestamptz[], $7::timestamptz[])
					AS o(record_id, state, status_code, message, duration_ms, at, next_check)
			), changed AS (
				UPDATE repeat_records r SET
					attempt_count = r.attempt_count + 1,
					state = CASE WHEN o.state = `+sqlStateFail+` AND r.attempt_count + 1 >= r.max_possible_tries
						THEN `+sqlStateCancelled+` ELSE o.state END,
					next_check = o.next_check
				FROM o WHERE r.id = o.record_id AND r.`+sqlReady+`
				RETURNING r.id
			), attempts AS (
				INSERT INTO repeat_record_attempts (record_id, state, status_code, message, duration_ms, created_at)
				SELECT o.record_id, o.state, o.status_code, o.message, o.duration_ms, o.at
				FROM o JOIN changed c ON c.id = o.record_id
			)
			SELECT count(*) FROM changed`, ids, states, codes, msgs, durs, ats, nexts).Scan(&changed)
		if err != nil {
			return err
		}
		if mark == nil {
			return nil
		}
		_, err = tx.Exec(ctx, `UPDATE repeaters SET pending_batch = $2, pending_summary = $3, last_attempt_at = now()
			WHERE id = $1`, mark.RepeaterID, mark.Token, mark.Summary)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: record outcomes: %w", err)
	}
	return changed, nil
}
