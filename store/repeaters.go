package store

import (
	"cmp"
	"context"
	"errors"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"
)

// Defaults of a new repeater's zero fields.
const (
	DefaultRequestMethod = "POST"
	DefaultMaxAttempts   = 6
	DefaultTimeoutMS     = 30000
)

// Repeater limits: bounds no legitimate configuration comes near, which keep
// rows and requests small.
const (
	maxHeaders      = 50
	maxHeaderName   = 256
	maxHeaderValue  = 8192
	maxBackoffCodes = 100
)

// withDefaults fills zero fields of a repeater before it is saved.
func (r *Repeater) withDefaults() {
	r.RequestMethod = cmp.Or(r.RequestMethod, DefaultRequestMethod)
	r.MaxAttempts = cmp.Or(r.MaxAttempts, DefaultMaxAttempts)
	r.TimeoutMS = cmp.Or(r.TimeoutMS, DefaultTimeoutMS)
	if r.Headers == nil {
		r.Headers = map[string]string{}
	}
	if r.BackoffCodes == nil {
		r.BackoffCodes = Int32Array{}
	}
	if r.EventTypes == nil {
		r.EventTypes = TextArray{}
	}
}

// Validate is the one home of a repeater's field rules, run by
// CreateRepeater and UpdateRepeater on every field (defaults filled): text
// the database cannot hold, an unknown method, numbers out of range, header
// names and values net/http would refuse to send, backoff codes that are not
// HTTP statuses. What depends on the sender's policy, the URL's target (SSRF)
// and the headers only the sender sets, is the repeaters package's to judge.
func (r *Repeater) Validate() error {
	for _, check := range []func() error{r.validateText, r.validateNumbers, r.validateHeaders, r.validateBackoffCodes, r.validateSubscription} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (r *Repeater) validateText() error {
	if err := ValidateDomain(r.Domain); err != nil {
		return err
	}
	if r.URL == "" {
		return Errorf(EINVALID, "url is required")
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"name", r.Name, MaxNameLen}, {"url", r.URL, MaxURLLen}, {"signing_secret", r.SigningSecret, MaxSecretLen}} {
		if err := ValidateText(f.name, f.v, f.max); err != nil {
			return err
		}
	}
	if strings.HasPrefix(r.SigningSecret, SealedPrefix) {
		return Errorf(EINVALID, "signing_secret %v", errSealedPlaintext)
	}
	if r.RequestMethod != "POST" && r.RequestMethod != "PUT" && r.RequestMethod != "PATCH" {
		return Errorf(EINVALID, "request_method must be POST, PUT or PATCH")
	}
	return nil
}

func (r *Repeater) validateNumbers() error {
	for _, f := range []struct {
		name   string
		v, min int
	}{{"max_workers", r.MaxWorkers, 0}, {"rate_burst", r.RateBurst, 0}, {"max_attempts", r.MaxAttempts, 1}, {"timeout_ms", r.TimeoutMS, 1}} {
		if f.v < f.min || f.v > math.MaxInt32 {
			return Errorf(EINVALID, "%s must be from %d to %d", f.name, f.min, math.MaxInt32)
		}
	}
	if r.RateLimitPerS < 0 || math.IsNaN(r.RateLimitPerS) || math.IsInf(r.RateLimitPerS, 0) {
		return Errorf(EINVALID, "rate_limit_per_s must be a number, 0 or more")
	}
	return nil
}

func (r *Repeater) validateHeaders() error {
	if len(r.Headers) > maxHeaders {
		return Errorf(EINVALID, "at most %d headers", maxHeaders)
	}
	seen := make(map[string]string, len(r.Headers))
	for k, v := range r.Headers {
		switch {
		case !isHeaderToken(k):
			return Errorf(EINVALID, "header name %q is not a valid HTTP token", k)
		case len(v) > maxHeaderValue || strings.ContainsFunc(v, isControlInValue) || !utf8.ValidString(v):
			return Errorf(EINVALID, "header %s has an invalid value (control characters, invalid UTF-8 or over 8 KiB)", k)
		case strings.HasPrefix(v, SealedPrefix):
			return Errorf(EINVALID, "header %s %v", k, errSealedPlaintext)
		case seen[strings.ToLower(k)] != "":
			// HTTP header names are case-insensitive: one would silently win.
			return Errorf(EINVALID, "headers %s and %s are the same header (names are case-insensitive)", seen[strings.ToLower(k)], k)
		}
		seen[strings.ToLower(k)] = k
	}
	return nil
}

