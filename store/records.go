package store

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
)

// RegisterParams is one record to register.
type RegisterParams struct {
	RepeaterID     int64
	ContentType    string // defaults to application/json
	Body           []byte
	IdempotencyKey string // optional; unique per repeater
	// Sees says whether the caller may write to a domain; a repeater of a
	// domain it does not see is ENOTFOUND. Nil sees every domain.
	Sees func(domain string) bool
}

// RegisterRecord stores a payload and a record for one repeater, in a
// transaction it may share with concurrent calls (coalesce.go). With an
// idempotency key already used on that repeater it returns the existing
// record and created=false, writing nothing; if that record's payload
// differs from p's, it returns the record with an ECONFLICT naming it.
func (s *Store) RegisterRecord(ctx context.Context, p RegisterParams) (rec *RepeatRecord, created bool, err error) {
	sees := p.Sees
	if sees == nil {
		sees = func(string) bool { return true }
	}
	res, err := s.registerCoalesced(ctx, BatchItem{
		RepeaterID: p.RepeaterID, ContentType: p.ContentType, Body: p.Body, IdempotencyKey: p.IdempotencyKey,
	}, sees)
	if err != nil {
		return nil, false, err
	}
	return res.Record, res.Created, res.Err
}

var errKeyRace = errors.New("idempotency key race")

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// FanOut stores one payload and a record for every repeater of the domain
// that is not deleted and takes untyped events matching its filter
// (PublishEvent without a type or key). A domain without repeaters writes
// nothing.
func (s *Store) FanOut(ctx context.Context, domain, contentType string, body []byte) ([]RepeatRecord, error) {
	recs, _, err := s.PublishEvent(ctx, EventParams{Domain: domain, ContentType: contentType, Body: body})
	return recs, err
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
		err := tx.QueryRow(ctx, `SELECT domain, max_attempts, is_deleted FROM repeaters WHERE id = $1 FOR KEY SHARE`,
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
