package repeaters

import (
	"math"
	"time"

	"golang.org/x/time/rate"

	"repeaterd/store"
)

// limits holds the dispatcher's token buckets: per repeater, per domain and
// global. Only the leader uses them; a batch reserves its records' tokens
// before it is enqueued, so limits hold cluster-wide.
type limits struct {
	domainRate, globalRate float64
	domainBurst            int
	repeaters              map[int64]repeaterLimiter
	domains                map[string]*rate.Limiter
	global                 *rate.Limiter
}

func newLimits(domainRate float64, domainBurst int, globalRate float64, globalBurst int) *limits {
	return &limits{
		domainRate: domainRate, domainBurst: domainBurst, globalRate: globalRate,
		repeaters: map[int64]repeaterLimiter{},
		domains:   map[string]*rate.Limiter{},
		global:    newLimiter(globalRate, globalBurst),
	}
}

// newLimiter returns nil for "no limit". A burst of 0 means one second's worth.
func newLimiter(perSecond float64, burst int) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	if burst <= 0 {
		burst = max(1, int(math.Ceil(perSecond)))
	}
	return rate.NewLimiter(rate.Limit(perSecond), burst)
}

// repeaterLimiter remembers the settings its bucket was built from, so an
// edited repeater gets a new bucket.
type repeaterLimiter struct {
	perSecond float64
	burst     int
	lim       *rate.Limiter
}

func (l *limits) chain(r store.ReadyRepeater) []*rate.Limiter {
	rl, ok := l.repeaters[r.ID]
	if !ok || rl.perSecond != r.RateLimitPerS || rl.burst != r.RateBurst {
		rl = repeaterLimiter{r.RateLimitPerS, r.RateBurst, newLimiter(r.RateLimitPerS, r.RateBurst)}
		l.repeaters[r.ID] = rl
	}
	dl, ok := l.domains[r.Domain]
	if !ok {
		dl = newLimiter(l.domainRate, l.domainBurst)
		l.domains[r.Domain] = dl
	}
	return []*rate.Limiter{rl.lim, dl, l.global}
}

// reserve takes up to want tokens from every bucket of r, as many as the
// emptiest allows. When that is none it returns how long until one token is
// there, so the dispatcher knows when to look again.
func (l *limits) reserve(r store.ReadyRepeater, now time.Time, want int) (n int, retryIn time.Duration) {
	n = want
	for _, lim := range l.chain(r) {
		if lim != nil {
			n = min(n, int(lim.TokensAt(now)))
		}
	}
	if n < 1 {
		return 0, l.untilToken(r, now)
	}
	for _, lim := range l.chain(r) {
		if lim != nil {
			lim.AllowN(now, n)
		}
	}
	return n, 0
}

func (l *limits) untilToken(r store.ReadyRepeater, now time.Time) time.Duration {
	var wait time.Duration
	for _, lim := range l.chain(r) {
		if lim == nil {
			continue
		}
		if missing := 1 - lim.TokensAt(now); missing > 0 {
			wait = max(wait, time.Duration(missing/float64(lim.Limit())*float64(time.Second)))
		}
	}
	return wait
}
