package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The claim model, one for both paths. A record is sent only under a claim:
// claim_owner names the holder (a batch or a legacy send) and next_check is
// the claim's expiry. A claim is taken only on a due ready record, so only if
// the record is unclaimed or its claim lapsed. Outcomes, extensions and
// releases act only while the writer's claim still holds (the fencing check
// is in the same statement). An operator's requeue or cancel of a claimed
// record is kept in requested_state and applied when the claim ends.

// readyRecordColumns are a claimed record's columns and its payload, for the
// claim queries' final SELECT over their "claimed" CTE.
const readyRecordColumns = `c.id, c.domain, c.repeater_id, c.payload_id, c.state, c.registered_at, c.next_check,
	c.attempt_count, c.max_possible_tries, c.idempotency_key, c.claim_owner, c.requested_state,
	p.content_type, p.body`

// sqlSettleRequests applies the requests of records whose claim lapsed with a
// request waiting (its holder died): a cancel cancels, a requeue makes the
// record due now. $1 is a repeater id, or NULL for all.
const sqlSettleRequests = `UPDATE repeat_records SET
		state = CASE WHEN requested_state = ` + sqlStateCancelled + ` THEN ` + sqlStateCancelled + ` ELSE state END,
		requested_state = NULL, claim_owner = NULL, next_check = now()
	WHERE requested_state IS NOT NULL AND ($1::bigint IS NULL OR repeater_id = $1)
	  AND ` + sqlReady + ` AND next_check <= now()`

func collectReady(rows pgx.Rows) ([]ReadyRecord, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (ReadyRecord, error) {
		var r ReadyRecord
		return r, row.Scan(append(r.scanTargets(), &r.ContentType, &r.Body)...)
	})
}

// sqlClaimReady claims up to $2 due ready records of repeater $1 for $4
// until now+$3, oldest first, with their payloads. Records with a request
// waiting are left to sqlSettleRequests, which runs first.
const sqlClaimReady = `WITH picked AS (
		SELECT id FROM repeat_records
		WHERE repeater_id = $1 AND ` + sqlReady + ` AND next_check <= now()
		ORDER BY registered_at, id
		LIMIT $2
		FOR UPDATE SKIP LOCKED
	), claimed AS (
		UPDATE repeat_records r SET next_check = now() + $3::interval, claim_owner = $4
		FROM picked WHERE r.id = picked.id
		RETURNING r.*
	)
	SELECT ` + readyRecordColumns + `
	FROM claimed c JOIN payloads p ON p.id = c.payload_id
	ORDER BY c.registered_at, c.id`

// ClaimReadyRecords claims for owner up to limit due ready records of a
// repeater, oldest first, with their payloads, until now+claimFor. Records
// with an operator's request waiting are settled first, not claimed. Both
// statements go in one round trip and one (implicit) transaction.
func (s *Store) ClaimReadyRecords(ctx context.Context, repeaterID int64, limit int, owner string, claimFor time.Duration) ([]ReadyRecord, error) {
	if owner == "" {
		return nil, Errorf(EINVALID, "a claim needs an owner")
	}
	b := &pgx.Batch{}
	b.Queue(sqlSettleRequests, repeaterID)
	b.Queue(sqlClaimReady, repeaterID, limit, claimFor, owner)
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	out, err := collectReady(rows)
	if err != nil {
		return nil, err
	}
	return out, br.Close()
}

// ClaimRecord turns the legacy path's queued claim (owner, taken by
// check_repeaters) into a sending claim until now+claimFor, with the payload.
// It fails with ENOTFOUND when the claim no longer holds: another path took
// the record, it was recorded, or a cancel is waiting.
func (s *Store) ClaimRecord(ctx context.Context, id int64, owner string, claimFor time.Duration) (*ReadyRecord, error) {
	rows, err := s.pool.Query(ctx, `WITH claimed AS (
			UPDATE repeat_records SET next_check = now() + $3::interval
			WHERE id = $1 AND `+sqlReady+` AND claim_owner = $2
			  AND requested_state IS DISTINCT FROM `+sqlStateCancelled+`
			RETURNING *
		)
		SELECT `+readyRecordColumns+` FROM claimed c JOIN payloads p ON p.id = c.payload_id`, id, owner, claimFor)
	if err != nil {
		return nil, err
	}
	recs, err := collectReady(rows)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, Errorf(ENOTFOUND, "record %d is not claimed by %s", id, owner)
	}
	return &recs[0], nil
}