// isControlInValue reports a character a header value must not carry: a
// control other than tab, which would let a value end the header (CRLF).
func isControlInValue(c rune) bool { return c < 0x20 && c != '\t' || c == 0x7f }

// isHeaderToken reports whether s is an RFC 9110 token.
func isHeaderToken(s string) bool {
	if s == "" || len(s) > maxHeaderName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

func (r *Repeater) validateBackoffCodes() error {
	if len(r.BackoffCodes) > maxBackoffCodes {
		return Errorf(EINVALID, "at most %d backoff_codes", maxBackoffCodes)
	}
	for _, c := range r.BackoffCodes {
		if c < 100 || c > 599 {
			return Errorf(EINVALID, "backoff_codes must be HTTP status codes (100-599), not %d", c)
		}
	}
	return nil
}

// CreateRepeater fills r's defaults, validates it (Validate), inserts it
// with its secrets sealed (secrets.go) and fills its ID and timestamps. URL safety is the caller's to check
// (repeaters.ValidateURL: the sender owns that policy).
func (s *Store) CreateRepeater(ctx context.Context, r *Repeater) error {
	r.withDefaults()
	if err := s.validateRepeater(r); err != nil {
		return err
	}
	if err := s.checkConnection(ctx, r); err != nil {
		return err
	}
	row := s.sealed(r) // the secrets are written sealed; r keeps the plaintext
	if err := s.gorm.WithContext(ctx).Omit("NextAttemptAt", "LastAttemptAt", "PendingBatch", "PendingSummary").Create(row).Error; err != nil {
		return err
	}
	r.ID, r.CreatedAt, r.UpdatedAt = row.ID, row.CreatedAt, row.UpdatedAt
	return nil
}

// GetRepeater returns the repeater with the given id, deleted ones included,
// its secrets opened: the sender's plaintext.
func (s *Store) GetRepeater(ctx context.Context, id int64) (*Repeater, error) {
	var r Repeater
	err := s.gorm.WithContext(ctx).First(&r, id).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, Errorf(ENOTFOUND, "repeater %d not found", id)
	}
	if err != nil {
		return nil, err
	}
	if _, err := s.openSecrets(&r); err != nil {
		return nil, err
	}
	if err := s.attachConnection(ctx, &r); err != nil {
		return nil, err
	}
	return &r, nil
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
	if err := q.Limit(p.Limit).Find(&out).Error; err != nil {
		return nil, err
	}
	for i := range out {
		if _, err := s.openSecrets(&out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// UpdateRepeater validates r (Validate) and saves its settings (not its
// backoff state). Deleted repeaters cannot be changed.
func (s *Store) UpdateRepeater(ctx context.Context, r *Repeater) error {
	r.withDefaults()
	if err := s.validateRepeater(r); err != nil {
		return err
	}
	if err := s.checkConnection(ctx, r); err != nil {
		return err
	}
	row := s.sealed(r)
	res := s.gorm.WithContext(ctx).Model(row).Where("NOT is_deleted").
		Select("Name", "URL", "RequestMethod", "Headers", "SigningSecret", "MaxWorkers", "RateLimitPerS",
			"RateBurst", "BackoffCodes", "MaxAttempts", "TimeoutMS", "ConnectionID", "EventTypes", "EventFilter", "UpdatedAt").
		Updates(row)
	r.UpdatedAt = row.UpdatedAt
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
		// FOR UPDATE waits for registrations in flight (they hold FOR KEY
		// SHARE), so the cancel below sees their records.
		if err := tx.Exec(`SELECT 1 FROM repeaters WHERE id = ? FOR UPDATE`, id).Error; err != nil {
			return err
		}
		res := tx.Model(&Repeater{}).Where("id = ? AND NOT is_deleted", id).
			Updates(map[string]any{"is_deleted": true, "updated_at": time.Now()})
		if err := s.oneRow(ctx, res, id); err != nil {
			return err
		}
		return tx.Exec(`UPDATE repeat_records SET state = ? WHERE repeater_id = ? AND `+sqlReady,
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
