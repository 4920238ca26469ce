package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// NotifyChannel is the Postgres channel told when records become ready.
const NotifyChannel = "repeaterd_records"

// RegisterParams is one record to register.
type RegisterParams struct {
	RepeaterID     int64
	Domain         string // optional; must match the repeater's when given
	ContentType    string // defaults to application/json
	Body           []byte
	IdempotencyKey string // optional; unique per repeater
}

// RegisterRecord stores a payload and a record for one repeater. With an
// idempotency key already used on that repeater it returns the existing record
// and created=false, writing nothing.
func (s *Store) RegisterRecord(ctx context.Context, p RegisterParams) (rec *RepeatRecord, created bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var domain string
		var maxAttempts int
		var deleted bool
		// FOR SHARE: a concurrent DeleteRepeater waits for us, then cancels this record too.
		err := tx.QueryRow(ctx, `SELECT domain, max_attempts, is_deleted FROM repeaters WHERE id = $1 FOR SHARE`,
			p.RepeaterID).Scan(&domain, &maxAttempts, &deleted)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return Errorf(ENOTFOUND, "repeater %d not found", p.RepeaterID)
		case err != nil:
			return err
		case deleted:
			return Errorf(ECONFLICT, "repeater %d is deleted", p.RepeaterID)
		case p.Domain != "" && p.Domain != domain:
			return Errorf(EINVALID, "record domain %q does not match repeater %d's domain", p.Domain, p.RepeaterID)
		}
		if p.IdempotencyKey != "" {
			if rec, err = s.recordByKey(ctx, tx, p.RepeaterID, p.IdempotencyKey); err == nil {
				return nil
			} else if ErrorCode(err) != ENOTFOUND {
				return err
			}
		}
		payloadID, err := insertPayload(ctx, tx, domain, p.ContentType, p.Body)
		if err != nil {
			return err
		}
		var key *string
		if p.IdempotencyKey != "" {
			key = &p.IdempotencyKey
		}
		rec = &RepeatRecord{}
		err = tx.QueryRow(ctx, `INSERT INTO repeat_records (domain, repeater_id, payload_id, max_possible_tries, idempotency_key)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (repeater_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
			RETURNING `+recordColumns, domain, p.RepeaterID, payloadID, maxAttempts, key).Scan(rec.scanTargets()...)
		if errors.Is(err, pgx.ErrNoRows) {
			return errKeyRace // a concurrent request with the same key won
		}
		if err != nil {
			return err
		}
		created = true
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, '')`, NotifyChannel)
		return err
	})
	if errors.Is(err, errKeyRace) {
		rec, err = s.recordByKey(ctx, s.pool, p.RepeaterID, p.IdempotencyKey)
		return rec, false, err
	}
	if err != nil {
		return nil, false, err
	}
	return rec, created, nil
}

var errKeyRace = errors.New("idempotency key race")

// FanOut stores one payload and a record for every repeater of the domain
// that is not deleted. A domain without repeaters writes nothing.
func (s *Store) FanOut(ctx context.Context, domain, contentType string, body []byte) ([]RepeatRecord, error) {
	if domain == "" {
		return nil, Errorf(EINVALID, "domain is required")
	}
	var out []RepeatRecord
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		payloadID, err := insertPayload(ctx, tx, domain, contentType, body)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `INSERT INTO repeat_records (domain, repeater_id, payload_id, max_possible_tries)
			SELECT r.domain, r.id, $2, r.max_attempts FROM repeaters r
			WHERE r.domain = $1 AND NOT r.is_deleted
			ORDER BY r.id
			FOR SHARE
			RETURNING `+recordColumns, domain, payloadID)
		if err != nil {
			return err
		}
		out, err = scanRecords(rows)
		if err != nil {
			return err
		}
		if len(out) == 0 {
			return Errorf(ENOTFOUND, "domain %q has no active repeaters", domain)
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, '')`, NotifyChannel)
		return err
	})
	return out, err
}