// ExtendClaims pushes owner's claims on still-ready records forward.
func (s *Store) ExtendClaims(ctx context.Context, ids []int64, owner string, claimFor time.Duration) error {
	_, err := s.pool.Exec(ctx, `UPDATE repeat_records SET next_check = now() + $3::interval
		WHERE id = ANY($1) AND claim_owner = $2 AND `+sqlReady, ids, owner, claimFor)
	return err
}

// sqlReleaseClaims ends owner $2's claims on records $1 it did not send.
const sqlReleaseClaims = `UPDATE repeat_records SET
		state = CASE WHEN requested_state = ` + sqlStateCancelled + ` THEN ` + sqlStateCancelled + ` ELSE state END,
		claim_owner = NULL, requested_state = NULL, next_check = now()
	WHERE id = ANY($1) AND claim_owner = $2 AND ` + sqlReady

// ReleaseClaims ends owner's claims on records it did not send: they are due
// again at once, and a waiting cancel takes effect.
func (s *Store) ReleaseClaims(ctx context.Context, ids []int64, owner string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, sqlReleaseClaims, ids, owner)
	return err
}

// BatchMark ties recorded outcomes to the process_repeater batch that made
// them, so a retried task finds its batch already recorded.
type BatchMark struct {
	RepeaterID int64
	Token      string
	Summary    BatchSummary
}

// sqlRecordOutcomes writes a set of outcomes. Every outcome becomes an
// attempt row and counts toward attempt_count (the delivery happened); only
// an outcome whose claim still holds (fenced: the record is ready and its
// claim_owner is the outcome's owner, NULL for "") changes the record's state
// and ends the claim, honouring a waiting request: a cancel turns a failure
// into Cancelled, a requeue makes a failure due now with its tries extended.
// A Fail past the record's tries becomes Cancelled. It returns how many
// records changed state.
const sqlRecordOutcomes = `WITH o AS (
		SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::int[], $4::text[], $5::int[],
			$6::timestamptz[], $7::timestamptz[], $8::text[])
			AS o(record_id, state, status_code, message, duration_ms, at, next_check, owner)
	), cur AS (
		SELECT r.id, r.requested_state,
			(r.` + sqlReady + ` AND r.claim_owner IS NOT DISTINCT FROM NULLIF(o.owner, '')) AS holds
		FROM repeat_records r JOIN o ON o.record_id = r.id
		ORDER BY r.id
		FOR UPDATE OF r
	), changed AS (
		UPDATE repeat_records r SET
			attempt_count = r.attempt_count + 1,
			state = CASE
				WHEN NOT c.holds THEN r.state
				WHEN o.state <> ` + sqlStateFail + ` THEN o.state
				WHEN c.requested_state = ` + sqlStateCancelled + ` THEN ` + sqlStateCancelled + `
				WHEN c.requested_state IS NULL AND r.attempt_count + 1 >= r.max_possible_tries THEN ` + sqlStateCancelled + `
				ELSE o.state END,
			max_possible_tries = CASE WHEN c.holds AND c.requested_state = 1
				THEN greatest(r.max_possible_tries, r.attempt_count + 1 + rep.max_attempts) ELSE r.max_possible_tries END,
			next_check = CASE WHEN NOT c.holds THEN r.next_check
				WHEN c.requested_state = 1 THEN now() ELSE o.next_check END,
			claim_owner = CASE WHEN c.holds THEN NULL ELSE r.claim_owner END,
			requested_state = CASE WHEN c.holds THEN NULL ELSE r.requested_state END
		FROM o JOIN cur c ON c.id = o.record_id, repeaters rep
		WHERE r.id = o.record_id AND rep.id = r.repeater_id
		RETURNING r.id, c.holds
	), attempts AS (
		INSERT INTO repeat_record_attempts (record_id, state, status_code, message, duration_ms, created_at)
		SELECT o.record_id, o.state, o.status_code, o.message, o.duration_ms, o.at
		FROM o JOIN changed c ON c.id = o.record_id
	)
	SELECT count(*) FILTER (WHERE holds) FROM changed`

// sqlMarkBatch writes a batch's mark. A batch never overwrites another
// batch's unapplied mark: the worker applies a stale one before it sends
// (Processor.ProcessBatch).
const sqlMarkBatch = `UPDATE repeaters SET pending_batch = $2, pending_summary = $3, last_attempt_at = now()
	WHERE id = $1 AND (pending_batch IS NULL OR pending_batch = $2)`

// RecordOutcomes writes every attempt of a batch, and the state changes its
// claims still allow, in one transaction, with the batch mark when given.
// A Fail's next_check is its outcome's NextCheck (a retry's due time) or
// now. It returns how many records changed state.
func (s *Store) RecordOutcomes(ctx context.Context, outcomes []Outcome, mark *BatchMark) (int, error) {
	return s.RecordBatch(ctx, RecordBatchParams{Outcomes: outcomes, Mark: mark})
}

