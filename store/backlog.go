package store

import (
	"context"
	"time"
)

// Backlog is how much is waiting to be sent, over every domain: the totals
// the metrics export (no per-tenant numbers).
type Backlog struct {
	Pending int64 // ready records never tried
	Fail    int64 // ready records waiting for a retry
	// OldestReadyAge is how long the longest-waiting sendable record has
	// been eligible: due, and its repeater neither paused, deleted nor
	// backed off, since the later of its due time and the end of its
	// repeater's backoff. 0 when no record is waiting.
	OldestReadyAge time.Duration
}

// oldestReadySQL takes, per sendable repeater, its oldest due ready record
// (one probe of repeat_records_ready_idx, which carries next_check) and
// returns how long the longest-waiting of them has been eligible. Its cost
// follows the number of repeaters, like the readiness query, never the
// backlog of a dead (backed-off) endpoint.
const oldestReadySQL = `
SELECT coalesce(extract(epoch FROM now() - min(greatest(o.next_check, coalesce(r.next_attempt_at, o.next_check)))), 0)
FROM repeaters r
CROSS JOIN LATERAL (
    SELECT rr.next_check FROM repeat_records rr
    WHERE rr.repeater_id = r.id AND rr.` + sqlReady + ` AND rr.next_check <= now()
    ORDER BY rr.registered_at, rr.id
    LIMIT 1
) o
WHERE NOT r.is_deleted AND NOT r.is_paused AND (r.next_attempt_at IS NULL OR r.next_attempt_at <= now())`

// GetBacklog reads the backlog. The counts come from the WAL aggregate when
// a consumer keeps it current, else from the partial ready index.
func (s *Store) GetBacklog(ctx context.Context) (*Backlog, error) {
	var b Backlog
	feed, err := s.GetStatsFeed(ctx)
	if err != nil {
		return nil, err
	}
	countSQL := `SELECT count(*) FILTER (WHERE state = 1), count(*) FILTER (WHERE state = 2)
		FROM repeat_records WHERE ` + sqlReady
	if feed.Current() {
		countSQL = `SELECT coalesce(sum(count) FILTER (WHERE state = 1), 0)::bigint,
			coalesce(sum(count) FILTER (WHERE state = 2), 0)::bigint FROM repeat_record_stats`
	}
	if err := s.pool.QueryRow(ctx, countSQL).Scan(&b.Pending, &b.Fail); err != nil {
		return nil, err
	}
	var secs float64
	if err := s.pool.QueryRow(ctx, oldestReadySQL).Scan(&secs); err != nil {
		return nil, err
	}
	b.OldestReadyAge = time.Duration(max(secs, 0) * float64(time.Second))
	return &b, nil
}
