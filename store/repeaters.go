package store

import (
	"context"
	"errors"
	"time"

	"gorm.io/gorm"
)

// RepeaterDefaults fills zero fields of a new repeater.
func (r *Repeater) withDefaults() {
	if r.RequestMethod == "" {
		r.RequestMethod = "POST"
	}
	if r.MaxAttempts == 0 {
		r.MaxAttempts = 6
	}
	if r.TimeoutMS == 0 {
		r.TimeoutMS = 30000
	}
	if r.Headers == nil {
		r.Headers = map[string]string{}
	}
	if r.BackoffCodes == nil {
		r.BackoffCodes = Int32Array{}
	}
}

func (r *Repeater) validate() error {
	switch {
	case r.Domain == "":
		return Errorf(EINVALID, "repeater: domain is required")
	case r.URL == "":
		return Errorf(EINVALID, "repeater: url is required")
	case r.RequestMethod != "POST" && r.RequestMethod != "PUT" && r.RequestMethod != "PATCH":
		return Errorf(EINVALID, "repeater: request_method must be POST, PUT or PATCH")
	case r.MaxWorkers < 0, r.RateBurst < 0, r.RateLimitPerS < 0:
		return Errorf(EINVALID, "repeater: max_workers, rate_limit_per_s and rate_burst must not be negative")
	case r.MaxAttempts < 1:
		return Errorf(EINVALID, "repeater: max_attempts must be at least 1")
	case r.TimeoutMS < 1:
		return Errorf(EINVALID, "repeater: timeout_ms must be positive")
	}
	return nil
}

// CreateRepeater inserts r and fills its ID and timestamps. URL safety is the
// caller's to check (the sender owns that policy).
func (s *Store) CreateRepeater(ctx context.Context, r *Repeater) error {
	r.withDefaults()
	if err := r.validate(); err != nil {
		return err
	}
	return s.gorm.WithContext(ctx).Omit("NextAttemptAt", "LastAttemptAt", "PendingBatch", "PendingSummary").Create(r).Error
}

// GetRepeater returns the repeater with the given id, deleted ones included.
func (s *Store) GetRepeater(ctx context.Context, id int64) (*Repeater, error) {
	var r Repeater
	err := s.gorm.WithContext(ctx).First(&r, id).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, Errorf(ENOTFOUND, "repeater %d not found", id)
	}
	return &r, err
}

// ListRepeatersParams filters ListRepeaters.
type ListRepeatersParams struct {
	Domain         string // "" = every domain
	IncludeDeleted bool
	AfterID        int64 // cursor: ids greater than this
	Limit          int   // defaults to 100
}

// ListRepeaters returns repeaters in id order.
func (s *Store) ListRepeaters(ctx context.Context, p ListRepeatersParams) ([]Repeater, error) {
	q := s.gorm.WithContext(ctx).Where("id > ?", p.AfterID).Order("id")
	if p.Domain != "" {
		q = q.Where("domain = ?", p.Domain)
	}
	if !p.IncludeDeleted {
		q = q.Where("NOT is_deleted")
	}
	if p.Limit <= 0 {
		p.Limit = 100
	}
	var out []Repeater
	return out, q.Limit(p.Limit).Find(&out).Error
}

// UpdateRepeater saves r's settings (not its backoff state). Deleted
// repeaters cannot be changed.
func (s *Store) UpdateRepeater(ctx context.Context, r *Repeater) error {
	r.withDefaults()
	if err := r.validate(); err != nil {
		return err
	}
	res := s.gorm.WithContext(ctx).Model(r).Where("NOT is_deleted").
		Select("Name", "URL", "RequestMethod", "Headers", "SigningSecret", "MaxWorkers", "RateLimitPerS",
			"RateBurst", "BackoffCodes", "MaxAttempts", "TimeoutMS", "UpdatedAt").
		Updates(r)
	return s.oneRow(ctx, res, r.ID)
}

// SetPaused pauses or resumes a repeater.
func (s *Store) SetPaused(ctx context.Context, id int64, paused bool) error {
	res := s.gorm.WithContext(ctx).Model(&Repeater{}).Where("id = ? AND NOT is_deleted", id).
		Updates(map[string]any{"is_paused": paused, "updated_at": time.Now()})
	return s.oneRow(ctx, res, id)
}

// DeleteRepeater marks a repeater deleted; its ready records are cancelled
// in the same transaction so none is stranded.
func (s *Store) DeleteRepeater(ctx context.Context, id int64) error {
	return s.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Model(&Repeater{}).Where("id = ? AND NOT is_deleted", id).
			Updates(map[string]any{"is_deleted": true, "updated_at": time.Now()})
		if err := s.oneRow(ctx, res, id); err != nil {
			return err
		}
		return tx.Exec(`UPDATE repeat_records SET state = ? WHERE repeater_id = ? AND state IN (1, 2)`,
			StateCancelled, id).Error
	})
}

// oneRow turns "no row changed" into ENOTFOUND or ECONFLICT (deleted).
func (s *Store) oneRow(ctx context.Context, res *gorm.DB, id int64) error {
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 1 {
		return nil
	}
	r, err := s.GetRepeater(ctx, id)
	if err != nil {
		return err
	}
	if r.IsDeleted {
		return Errorf(ECONFLICT, "repeater %d is deleted", id)
	}
	return Errorf(ECONFLICT, "repeater %d was not changed", id)
}

// SetBackoff backs a repeater off until next, counting one more failed batch.
func (s *Store) SetBackoff(ctx context.Context, id int64, next time.Time) error {
	_, err := s.pool.Exec(ctx, `UPDATE repeaters
		SET next_attempt_at = $2, backoff_count = backoff_count + 1, last_attempt_at = now(), updated_at = now()
		WHERE id = $1`, id, next)
	return err
}

// ResetBackoff makes a repeater ready again at once.
func (s *Store) ResetBackoff(ctx context.Context, id int64) error {
	_, err := s.pool.Exec(ctx, `UPDATE repeaters
		SET next_attempt_at = NULL, backoff_count = 0, last_attempt_at = now(), updated_at = now()
		WHERE id = $1`, id)
	return err
}
