package store

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ReadyRepeater is a repeater the dispatcher may hand a batch to.
type ReadyRepeater struct {
	ID            int64
	Domain        string
	MaxWorkers    int
	RateLimitPerS float64
	RateBurst     int
	BackoffCount  int     // consecutive failed batches; > 0 means the next batch is a probe
	PacePerS      float64 // the learned pace (requests/s); 0 = not paced
}

// DomainRepeaters is one domain's ready repeaters, in id order.
type DomainRepeaters struct {
	Domain    string
	Repeaters []ReadyRepeater
}

// readyRepeatersSQL finds ready repeaters of flag-enabled domains.
//
// It reads only the work set (repeater_work, migration 00120: every
// repeater with a ready record, kept by triggers), so idle repeaters cost
// nothing.
// "not backed off" is next_attempt_at IS NULL OR next_attempt_at <= now; an
// OR cannot use one index, so it is two branches joined by UNION ALL. The
// work set is read as an array (id = ANY) so each branch is primary-key
// lookups of the repeaters in it: as a join, the planner would scan every
// repeater and hash the set, testing each repeater's domain flag on the way. Each tests for a due ready record
// with EXISTS on the partial repeat_records_ready_idx, so the query returns one
// row per repeater and its cost follows the repeaters with work and the ready
// backlog, never the idle repeaters or the completed history.
const readyRepeatersSQL = `
SELECT r.id, r.domain, r.max_workers, r.rate_limit_per_s, r.rate_burst, r.backoff_count, r.pace_per_s
FROM repeaters r
WHERE r.id = ANY (ARRAY(SELECT w.repeater_id FROM repeater_work w)) AND NOT r.is_deleted AND NOT r.is_paused AND r.next_attempt_at IS NULL
  AND EXISTS (SELECT 1 FROM repeat_records rr
              WHERE rr.repeater_id = r.id AND rr.` + sqlReady + ` AND rr.next_check <= $1)
  AND ` + sqlFlagEnabled + `
UNION ALL
SELECT r.id, r.domain, r.max_workers, r.rate_limit_per_s, r.rate_burst, r.backoff_count, r.pace_per_s
FROM repeaters r
WHERE r.id = ANY (ARRAY(SELECT w.repeater_id FROM repeater_work w)) AND NOT r.is_deleted AND NOT r.is_paused AND r.next_attempt_at <= $1
  AND EXISTS (SELECT 1 FROM repeat_records rr
              WHERE rr.repeater_id = r.id AND rr.` + sqlReady + ` AND rr.next_check <= $1)
  AND ` + sqlFlagEnabled + `
ORDER BY 2, 1`

// sqlFlagEnabled is COALESCE(the domain's process_repeaters flag, $2) with
// the flags read once per query (two arrays) instead of a subplan per
// repeater: enabled explicitly, or not disabled while the default ($2) is on.
const sqlFlagEnabled = `(r.domain = ANY (ARRAY(SELECT f.domain FROM domain_flags f WHERE f.flag = 'process_repeaters' AND f.enabled))
       OR ($2 AND r.domain <> ALL (ARRAY(SELECT f.domain FROM domain_flags f WHERE f.flag = 'process_repeaters' AND NOT f.enabled))))`

// ReadyRepeatersSQL returns the readiness query and its arguments, for
// EXPLAIN in tests and benchmarks.
func (s *Store) ReadyRepeatersSQL(now time.Time) (string, []any) {
	return readyRepeatersSQL, []any{now, s.ProcessRepeatersDefault()}
}

// ReadyRepeaters returns the ready repeaters of flag-enabled domains, grouped
// by domain in domain order.
func (s *Store) ReadyRepeaters(ctx context.Context, now time.Time) ([]DomainRepeaters, error) {
	// Planned afresh each pass: a cached generic plan cannot see now and may
	// scan every due ready record instead of probing per repeater.
	rows, err := s.pool.Query(ctx, readyRepeatersSQL, pgx.QueryExecModeExec, now, s.ProcessRepeatersDefault())
	if err != nil {
		return nil, err
	}
	ready, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ReadyRepeater, error) {
		var r ReadyRepeater
		return r, row.Scan(&r.ID, &r.Domain, &r.MaxWorkers, &r.RateLimitPerS, &r.RateBurst, &r.BackoffCount, &r.PacePerS)
	})
	if err != nil {
		return nil, err
	}
	var out []DomainRepeaters
	for _, r := range ready {
		if len(out) == 0 || out[len(out)-1].Domain != r.Domain {
			out = append(out, DomainRepeaters{Domain: r.Domain})
		}
		last := &out[len(out)-1]
		last.Repeaters = append(last.Repeaters, r)
	}
	return out, nil
}

// DueCounts returns, for each of ids, how many of its ready records are due
// at now, counting at most limit: what a batch of it could send now. The
// dispatcher asks it only for rate-limited or paced repeaters, so the tokens
// it reserves are the records that exist. Each count is one bounded range of
// the partial ready index.
func (s *Store) DueCounts(ctx context.Context, ids []int64, now time.Time, limit int) (map[int64]int, error) {
	out := make(map[int64]int, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT r.id, (SELECT count(*) FROM (
			SELECT 1 FROM repeat_records rr
			WHERE rr.repeater_id = r.id AND rr.`+sqlReady+` AND rr.next_check <= $2
			ORDER BY rr.registered_at, rr.id LIMIT $3) due)
		FROM unnest($1::bigint[]) AS r(id)`, ids, now, limit)
	return collectByID[int](rows, err)
}

// collectByID reads rows of (id, value) into a map.
func collectByID[V any](rows pgx.Rows, err error) (map[int64]V, error) {
	if err != nil {
		return nil, err
	}
	out := map[int64]V{}
	var id int64
	var v V
	_, err = pgx.ForEachRow(rows, []any{&id, &v}, func() error {
		out[id] = v
		return nil
	})
	return out, err
}

// RepeaterDomains returns the domain of each of ids that exists.
func (s *Store) RepeaterDomains(ctx context.Context, ids []int64) (map[int64]string, error) {
	out := make(map[int64]string, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT id, domain FROM repeaters WHERE id = ANY($1)`, ids)
	return collectByID[string](rows, err)
}

// NextAttemptAfter returns the earliest backoff end after now among active
// repeaters, or the zero time when none is backed off.
func (s *Store) NextAttemptAfter(ctx context.Context, now time.Time) (time.Time, error) {
	var next *time.Time
	err := s.pool.QueryRow(ctx, `SELECT min(next_attempt_at) FROM repeaters
		WHERE NOT is_deleted AND NOT is_paused AND next_attempt_at > $1`, now).Scan(&next)
	if err != nil || next == nil {
		return time.Time{}, err
	}
	return *next, nil
}

func prefixed(prefix, columns string) string {
	parts := strings.Split(columns, ",")
	for i, p := range parts {
		parts[i] = prefix + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
}