func insertPayload(ctx context.Context, tx pgx.Tx, domain, contentType string, body []byte) (int64, error) {
	if contentType == "" {
		contentType = "application/json"
	}
	if body == nil {
		body = []byte{}
	}
	var id int64
	err := tx.QueryRow(ctx, `INSERT INTO payloads (domain, content_type, body) VALUES ($1, $2, $3) RETURNING id`,
		domain, contentType, body).Scan(&id)
	return id, err
}

const recordColumns = `id, domain, repeater_id, payload_id, state, registered_at, next_check,
	attempt_count, max_possible_tries, idempotency_key`

func (r *RepeatRecord) scanTargets() []any {
	return []any{&r.ID, &r.Domain, &r.RepeaterID, &r.PayloadID, &r.State, &r.RegisteredAt, &r.NextCheck,
		&r.AttemptCount, &r.MaxPossibleTries, &r.IdempotencyKey}
}

func scanRecords(rows pgx.Rows) ([]RepeatRecord, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (RepeatRecord, error) {
		var r RepeatRecord
		return r, row.Scan(r.scanTargets()...)
	})
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (s *Store) recordByKey(ctx context.Context, q querier, repeaterID int64, key string) (*RepeatRecord, error) {
	var r RepeatRecord
	err := q.QueryRow(ctx, `SELECT `+recordColumns+` FROM repeat_records
		WHERE repeater_id = $1 AND idempotency_key = $2`, repeaterID, key).Scan(r.scanTargets()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, Errorf(ENOTFOUND, "no record with that idempotency key")
	}
	return &r, err
}

// GetRecord returns a record and its attempts, oldest first.
func (s *Store) GetRecord(ctx context.Context, id int64) (*RepeatRecord, []Attempt, error) {
	var r RepeatRecord
	err := s.pool.QueryRow(ctx, `SELECT `+recordColumns+` FROM repeat_records WHERE id = $1`, id).Scan(r.scanTargets()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, Errorf(ENOTFOUND, "record %d not found", id)
	}
	if err != nil {
		return nil, nil, err
	}
	var attempts []Attempt
	err = s.gorm.WithContext(ctx).Where("record_id = ?", id).Order("id").Find(&attempts).Error
	return &r, attempts, err
}

// ListRecordsParams filters ListRecords.
type ListRecordsParams struct {
	RepeaterID int64 // 0 = any
	Domain     string
	State      State // 0 = any
	AfterID    int64 // cursor
	Limit      int   // defaults to 100
}

