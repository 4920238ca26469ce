package console

import (
	"context"
	"maps"
	"sync"
	"time"

	"repeaterd/store"
)

// lastHourCache keeps each repeater's attempts per minute for the minutes
// too old to change (rateSettle), so the repeater pages count only the last
// few minutes' attempts per render instead of the hour's, as rateCache
// does for the chart.
type lastHourCache struct {
	mu     sync.Mutex
	closed map[int64]map[int64]map[store.State]int64 // minute (Unix) → repeater → state → count
	until  time.Time                                 // every minute before this is in closed
	// fresh holds the unsettled minutes as read at freshAt, reused for
	// lastHourFresh: pages opened in a burst count them once.
	fresh   map[int64]map[int64]map[store.State]int64
	freshAt time.Time
}

// lastHourFresh is how long the unsettled minutes' counts are reused.
const lastHourFresh = 5 * time.Second

// add fills rows' LastHour with the attempts of the hour before now.
func (c *lastHourCache) add(ctx context.Context, st *store.Store, now time.Time, rows []store.RepeaterRow) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := windowStart(now)
	settled := now.Add(-rateSettle).Truncate(time.Minute)
	if c.closed == nil || now.Before(c.until) {
		c.closed, c.until = map[int64]map[int64]map[store.State]int64{}, time.Time{}
	}
	maps.DeleteFunc(c.closed, func(m int64, _ map[int64]map[store.State]int64) bool { return m < start.Unix() })
	if c.fresh != nil && now.Sub(c.freshAt) < lastHourFresh && !now.Before(c.freshAt) {
		c.sum(rows, c.fresh)
		return nil
	}
	from := start
	if c.until.After(from) {
		from = c.until
	}
	counts, err := st.AttemptsPerRepeaterMinute(ctx, from, now.Truncate(time.Minute).Add(time.Minute))
	if err != nil {
		return err
	}
	fresh := map[int64]map[int64]map[store.State]int64{}
	for _, mc := range counts {
		bucket := fresh
		if mc.Minute.Before(settled) {
			bucket = c.closed
		}
		addCount(bucket, mc.Minute.Unix(), mc.RepeaterID, mc.State, mc.Count)
	}
	if settled.After(c.until) {
		c.until = settled
	}
	c.fresh, c.freshAt = fresh, now
	c.sum(rows, fresh)
	return nil
}

// sum adds the closed minutes and fresh to rows' LastHour.
func (c *lastHourCache) sum(rows []store.RepeaterRow, fresh map[int64]map[int64]map[store.State]int64) {
	byID := make(map[int64]*store.RepeaterRow, len(rows))
	for i := range rows {
		byID[rows[i].ID] = &rows[i]
		if rows[i].LastHour == nil {
			rows[i].LastHour = map[store.State]int64{}
		}
	}
	for _, minutes := range []map[int64]map[int64]map[store.State]int64{c.closed, fresh} {
		for _, reps := range minutes {
			for id, states := range reps {
				if r := byID[id]; r != nil {
					for s, n := range states {
						r.LastHour[s] += n
					}
				}
			}
		}
	}
}

func addCount(m map[int64]map[int64]map[store.State]int64, minute, repeater int64, s store.State, n int64) {
	if m[minute] == nil {
		m[minute] = map[int64]map[store.State]int64{}
	}
	if m[minute][repeater] == nil {
		m[minute][repeater] = map[store.State]int64{}
	}
	m[minute][repeater][s] += n
}
