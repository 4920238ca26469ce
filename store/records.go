package store

import (
	"cmp"
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
)

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
// and created=false, writing nothing; if that record's payload differs from
// p's, it returns the record with an ECONFLICT naming it.
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
				return samePayload(ctx, tx, rec, p)
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
		return NotifyRecords(ctx, tx)
	})
	if errors.Is(err, errKeyRace) {
		if rec, err = s.recordByKey(ctx, s.pool, p.RepeaterID, p.IdempotencyKey); err == nil {
			err = samePayload(ctx, s.pool, rec, p)
		}
	}
	if err != nil {
		return rec, false, err // rec is the existing record on a key reused with another payload
	}
	return rec, created, nil
}

var errKeyRace = errors.New("idempotency key race")

// samePayload refuses a reused idempotency key whose request carries
// another payload (bytes or content type) than the record's: answering
// with the first record would drop the second payload silently. The
// ECONFLICT names the existing record (Stripe's convention).
func samePayload(ctx context.Context, q querier, rec *RepeatRecord, p RegisterParams) error {
	var same bool
	err := q.QueryRow(ctx, `SELECT body = $2 AND content_type = $3 FROM payloads WHERE id = $1`,
		rec.PayloadID, nonNil(p.Body), cmp.Or(p.ContentType, "application/json")).Scan(&same)
	if err != nil || same {
		return err
	}
	return Errorf(ECONFLICT, "idempotency key %q was used for record %d with a different payload", p.IdempotencyKey, rec.ID)
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// FanOut stores one payload and a record for every repeater of the domain
// that is not deleted. A domain without repeaters writes nothing.
func (s *Store) FanOut(ctx context.Context, domain, contentType string, body []byte) ([]RepeatRecord, error) {
	if err := ValidateDomain(domain); err != nil {
		return nil, err
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
		return NotifyRecords(ctx, tx)
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
	attempt_count, max_possible_tries, idempotency_key, claim_owner, requested_state`

func (r *RepeatRecord) scanTargets() []any {
	return []any{&r.ID, &r.Domain, &r.RepeaterID, &r.PayloadID, &r.State, &r.RegisteredAt, &r.NextCheck,
		&r.AttemptCount, &r.MaxPossibleTries, &r.IdempotencyKey, &r.ClaimOwner, &r.RequestedState}
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
		return NotifyRecords(ctx, tx)
	})
	return ids, err
}
