package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Delivery attempts counted by minute, for the console's delivery-rate
// chart. The count is bounded by an index, because an open console repeats
// it every few seconds.

// DeliveryCount is how many attempts of one state started in one minute.
type DeliveryCount struct {
	Minute time.Time // the minute's start
	State  State
	Count  int64
}

// DeliveriesParams is the window DeliveriesPerMinute counts.
type DeliveriesParams struct {
	Since time.Time // inclusive; truncated to the minute
	Until time.Time // exclusive
}

// DeliveriesPerMinute counts the attempts made in [Since, Until) by minute
// and state, ordered by minute and state; minutes without attempts are left
// out. An attempt's time is when it started (Outcome.AttemptedAt). The range
// on created_at is an index-only scan of repeat_record_attempts_created_idx,
// so the cost follows the window's attempts, not the table's.
func (s *Store) DeliveriesPerMinute(ctx context.Context, p DeliveriesParams) ([]DeliveryCount, error) {
	since := p.Since.Truncate(time.Minute)
	if !p.Until.After(since) {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, deliveriesPerMinuteSQL, since, p.Until)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (DeliveryCount, error) {
		var c DeliveryCount
		return c, row.Scan(&c.Minute, &c.State, &c.Count)
	})
}

// deliveriesPerMinuteSQL bins from $1, which is on a minute, so bins are
// whole minutes in every time zone.
const deliveriesPerMinuteSQL = `SELECT date_bin('1 minute', created_at, $1::timestamptz), state, count(*)
	FROM repeat_record_attempts
	WHERE created_at >= $1::timestamptz AND created_at < $2::timestamptz
	GROUP BY 1, 2 ORDER BY 1, 2`

// DeliveriesPerMinuteSQL returns DeliveriesPerMinute's query and arguments,
// for EXPLAIN in tests.
func (s *Store) DeliveriesPerMinuteSQL(p DeliveriesParams) (string, []any) {
	return deliveriesPerMinuteSQL, []any{p.Since.Truncate(time.Minute), p.Until}
}