// ListRecords returns records in id order after the cursor.
func (s *Store) ListRecords(ctx context.Context, p ListRecordsParams) ([]RepeatRecord, error) {
	if p.Limit <= 0 || p.Limit > 1000 {
		p.Limit = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT `+recordColumns+` FROM repeat_records
		WHERE id > $1 AND ($2 = 0 OR repeater_id = $2) AND ($3 = '' OR domain = $3) AND ($4 = 0 OR state = $4)
		ORDER BY id LIMIT $5`, p.AfterID, p.RepeaterID, p.Domain, p.State, p.Limit)
	if err != nil {
		return nil, err
	}
	return scanRecords(rows)
}

// ClaimReadyRecords claims up to limit due ready records of a repeater,
// oldest first, with their payloads, in one round trip. A claim moves
// next_check to now+claimFor, so neither path takes the records again until
// the claim is recorded, released or lapses (a crashed worker).
func (s *Store) ClaimReadyRecords(ctx context.Context, repeaterID int64, limit int, claimFor time.Duration) ([]ReadyRecord, error) {
	rows, err := s.pool.Query(ctx, `WITH picked AS (
			SELECT id FROM repeat_records
			WHERE repeater_id = $1 AND state IN (1, 2) AND next_check <= now()
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
			WHERE id = $1 AND state IN (1, 2)
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
		WHERE id = ANY($1) AND state IN (1, 2)`, ids, claimFor)
	return err
}

// ReleaseClaims makes claimed but unsent records due again at once.
func (s *Store) ReleaseClaims(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, `UPDATE repeat_records SET next_check = now()
		WHERE id = ANY($1) AND state IN (1, 2)`, ids)
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
					state = CASE WHEN o.state = 2 AND r.attempt_count + 1 >= r.max_possible_tries THEN 8 ELSE o.state END,
					next_check = o.next_check
				FROM o WHERE r.id = o.record_id AND r.state IN (1, 2)
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


// RequeueRecord makes a record ready again now; a terminal record gets its
// tries extended by the repeater's max attempts.
func (s *Store) RequeueRecord(ctx context.Context, id int64) (*RepeatRecord, error) {
	var r RepeatRecord
	err := s.pool.QueryRow(ctx, `UPDATE repeat_records rr SET
			state = CASE WHEN rr.state IN (1, 2) THEN rr.state ELSE 2 END,
			max_possible_tries = CASE WHEN rr.state IN (1, 2) THEN rr.max_possible_tries
				ELSE rr.attempt_count + rep.max_attempts END,
			next_check = now()
		FROM repeaters rep
		WHERE rr.id = $1 AND rep.id = rr.repeater_id AND NOT rep.is_deleted
		RETURNING `+prefixed("rr.", recordColumns), id).Scan(r.scanTargets()...)
	if errors.Is(err, pgx.ErrNoRows) {
		if _, _, gerr := s.GetRecord(ctx, id); gerr != nil {
			return nil, gerr
		}
		return nil, Errorf(ECONFLICT, "record %d belongs to a deleted repeater", id)
	}
	if err == nil {
		_, err = s.pool.Exec(ctx, `SELECT pg_notify($1, '')`, NotifyChannel)
	}
	return &r, err
}

// CancelRecord cancels a ready record.
func (s *Store) CancelRecord(ctx context.Context, id int64) (*RepeatRecord, error) {
	var r RepeatRecord
	err := s.pool.QueryRow(ctx, `UPDATE repeat_records SET state = 8 WHERE id = $1 AND state IN (1, 2)
		RETURNING `+recordColumns, id).Scan(r.scanTargets()...)
	if errors.Is(err, pgx.ErrNoRows) {
		if _, _, gerr := s.GetRecord(ctx, id); gerr != nil {
			return nil, gerr
		}
		return nil, Errorf(ECONFLICT, "record %d is not ready", id)
	}
	return &r, err
}

// RegisterMany registers one record per body for a repeater in one
// transaction, for loads (demo, bench, tests). It returns the record ids.
func (s *Store) RegisterMany(ctx context.Context, repeaterID int64, contentType string, bodies [][]byte) ([]int64, error) {
	if contentType == "" {
		contentType = "application/json"
	}
	var ids []int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var domain string
		var maxAttempts int
		var deleted bool
		err := tx.QueryRow(ctx, `SELECT domain, max_attempts, is_deleted FROM repeaters WHERE id = $1 FOR SHARE`,
			repeaterID).Scan(&domain, &maxAttempts, &deleted)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return Errorf(ENOTFOUND, "repeater %d not found", repeaterID)
		case err != nil:
			return err
		case deleted:
			return Errorf(ECONFLICT, "repeater %d is deleted", repeaterID)
		}
		rows, err := tx.Query(ctx, `WITH p AS (
				INSERT INTO payloads (domain, content_type, body)
				SELECT $1, $2, b FROM unnest($3::bytea[]) WITH ORDINALITY AS u(b, n) ORDER BY n
				RETURNING id
			)
			INSERT INTO repeat_records (domain, repeater_id, payload_id, max_possible_tries)
			SELECT $1, $4, p.id, $5 FROM p ORDER BY p.id
			RETURNING id`, domain, contentType, bodies, repeaterID, maxAttempts)
		if err != nil {
			return err
		}
		if ids, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, '')`, NotifyChannel)
		return err
	})
	return ids, err
}
