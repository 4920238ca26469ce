package store

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Secret rotation: the repeater's signing secret is replaced while the old
// one stays valid until a deadline. Until then every request carries both
// signatures (repeaters.signatureHeader), so a receiver can switch to the
// new secret whenever it likes inside the window; after it only the new
// one is sent. A rotation during another's overlap retires the oldest
// secret at once (two at a time at most).

// MaxRotationOverlap bounds how long an old secret stays valid.
const MaxRotationOverlap = 30 * 24 * time.Hour

// RotateSecret makes secret the repeater's signing secret and keeps its
// current one (if any) as the previous secret until until. It returns the
// repeater as saved, secrets opened.
func (s *Store) RotateSecret(ctx context.Context, id int64, secret string, until time.Time) (*Repeater, error) {
	switch {
	case secret == "":
		return nil, Errorf(EINVALID, "the new signing secret is empty")
	case strings.HasPrefix(secret, SealedPrefix):
		return nil, Errorf(EINVALID, "signing_secret %v", errSealedPlaintext)
	}
	if err := ValidateText("signing_secret", secret, MaxSecretLen); err != nil {
		return nil, err
	}
	if d := time.Until(until); d <= 0 || d > MaxRotationOverlap {
		return nil, Errorf(EINVALID, "the old secret's deadline must be in the future and at most %s away", MaxRotationOverlap)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		r := &Repeater{ID: id}
		var deleted bool
		err := tx.QueryRow(ctx, `SELECT domain, signing_secret, is_deleted FROM repeaters WHERE id = $1 FOR UPDATE`, id).
			Scan(&r.Domain, &r.SigningSecret, &deleted)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return Errorf(ENOTFOUND, "repeater %d not found", id)
		case err != nil:
			return err
		case deleted:
			return Errorf(ECONFLICT, "repeater %d is deleted", id)
		}
		if _, err := s.openSecrets(r); err != nil {
			return err
		}
		r.PreviousSigningSecret, r.SigningSecret = r.SigningSecret, secret
		var prevUntil *time.Time
		if r.PreviousSigningSecret != "" {
			prevUntil = &until
		}
		row := s.sealed(r)
		_, err = tx.Exec(ctx, `UPDATE repeaters SET signing_secret = $2, previous_signing_secret = $3,
			previous_secret_until = $4, updated_at = now() WHERE id = $1`,
			id, row.SigningSecret, row.PreviousSigningSecret, prevUntil)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.GetRepeater(ctx, id)
}
