package repeaters

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"repeaterd/store"
)

// Limits are the token buckets that rate-limit sending: a repeater's own
// limit (rate_limit_per_s, rate_burst), its learned pace (pacing.go), its
// domain's and the global limit (DispatcherConfig). They live in Redis and
// every bucket of one send is taken in one script, so:
//
//   - both paths draw from the same buckets (the dispatcher when it hands out
//     a batch, check_repeaters when it schedules a legacy send);
//   - a new dispatcher leader carries on from the old one's buckets instead
//     of starting them full: a takeover is no burst;
//   - what a batch did not send is refunded (Refund), so a limit charges only
//     for records sent.
//
// x/time/rate cannot do this: its buckets live in one process, and it can
// undo a reservation (CancelAt) only before the reservation's time, never
// refund tokens of a batch that has run.
//
// A bucket's key lapses once it would have refilled (plus ten minutes); a
// missing key is a full bucket, except a pace bucket, which starts empty:
// the pace was just lowered, or the endpoint was quiet long enough to be
// probed gently again. A bucket whose rate is lowered starts over empty.
type Limits struct {
	rdb                    redis.UniversalClient
	domainRate, globalRate float64
	domainBurst            int
	globalBurst            int
}

// NewLimits returns the buckets on rdb, with the domain and global limits
// of cfg.
func NewLimits(rdb redis.UniversalClient, cfg DispatcherConfig) *Limits {
	return &Limits{rdb: rdb, domainRate: cfg.DomainRatePerS, domainBurst: cfg.DomainBurst,
		globalRate: cfg.GlobalRatePerS, globalBurst: cfg.GlobalBurst}
}

// LimitKey names the buckets one send draws from, with the repeater's own
// settings.
type LimitKey struct {
	RepeaterID    int64
	Domain        string
	RateLimitPerS float64
	RateBurst     int
	PacePerS      float64 // the learned pace; 0 = not paced
}

// bucketPrefix starts every bucket's Redis key; the {repeaterd} hash tag
// keeps them in the locks' slot, so one script may take several on a Cluster.
const bucketPrefix = "{repeaterd}:bucket:"

// paceKey is the Redis key of a repeater's pace bucket.
func paceKey(repeaterID int64) string { return fmt.Sprintf("%space:%d", bucketPrefix, repeaterID) }

// readyKey is the key of a ready repeater.
func readyKey(r store.ReadyRepeater) LimitKey {
	return LimitKey{RepeaterID: r.ID, Domain: r.Domain, RateLimitPerS: r.RateLimitPerS, RateBurst: r.RateBurst, PacePerS: r.PacePerS}
}

// bucket is one token bucket of a send: its key, rate, burst, and what a
// new bucket holds.
type bucket struct {
	key   string
	rate  float64
	burst int
	start int
}

// burstOf is a limit's burst: the configured one, or one second's worth (at
// least 1).
func burstOf(perSecond float64, burst int) int {
	if burst > 0 {
		return burst
	}
	return max(1, int(math.Ceil(perSecond)))
}

// buckets lists the buckets that limit k; none when nothing limits it.
func (l *Limits) buckets(k LimitKey) []bucket {
	var out []bucket
	add := func(key string, rate float64, burst int, full bool) {
		if rate <= 0 {
			return
		}
		b := bucket{key: bucketPrefix + key, rate: rate, burst: burst}
		if full {
			b.start = burst
		}
		out = append(out, b)
	}
	add(fmt.Sprintf("repeater:%d", k.RepeaterID), k.RateLimitPerS, burstOf(k.RateLimitPerS, k.RateBurst), true)
	// A pace is a rate, not a burst: at most a quarter second's worth at once
	// (one request below 8/s), for endpoints that count per short window.
	add(strings.TrimPrefix(paceKey(k.RepeaterID), bucketPrefix), k.PacePerS, max(1, int(k.PacePerS/4)), false)
	add("domain:"+k.Domain, l.domainRate, burstOf(l.domainRate, l.domainBurst), true)
	add("global", l.globalRate, burstOf(l.globalRate, l.globalBurst), true)
	return out
}

// Limited reports whether any bucket limits k.
func (l *Limits) Limited(k LimitKey) bool {
	return k.RateLimitPerS > 0 || k.PacePerS > 0 || l.domainRate > 0 || l.globalRate > 0
}

// maxWait bounds the wait a bucket reports: the dispatcher sleeps at most
// its poll ceiling anyway, and a wait this long is never spun on.
const maxWait = time.Hour

