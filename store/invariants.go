package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Invariant checks: the check_name values of the invariant_violations view
// (migrations/00072_invariants_v2.sql says what each one means).
const (
	CheckStatsDrift             = "stats_drift"               // repeat_record_stats differs from the records
	CheckReadyOnDeletedRepeater = "ready_on_deleted_repeater" // ready records of a deleted repeater
	CheckStarvedReadyRecords    = "starved_ready_records"     // ready for over a day on a repeater free to send
	CheckSuccessWithoutAttempt  = "success_without_attempt"   // Success with no Success attempt
	CheckFailPastMaxAttempts    = "fail_past_max_attempts"    // still ready after its last try
	CheckAttemptCountMismatch   = "attempt_count_mismatch"    // attempt_count differs from the attempt rows
	CheckNegativeStatsCount     = "negative_stats_count"      // a repeat_record_stats count below zero
	CheckStalePendingBatch      = "stale_pending_batch"       // a recorded batch nobody applied for 10 minutes
	CheckPendingWithAttempts    = "pending_with_attempts"     // Pending records that have attempts
)

// InvariantChecks lists every check, in the view's order.
var InvariantChecks = []string{
	CheckStatsDrift, CheckReadyOnDeletedRepeater, CheckStarvedReadyRecords,
	CheckSuccessWithoutAttempt, CheckFailPastMaxAttempts, CheckAttemptCountMismatch,
	CheckNegativeStatsCount, CheckStalePendingBatch, CheckPendingWithAttempts,
}

// InvariantViolation is one row of the invariant_violations view: how many
// records of one repeater break one check. Domain is "" and RepeaterID 0 for
// a check that is not about one repeater.
type InvariantViolation struct {
	Check      string `json:"check"`
	Domain     string `json:"domain"`
	RepeaterID int64  `json:"repeater_id"`
	Violations int64  `json:"violations"`
}

// PgCronJobName is the pg_cron job SchedulePgCron creates (or replaces).
const PgCronJobName = "repeaterd-invariants"

// RefreshInvariants recomputes the invariant_violations view and records the
// time. The view stays readable meanwhile (REFRESH ... CONCURRENTLY); the
// refresh reads every record, so it belongs on a schedule, not a request path.
func (s *Store) RefreshInvariants(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, `SELECT refresh_invariant_violations()`)
	if err != nil {
		return fmt.Errorf("store: refresh invariants: %w", err)
	}
	return nil
}

// InvariantCounts returns the violations of each check summed over domains
// and repeaters, as of the last refresh. Every check of InvariantChecks is
// present, 0 when nothing breaks it; a check only the database knows (a newer
// migration) is included too. It reads only the view, so it is cheap enough
// for a metrics scrape.
func (s *Store) InvariantCounts(ctx context.Context) (map[string]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT check_name, sum(violations)::bigint
		FROM invariant_violations GROUP BY check_name`)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(InvariantChecks))
	for _, c := range InvariantChecks {
		out[c] = 0
	}
	var check string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&check, &n}, func() error {
		out[check] = n
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// InvariantRows returns every violation as of the last refresh, ordered by
// check (in InvariantChecks order), domain and repeater.
func (s *Store) InvariantRows(ctx context.Context) ([]InvariantViolation, error) {
	rows, err := s.pool.Query(ctx, `SELECT check_name, domain, repeater_id, violations
		FROM invariant_violations
		ORDER BY array_position($1::text[], check_name), check_name, domain, repeater_id`, InvariantChecks)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (InvariantViolation, error) {
		var v InvariantViolation
		return v, row.Scan(&v.Check, &v.Domain, &v.RepeaterID, &v.Violations)
	})
}

// LastInvariantsRefresh returns when invariant_violations was last refreshed
// (the migration that creates it counts as the first refresh); the zero time
// if it never was.
func (s *Store) LastInvariantsRefresh(ctx context.Context) (time.Time, error) {
	var t time.Time
	err := s.pool.QueryRow(ctx, `SELECT refreshed_at FROM invariants_refreshed`).Scan(&t)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, nil
	}
	return t, err
}

// RepeatersInBackoff counts the repeaters that are neither deleted nor paused
// and are backed off (next_attempt_at in the future). It is served by the
// partial repeaters_next_attempt_idx, so it is cheap at scrape time.
func (s *Store) RepeatersInBackoff(ctx context.Context) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM repeaters
		WHERE NOT is_deleted AND NOT is_paused AND next_attempt_at > now()`).Scan(&n)
	return n, err
}

// RepeatersPaced counts repeaters, neither deleted nor paused, held to a
// pace learned from their endpoint's refusals (adaptive pacing).
func (s *Store) RepeatersPaced(ctx context.Context) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM repeaters
		WHERE NOT is_deleted AND NOT is_paused AND pace_per_s > 0`).Scan(&n)
	return n, err
}

// PgCronAvailable reports whether the pg_cron extension is installed in this
// database (it can only be installed in the database pg_cron runs jobs in).
// Any error reads as "not available": the caller then schedules the refresh
// itself.
func (s *Store) PgCronAvailable(ctx context.Context) bool {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron')`).Scan(&ok)
	return err == nil && ok
}

// SchedulePgCron has pg_cron refresh the invariants every interval, replacing
// an earlier schedule of the job PgCronJobName. Intervals pg_cron can express
// are 1-59 seconds, whole minutes up to an hour, whole hours up to a day, and
// one day. ENOTFOUND when pg_cron is not installed here.
func (s *Store) SchedulePgCron(ctx context.Context, interval time.Duration) error {
	schedule, err := CronSchedule(interval)
	if err != nil {
		return err
	}
	if !s.PgCronAvailable(ctx) {
		return Errorf(ENOTFOUND, "pg_cron is not installed in this database")
	}
	_, err = s.pool.Exec(ctx, `SELECT cron.schedule($1, $2, 'SELECT refresh_invariant_violations()')`,
		PgCronJobName, schedule)
	if err != nil {
		return fmt.Errorf("store: schedule pg_cron job: %w", err)
	}
	return nil
}

// CronSchedule turns an interval into a pg_cron schedule: "N seconds" below a
// minute (pg_cron 1.5+), else a cron expression. Intervals cron cannot space
// evenly (7m, 5h, 25h, 1m30s) are EINVALID rather than silently uneven.
func CronSchedule(d time.Duration) (string, error) {
	switch {
	case d >= time.Second && d < time.Minute && d%time.Second == 0:
		return fmt.Sprintf("%d seconds", d/time.Second), nil
	case d >= time.Minute && d < time.Hour && d%time.Minute == 0 && 60%(d/time.Minute) == 0:
		return fmt.Sprintf("*/%d * * * *", d/time.Minute), nil
	case d >= time.Hour && d < 24*time.Hour && d%time.Hour == 0 && 24%(d/time.Hour) == 0:
		return fmt.Sprintf("0 */%d * * *", d/time.Hour), nil
	case d == 24*time.Hour:
		return "0 0 * * *", nil
	}
	return "", Errorf(EINVALID, "invariants: pg_cron cannot run every %s; use seconds below a minute, "+
		"or minutes or hours dividing an hour or a day", d)
}
