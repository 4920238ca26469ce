package repeaters

import (
	"context"
	"time"

	"repeaterd/store"
)

// schedule turns the records check_repeaters claimed for owner into send
// claims under the rate limits both paths share: each send of a limited
// repeater reserves its tokens and is scheduled for the time they come
// (LegacyClaim.NotBefore). The send task waits in the queue's schedule, not
// in a worker, except that the queue schedules by whole seconds: the task
// may start up to a second early and waits out the rest (a schedule rounded
// up instead would send each second's share at once, over the limit within
// the second). A record whose time would come past horizon is postponed
// instead, its claim ended, due again when its time is near; it is not
// returned. So the legacy path sends no faster than the limits, and a long
// backlog behind a slow limit costs one postponement per check, not a send
// task spinning on it.
func (l *Legacy) schedule(ctx context.Context, ids []int64, owner string, horizon time.Duration) ([]LegacyClaim, error) {
	claims := make([]LegacyClaim, 0, len(ids))
	if l.Limits == nil {
		for _, id := range ids {
			claims = append(claims, LegacyClaim{RecordID: id, Owner: owner})
		}
		return claims, nil
	}
	limits, err := l.Store.ClaimedLimits(ctx, ids)
	if err != nil {
		return nil, err
	}
	now := clockOr(l.Clock).Now()
	blocked := map[int64]time.Time{} // repeater → when its records are due again
	later := map[time.Time][]int64{}
	for _, rl := range limits {
		k := recordKey(rl)
		if !l.Limits.Limited(k) {
			claims = append(claims, LegacyClaim{RecordID: rl.RecordID, Owner: owner})
			continue
		}
		if at, ok := blocked[rl.RepeaterID]; ok {
			later[at] = append(later[at], rl.RecordID)
			continue
		}
		ok, wait, err := l.Limits.Reserve(ctx, k, now, horizon)
		if err != nil {
			return nil, err
		}
		if !ok {
			at := now.Add(max(wait-horizon, time.Second))
			blocked[rl.RepeaterID] = at
			later[at] = append(later[at], rl.RecordID)
			continue
		}
		// Even a send with its tokens there now is scheduled: every limited
		// send keeps the schedule's time, so they cannot bunch together.
		claims = append(claims, LegacyClaim{RecordID: rl.RecordID, Owner: owner, NotBefore: now.Add(wait)})
	}
	for at, ids := range later {
		if err := l.Store.PostponeRecords(ctx, ids, owner, at); err != nil {
			return nil, err
		}
	}
	return claims, nil
}

// recordKey is the limit key of a legacy record's repeater. The legacy
// path learns no pace: only the configured limits apply.
func recordKey(rl store.RecordLimit) LimitKey {
	return LimitKey{RepeaterID: rl.RepeaterID, Domain: rl.Domain, RateLimitPerS: rl.RateLimitPerS, RateBurst: rl.RateBurst}
}

// maxEarly is the most a send task can start before its time: the queue
// schedules by whole seconds.
const maxEarly = time.Second

// waitUntil waits for a legacy send's rate-limit time (at most maxEarly: a
// task started later than that sends at once).
func waitUntil(ctx context.Context, clock Clock, at time.Time) error {
	wait := min(at.Sub(clock.Now()), maxEarly)
	if at.IsZero() || wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
