package console

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"repeaterd/store"
)

const (
	rateMinutes = 60
	// rateSettle is how long after a minute ends its count may still grow:
	// an attempt is stored with the time it started, when its batch is
	// recorded, up to a batch's duration later. Older minutes are cached.
	rateSettle = 5 * time.Minute
)

// chartStates are the attempt outcomes the chart stacks, bottom first.
var chartStates = [...]store.State{
	store.StateSuccess, store.StateEmpty, store.StatePayloadRejected, store.StateFail, store.StateCancelled,
}

type minuteCounts [len(chartStates)]int64 // by chartStates

// rateCache keeps the counts of minutes too old to change, so a refresh
// counts only the last few minutes' attempts instead of the hour's.
type rateCache struct {
	mu     sync.Mutex
	closed map[int64]minuteCounts // by the minute's Unix time; absent = none
	until  time.Time              // every minute before this is in closed
}

// minutes returns the attempt counts of the rateMinutes minutes ending with
// now's, oldest first.
func (c *rateCache) minutes(ctx context.Context, st *store.Store, now time.Time) ([]minuteCounts, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := windowStart(now)
	end := now.Truncate(time.Minute).Add(time.Minute)
	settled := now.Add(-rateSettle).Truncate(time.Minute)
	if c.closed == nil || now.Before(c.until) { // first call, or the clock went back
		c.closed, c.until = map[int64]minuteCounts{}, time.Time{}
	}
	maps.DeleteFunc(c.closed, func(m int64, _ minuteCounts) bool { return m < start.Unix() })
	from := start
	if c.until.After(from) {
		from = c.until
	}
	counts, err := st.DeliveriesPerMinute(ctx, store.DeliveriesParams{Since: from, Until: end})
	if err != nil {
		return nil, err
	}
	fresh := map[int64]minuteCounts{}
	for _, dc := range counts {
		if i := slices.Index(chartStates[:], dc.State); i >= 0 {
			m := fresh[dc.Minute.Unix()]
			m[i] += dc.Count
			fresh[dc.Minute.Unix()] = m
		}
	}
	out := make([]minuteCounts, 0, rateMinutes)
	for m := start; m.Before(end); m = m.Add(time.Minute) {
		mc, ok := fresh[m.Unix()]
		if !ok && m.Before(from) {
			mc = c.closed[m.Unix()]
		}
		if !m.Before(from) && m.Before(settled) && mc != (minuteCounts{}) {
			c.closed[m.Unix()] = mc
		}
		out = append(out, mc)
	}
	if settled.After(c.until) {
		c.until = settled
	}
	return out, nil
}

// windowStart is the first minute of the window ending with now's.
func windowStart(now time.Time) time.Time {
	return now.Truncate(time.Minute).Add(-(rateMinutes - 1) * time.Minute)
}