// luaBuckets runs one operation on every bucket of a send, atomically.
// KEYS: the buckets. ARGV[1] now (ms), ARGV[2] op, ARGV[3] n, ARGV[4]
// horizon (ms), then per key its rate (/s), burst and start tokens.
//
//	take    n: take up to n tokens, as many as the emptiest bucket holds;
//	        returns {taken, 0}, or {0, ms until one token} when none is there.
//	reserve 1: take one token now or from the future, if its time comes
//	        within the horizon; returns {1, ms until its time}, or {0, ms}
//	        (nothing taken) when that is past the horizon.
//	refund  n: give n tokens back, up to each burst; returns {n, 0}.
var luaBuckets = redis.NewScript(`
local now, op, n, horizon = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local t, rate, burst = {}, {}, {}
for i, key in ipairs(KEYS) do
  local b = 4 + (i - 1) * 3
  rate[i], burst[i] = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local s = redis.call("HMGET", key, "t", "a", "r")
  local tok, at, was = tonumber(s[1]), tonumber(s[2]), tonumber(s[3])
  if tok == nil then
    tok, at = tonumber(ARGV[b + 3]), now
  elseif was ~= nil and rate[i] < was * (1 - 1e-9) then
    tok, at = math.min(tok, 0), now
  end
  if now > at then tok = tok + (now - at) / 1000 * rate[i] end
  t[i] = math.min(tok, burst[i])
end
local function wait(need)
  local w = 0
  for i = 1, #KEYS do
    if t[i] < need then w = math.max(w, (need - t[i]) / rate[i] * 1000) end
  end
  return math.min(math.ceil(w), ` + strconv.FormatInt(maxWait.Milliseconds(), 10) + `)
end
local got, w = 0, 0
if op == "take" then
  for i = 1, #KEYS do n = math.min(n, math.floor(t[i])) end
  if n >= 1 then got = n else w = wait(1) end
elseif op == "reserve" then
  w = wait(1)
  if w <= horizon then got = 1 end
else
  got = -n
end
-- Stored even when nothing was taken: a new bucket starts counting now.
for i, key in ipairs(KEYS) do
  local tok = math.min(t[i] - got, burst[i])
  local ttl = math.ceil(math.max(burst[i] - tok, 0) / rate[i] * 1000) + 600000
  redis.call("HSET", key, "t", tostring(tok), "a", ARGV[1], "r", ARGV[4 + (i - 1) * 3 + 1])
  redis.call("PEXPIRE", key, math.min(ttl, 604800000))
end
return {math.abs(got), w}`)

func (l *Limits) run(ctx context.Context, bs []bucket, now time.Time, op string, n int, horizon time.Duration) (int, time.Duration, error) {
	keys := make([]string, len(bs))
	args := []any{now.UnixMilli(), op, n, horizon.Milliseconds()}
	for i, b := range bs {
		keys[i] = b.key
		args = append(args, strconv.FormatFloat(b.rate, 'g', -1, 64), b.burst, b.start)
	}
	res, err := luaBuckets.Run(ctx, l.rdb, keys, args...).Int64Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("rate limits: %w", err)
	}
	return int(res[0]), time.Duration(res[1]) * time.Millisecond, nil
}

// Take takes up to want tokens from every bucket of k at now, as many as
// the emptiest one holds. When that is none it returns how long until one
// token is there (at most an hour), so the caller knows when to look again.
// Nothing limiting k, it returns want.
func (l *Limits) Take(ctx context.Context, k LimitKey, now time.Time, want int) (n int, retryIn time.Duration, err error) {
	bs := l.buckets(k)
	if len(bs) == 0 || want < 1 {
		return want, 0, nil
	}
	return l.run(ctx, bs, now, "take", want, 0)
}

// Reserve takes one token from every bucket of k, now or from the future:
// the send may go after wait. When its time would come later than horizon,
// it takes nothing and ok is false (wait says when to ask again).
func (l *Limits) Reserve(ctx context.Context, k LimitKey, now time.Time, horizon time.Duration) (ok bool, wait time.Duration, err error) {
	bs := l.buckets(k)
	if len(bs) == 0 {
		return true, 0, nil
	}
	n, wait, err := l.run(ctx, bs, now, "reserve", 1, horizon)
	return n == 1, wait, err
}

// Refund gives n tokens back to every bucket of k (up to each burst): the
// batch that took them did not send that many.
func (l *Limits) Refund(ctx context.Context, k LimitKey, now time.Time, n int) error {
	bs := l.buckets(k)
	if len(bs) == 0 || n < 1 {
		return nil
	}
	_, _, err := l.run(ctx, bs, now, "refund", n, 0)
	return err
}