// RecordBatchParams is what a batch writes when it ends.
type RecordBatchParams struct {
	Outcomes []Outcome
	// Mark, when set, is written with the outcomes.
	Mark *BatchMark
	// Unsent are records claimed by Owner and never sent: released first.
	Unsent []int64
	Owner  string
}

// RecordBatch releases a batch's unsent claims and writes its outcomes and
// mark, as ReleaseClaims and RecordOutcomes would, in one round trip and one
// transaction (one commit, so one WAL flush, per batch). It returns how many
// records changed state. A mark waits for ApplyBatch; the engine records a
// batch that sent something with RecordAndApply instead, which applies it in
// the same transaction.
func (s *Store) RecordBatch(ctx context.Context, p RecordBatchParams) (int, error) {
	b := &pgx.Batch{}
	if len(p.Unsent) > 0 {
		b.Queue(sqlReleaseClaims, p.Unsent, p.Owner)
	}
	if len(p.Outcomes) > 0 {
		args, err := outcomeArgs(p.Outcomes)
		if err != nil {
			return 0, err
		}
		b.Queue(sqlRecordOutcomes, args...)
		if p.Mark != nil {
			b.Queue(sqlMarkBatch, p.Mark.RepeaterID, p.Mark.Token, p.Mark.Summary)
		}
	}
	if b.Len() == 0 {
		return 0, nil
	}
	// The statements of one batch run in one implicit transaction: a
	// failure of one undoes the others.
	var changed int
	err := func() error {
		br := s.pool.SendBatch(ctx, b)
		defer br.Close()
		for _, q := range b.QueuedQueries {
			if q.SQL == sqlRecordOutcomes {
				if err := br.QueryRow().Scan(&changed); err != nil {
					return err
				}
				continue
			}
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		return br.Close()
	}()
	if err != nil {
		return 0, fmt.Errorf("store: record outcomes: %w", err)
	}
	return changed, nil
}

// outcomeArgs are sqlRecordOutcomes' arguments, one array per column.
func outcomeArgs(outcomes []Outcome) ([]any, error) {
	n := len(outcomes)
	ids := make([]int64, n)
	states := make([]int16, n)
	codes := make([]int32, n)
	msgs := make([]string, n)
	durs := make([]int32, n)
	ats := make([]time.Time, n)
	nexts := make([]time.Time, n)
	owners := make([]string, n)
	now := time.Now()
	for i, o := range outcomes {
		if o.State.Ready() && o.State != StateFail || o.State == StateCancelled {
			return nil, Errorf(EINVALID, "outcome state %s is not an attempt result", o.State)
		}
		ids[i], states[i], codes[i] = o.RecordID, int16(o.State), int32(o.StatusCode)
		msgs[i], durs[i] = Truncate(o.Message, 1024, ""), int32(o.Duration/time.Millisecond)
		ats[i], nexts[i], owners[i] = o.AttemptedAt, o.NextCheck, o.Owner
		if ats[i].IsZero() {
			ats[i] = now
		}
		if nexts[i].IsZero() {
			nexts[i] = now
		}
	}
	return []any{ids, states, codes, msgs, durs, ats, nexts, owners}, nil
}

// RecordLimit is a claimed record's repeater and the limits it sends under.
type RecordLimit struct {
	RecordID      int64
	RepeaterID    int64
	Domain        string
	RateLimitPerS float64
	RateBurst     int
}

// ClaimedLimits returns, for each of ids, its repeater's rate limit: what
// check_repeaters needs to schedule legacy sends under the same limits as
// batches.
func (s *Store) ClaimedLimits(ctx context.Context, ids []int64) ([]RecordLimit, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT rr.id, r.id, r.domain, r.rate_limit_per_s, r.rate_burst
		FROM repeat_records rr JOIN repeaters r ON r.id = rr.repeater_id
		WHERE rr.id = ANY($1) ORDER BY rr.registered_at, rr.id`, ids)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (RecordLimit, error) {
		var l RecordLimit
		return l, row.Scan(&l.RecordID, &l.RepeaterID, &l.Domain, &l.RateLimitPerS, &l.RateBurst)
	})
}

// PostponeRecords ends owner's claims on ids, due again at at: records
// claimed that may not be sent yet.
func (s *Store) PostponeRecords(ctx context.Context, ids []int64, owner string, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, `UPDATE repeat_records SET next_check = $3, claim_owner = NULL
		WHERE id = ANY($1) AND claim_owner = $2 AND `+sqlReady, ids, owner, at)
	return err
}
