package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Repeaters waiting out a backoff, as the console lists them. The query is
// bounded by an index, because an open console repeats it every few seconds.

// BackoffRepeater is a repeater waiting out a backoff, with the attempt that
// most likely explains it.
type BackoffRepeater struct {
	ID            int64
	Domain        string
	Name          string
	NextAttemptAt time.Time
	LastAttemptAt *time.Time
	BackoffCount  int // consecutive failed batches
	// LastAttempt is the latest attempt at the repeater's oldest ready
	// record: batches take the oldest records first, so it is the failure
	// that backed the repeater off, found on two indexes without scanning
	// the repeater's records. nil when that record was never attempted.
	LastAttempt *Attempt
}

// RepeatersInBackoffParams bounds ListRepeatersInBackoff.
type RepeatersInBackoffParams struct {
	// Now is the time a backoff must end after. Defaults to the database's
	// now().
	Now time.Time
	// Limit is the most repeaters returned. Defaults to
	// DefaultBackoffListLimit; at most MaxBackoffListLimit.
	Limit int
}

// Limits of ListRepeatersInBackoff.
const (
	DefaultBackoffListLimit = 50
	MaxBackoffListLimit     = 1000
)

// ListRepeatersInBackoff returns the repeaters, neither deleted nor paused,
// whose backoff ends after p.Now, soonest first; RepeatersInBackoff counts
// them all. The partial repeaters_next_attempt_idx serves the range and the
// order; each repeater's last attempt is two index probes (the ready-records
// index, then the attempts' record index).
func (s *Store) ListRepeatersInBackoff(ctx context.Context, p RepeatersInBackoffParams) ([]BackoffRepeater, error) {
	if p.Limit <= 0 {
		p.Limit = DefaultBackoffListLimit
	}
	p.Limit = min(p.Limit, MaxBackoffListLimit)
	var now *time.Time
	if !p.Now.IsZero() {
		now = &p.Now
	}
	rows, err := s.pool.Query(ctx, `SELECT r.id, r.domain, r.name, r.next_attempt_at, r.last_attempt_at, r.backoff_count,
			a.id, a.record_id, a.state, a.status_code, a.message, a.duration_ms, a.created_at
		FROM repeaters r
		LEFT JOIN LATERAL (
			SELECT a.* FROM repeat_record_attempts a
			WHERE a.record_id = (SELECT rr.id FROM repeat_records rr
				WHERE rr.repeater_id = r.id AND rr.`+sqlReady+`
				ORDER BY rr.registered_at, rr.id LIMIT 1)
			ORDER BY a.id DESC LIMIT 1
		) a ON true
		WHERE NOT r.is_deleted AND NOT r.is_paused AND r.next_attempt_at > coalesce($1::timestamptz, now())
		ORDER BY r.next_attempt_at, r.id
		LIMIT $2`, now, p.Limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (BackoffRepeater, error) {
		var r BackoffRepeater
		var a struct {
			id, recordID     *int64
			state            *State
			code, durationMS *int
			message          *string
			createdAt        *time.Time
		}
		err := row.Scan(&r.ID, &r.Domain, &r.Name, &r.NextAttemptAt, &r.LastAttemptAt, &r.BackoffCount,
			&a.id, &a.recordID, &a.state, &a.code, &a.message, &a.durationMS, &a.createdAt)
		if err == nil && a.id != nil {
			r.LastAttempt = &Attempt{ID: *a.id, RecordID: *a.recordID, State: *a.state, StatusCode: *a.code,
				Message: *a.message, DurationMS: *a.durationMS, CreatedAt: *a.createdAt}
		}
		return r, err
	})
}

// RetryNow ends a repeater's backoff at once (an operator's "retry now"):
// its next batch is a full one, not a probe, and the dispatcher is woken.
func (s *Store) RetryNow(ctx context.Context, id int64) error {
	tag, err := s.pool.Exec(ctx, `UPDATE repeaters
		SET next_attempt_at = NULL, backoff_count = 0, updated_at = now()
		WHERE id = $1 AND NOT is_deleted`, id)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return Errorf(ENOTFOUND, "repeater %d not found", id)
	}
	return NotifyRecords(ctx, s.pool)
}
