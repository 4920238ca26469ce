package repeaters

import (
	"context"
	"testing"
	"time"

	"repeaterd/store/storetest"
)

func TestLimitsTakeFromTheEmptiestBucketAndRefund(t *testing.T) {
	rdb := storetest.RedisClient(t)
	ctx := context.Background()
	now := time.UnixMilli(time.Now().UnixMilli())
	l := NewLimits(rdb, DispatcherConfig{})
	r := LimitKey{RepeaterID: 1, Domain: "d", RateLimitPerS: 10, RateBurst: 5}

	take := func(l *Limits, k LimitKey, at time.Time, want int) (int, time.Duration) {
		t.Helper()
		n, wait, err := l.Take(ctx, k, at, want)
		if err != nil {
			t.Fatal(err)
		}
		return n, wait
	}
	if n, _ := take(l, r, now, 50); n != 5 {
		t.Fatalf("first take = %d, want the burst (5)", n)
	}
	if n, wait := take(l, r, now, 50); n != 0 || wait != 100*time.Millisecond {
		t.Fatalf("empty bucket: n=%d wait=%s, want 0 and 100ms (one token at 10/s)", n, wait)
	}
	if n, _ := take(l, r, now.Add(300*time.Millisecond), 50); n != 3 {
		t.Fatalf("after 300ms at 10/s: %d, want 3", n)
	}
	if err := l.Refund(ctx, r, now.Add(300*time.Millisecond), 2); err != nil {
		t.Fatal(err)
	}
	if n, _ := take(l, r, now.Add(300*time.Millisecond), 50); n != 2 {
		t.Fatalf("after a refund of 2: %d, want 2", n)
	}
	// A refund never fills a bucket past its burst.
	if err := l.Refund(ctx, r, now.Add(300*time.Millisecond), 100); err != nil {
		t.Fatal(err)
	}
	if n, _ := take(l, r, now.Add(300*time.Millisecond), 50); n != 5 {
		t.Fatalf("after a refund past the burst: %d, want the burst (5)", n)
	}

	// Another dispatcher (a new leader) carries on from the same buckets.
	successor := NewLimits(rdb, DispatcherConfig{})
	if n, _ := take(successor, r, now.Add(300*time.Millisecond), 50); n != 0 {
		t.Fatalf("a new leader took %d at once; the buckets were empty", n)
	}

	unlimited := LimitKey{RepeaterID: 2, Domain: "d"}
	if n, _ := take(l, unlimited, now, 50); n != 50 || l.Limited(unlimited) {
		t.Fatalf("unlimited repeater got %d (limited %v), want 50", n, l.Limited(unlimited))
	}
	global := NewLimits(rdb, DispatcherConfig{GlobalRatePerS: 100})
	for i := range 10 {
		if n, _ := take(global, LimitKey{RepeaterID: int64(10 + i), Domain: "g"}, now, 1); n != 1 {
			t.Fatalf("single-record repeater %d under a 100/s global limit got %d, want its one token", i, n)
		}
	}
	if n, _ := take(global, unlimited, now, 200); n != 90 {
		t.Fatalf("the global bucket after ten single tokens: %d, want the 90 left", n)
	}
}

func TestLimitsPaceStartsEmptyAndALoweredRateStartsOver(t *testing.T) {
	rdb := storetest.RedisClient(t)
	ctx := context.Background()
	now := time.UnixMilli(time.Now().UnixMilli())
	l := NewLimits(rdb, DispatcherConfig{})

	paced := LimitKey{RepeaterID: 1, Domain: "d", PacePerS: 0.5}
	if n, wait, err := l.Take(ctx, paced, now, 10); err != nil || n != 0 || wait != 2*time.Second {
		t.Fatalf("a new pace: n=%d wait=%s err=%v; want nothing until one interval (2s) has passed", n, wait, err)
	}
	if n, _, _ := l.Take(ctx, paced, now.Add(2*time.Second), 10); n != 1 {
		t.Fatalf("one interval later: %d, want one request (a pace's burst is one second's worth, at least 1)", n)
	}

	r := LimitKey{RepeaterID: 2, Domain: "d", RateLimitPerS: 100}
	if n, _, _ := l.Take(ctx, r, now, 10); n != 10 {
		t.Fatalf("a full bucket at 100/s gave %d of 10", n)
	}
	r.RateLimitPerS = 1
	if n, _, _ := l.Take(ctx, r, now, 10); n != 0 {
		t.Fatalf("after its rate was lowered the bucket gave %d at once; it must start over empty", n)
	}
}

// A rate limit so low that its wait overflows a time.Duration made the
// dispatcher spin; the wait is bounded instead.
func TestLimitsBoundTheWait(t *testing.T) {
	l := NewLimits(storetest.RedisClient(t), DispatcherConfig{})
	now := time.Now()
	k := LimitKey{RepeaterID: 1, Domain: "d", RateLimitPerS: 1e-11}
	if n, _, err := l.Take(context.Background(), k, now, 1); err != nil || n != 1 {
		t.Fatalf("first token: %d, %v", n, err)
	}
	if n, wait, err := l.Take(context.Background(), k, now, 1); err != nil || n != 0 || wait != maxWait {
		t.Fatalf("then: n=%d wait=%s err=%v; want none and the bounded wait (%s)", n, wait, err, maxWait)
	}
}

func TestLimitsReserveSchedulesAheadWithinTheHorizon(t *testing.T) {
	l := NewLimits(storetest.RedisClient(t), DispatcherConfig{})
	now := time.UnixMilli(time.Now().UnixMilli())
	k := LimitKey{RepeaterID: 1, Domain: "d", RateLimitPerS: 10, RateBurst: 2}
	var waits []time.Duration
	for range 5 {
		ok, wait, err := l.Reserve(context.Background(), k, now, 250*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			waits = append(waits, -wait)
			continue
		}
		waits = append(waits, wait)
	}
	want := []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond, -300 * time.Millisecond}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("reservations: %v; want %v (the burst now, then one per 100ms, none past the 250ms horizon)", waits, want)
		}
	}
}

// A learned pace is any float; the bucket must refill at it, not take each
// call for a lowered rate because the rate's stored form differs.
func TestLimitsRefillAtAnUnroundRate(t *testing.T) {
	l := NewLimits(storetest.RedisClient(t), DispatcherConfig{})
	now := time.UnixMilli(time.Now().UnixMilli())
	k := LimitKey{RepeaterID: 1, Domain: "d", PacePerS: 3.7292935679999997}
	for i := range 4 {
		at := now.Add(time.Duration(i) * 300 * time.Millisecond)
		n, _, err := l.Take(context.Background(), k, at, 1)
		if err != nil {
			t.Fatal(err)
		}
		if want := min(i, 1); n != want {
			t.Fatalf("take %d, %s after the first: %d, want %d", i, at.Sub(now), n, want)
		}
	}
}
