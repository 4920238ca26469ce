package repeaters

import (
	"cmp"
	"math"
	"math/rand/v2"
	"time"

	"repeaterd/store"
)

// Backoff defaults.
const (
	DefaultBackoffMin    = 5 * time.Minute
	DefaultBackoffMax    = 7 * 24 * time.Hour
	DefaultBackoffJitter = 0.1
)

// BackoffPolicy decides a repeater's next attempt from its batch outcomes.
type BackoffPolicy struct {
	// Min is the first backoff. Defaults to 5m.
	Min time.Duration
	// Max caps the backoff and any Retry-After. Defaults to 168h.
	Max time.Duration
	// Jitter spreads each backoff by ± this fraction; negative means none.
	// Defaults to 0.1.
	Jitter float64
	// MaxWorkers caps a repeater's concurrency (MAX_REPEATER_WORKERS). 0 = no cap.
	MaxWorkers int
	// Rand returns a float in [0, 1). Defaults to math/rand.
	Rand func() float64 `json:"-"`
}

// WithDefaults returns p with every zero field set to its default. A Max
// below Min is raised to Min; a negative Jitter means none.
func (p BackoffPolicy) WithDefaults() BackoffPolicy {
	p.Min = cmp.Or(p.Min, DefaultBackoffMin)
	p.Max = max(cmp.Or(p.Max, DefaultBackoffMax), p.Min)
	p.Jitter = max(cmp.Or(p.Jitter, DefaultBackoffJitter), 0)
	if p.Rand == nil {
		p.Rand = rand.Float64
	}
	return p
}

// Delay is the backoff after the n-th consecutive failed batch: Min doubling,
// capped at Max, with jitter, never below retryAfter (itself capped at Max).
func (p BackoffPolicy) Delay(n int, retryAfter time.Duration) time.Duration {
	d := float64(p.Min) * math.Pow(2, float64(max(n-1, 0)))
	d = min(d, float64(p.Max))
	d *= 1 + p.Jitter*(2*p.Rand()-1)
	delay := min(time.Duration(d), p.Max)
	return max(delay, min(retryAfter, p.Max))
}

// Decide is update_repeater's rule. Any Success or PayloadRejected resets the
// backoff; a batch refused whole right after successes is "too fast" and
// paces the repeater instead (pacing.go); other batches of only failures back
// it off; nothing sent leaves it alone. A Retry-After is honoured either way.
// Concurrency follows AIMD: halved when the endpoint throttles (429/503, but
// not one poison record among successes), one more after a batch without
// failures. The pace is learned as pacing.go says.
func (p BackoffPolicy) Decide(r *store.Repeater, sum store.BatchSummary, now time.Time) store.BatchDecision {
	d := store.BatchDecision{
		NextAttemptAt:    r.NextAttemptAt,
		BackoffCount:     r.BackoffCount,
		EffectiveWorkers: p.Concurrency(r),
		PacePerS:         r.PacePerS,
		PaceClean:        r.PaceClean,
		Flowing:          r.Flowing,
	}
	if sum.Attempted == 0 {
		return d
	}
	tooFast := TooFast(r, sum)
	reached := sum.Succeeded+sum.Rejected > 0
	d.EffectiveWorkers = p.concurrency(r, sum, tooFast || sum.Throttled > 0 && !reached)
	d.PacePerS, d.PaceClean = nextPace(r, sum, tooFast)
	d.Flowing = reached
	switch {
	case reached || tooFast:
		d.BackoffCount, d.NextAttemptAt = 0, nil
		if !reached {
			d.BackoffCount = r.BackoffCount // too fast is no failed batch, nor a success
		}
		if sum.RetryAfter > 0 {
			d.NextAttemptAt = ptr(now.Add(min(sum.RetryAfter, p.Max)))
		}
	default:
		d.BackoffCount = r.BackoffCount + 1
		d.NextAttemptAt = ptr(now.Add(p.Delay(d.BackoffCount, sum.RetryAfter)))
	}
	return d
}

// Concurrency is the number of requests a batch of r may have in flight.
func (p BackoffPolicy) Concurrency(r *store.Repeater) int {
	limit := r.Workers(p.MaxWorkers)
	if r.EffectiveWorkers > 0 && r.EffectiveWorkers < limit {
		return r.EffectiveWorkers
	}
	return limit
}

func (p BackoffPolicy) concurrency(r *store.Repeater, sum store.BatchSummary, throttled bool) int {
	c := p.Concurrency(r)
	switch {
	case throttled:
		c = max(1, c/2)
	case sum.Attempted > 0 && sum.Failed == 0:
		c = min(c+1, r.Workers(p.MaxWorkers))
	}
	return c
}

// RetryDelay is how long a record that failed its n-th attempt on the new
// path waits before a batch may take it again: the repeater's backoff
// schedule (Min doubling to Max, jittered, never before Retry-After), per
// record. A record its endpoint keeps refusing is tried on its own schedule
// while the records behind it flow; the repeater itself backs off only when
// whole batches fail.
func (p BackoffPolicy) RetryDelay(n int, retryAfter time.Duration) time.Duration {
	return p.Delay(n, retryAfter)
}

func ptr[T any](v T) *T { return &v }
