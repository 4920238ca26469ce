package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// LegacyDomains returns which domains follow the legacy path: with the
// default on, the domains whose flag is explicitly off (except is nil);
// with it off, every domain except those explicitly on (except is set).
func (s *Store) LegacyDomains(ctx context.Context) (only, except []string, err error) {
	flags, err := s.ListDomainFlags(ctx)
	if err != nil {
		return nil, nil, err
	}
	only, except = []string{}, []string{}
	for _, f := range flags {
		if f.Flag != FlagProcessRepeaters {
			continue
		}
		if !f.Enabled {
			only = append(only, f.Domain)
		} else {
			except = append(except, f.Domain)
		}
	}
	if s.ProcessRepeatersDefault() {
		return only, nil, nil
	}
	return nil, except, nil
}

// ClaimLegacyRecords claims for owner up to limit due ready records of
// legacy-path domains until now+claimFor, so no path takes them again until
// the send task records them or the claim lapses. It settles lapsed claims'
// waiting requests first, and returns the claimed ids.
func (s *Store) ClaimLegacyRecords(ctx context.Context, limit int, owner string, claimFor time.Duration) ([]int64, error) {
	if owner == "" {
		return nil, Errorf(EINVALID, "a claim needs an owner")
	}
	only, except, err := s.LegacyDomains(ctx)
	if err != nil || (only != nil && len(only) == 0) {
		return nil, err
	}
	if _, err := s.pool.Exec(ctx, sqlSettleRequests, nil); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `WITH due AS (
			SELECT id FROM repeat_records
			WHERE `+sqlReady+` AND next_check <= now()
			  AND ($1::text[] IS NULL OR domain = ANY($1))
			  AND ($2::text[] IS NULL OR domain <> ALL($2))
			ORDER BY next_check
			LIMIT $3
			FOR UPDATE SKIP LOCKED
		)
		UPDATE repeat_records r SET next_check = now() + $4::interval, claim_owner = $5
		FROM due WHERE r.id = due.id
		RETURNING r.id`, only, except, limit, claimFor, owner)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// PostponeRecord ends owner's claim on a record, due again at at.
func (s *Store) PostponeRecord(ctx context.Context, id int64, owner string, at time.Time) error {
	_, err := s.pool.Exec(ctx, `UPDATE repeat_records SET next_check = $3, claim_owner = NULL
		WHERE id = $1 AND claim_owner = $2 AND `+sqlReady, id, owner, at)
	return err
}
