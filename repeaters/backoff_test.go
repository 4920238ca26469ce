package repeaters

import (
	"testing"
	"time"

	"repeaterd/store"
)

func fixedPolicy() BackoffPolicy {
	return BackoffPolicy{Min: 5 * time.Minute, Max: 7 * 24 * time.Hour, Jitter: 0.1, Rand: func() float64 { return 0.5 }}.WithDefaults()
}

func TestBackoffDelayDoublesAndCaps(t *testing.T) {
	p := fixedPolicy()
	cases := []struct {
		n          int
		retryAfter time.Duration
		want       time.Duration
	}{
		{1, 0, 5 * time.Minute},
		{2, 0, 10 * time.Minute},
		{3, 0, 20 * time.Minute},
		{20, 0, 7 * 24 * time.Hour},
		{1, time.Hour, time.Hour},                    // Retry-After outranks a shorter backoff
		{1, 30 * 24 * time.Hour, 7 * 24 * time.Hour}, // but is capped at the max
	}
	for _, c := range cases {
		if got := p.Delay(c.n, c.retryAfter); got != c.want {
			t.Errorf("Delay(%d, %s) = %s, want %s", c.n, c.retryAfter, got, c.want)
		}
	}
}

func TestBackoffJitterStaysInBounds(t *testing.T) {
	for _, r := range []float64{0, 0.25, 0.999} {
		p := fixedPolicy()
		p.Rand = func() float64 { return r }
		got := p.Delay(1, 0)
		if got < 270*time.Second || got > 330*time.Second {
			t.Errorf("jitter %v: delay %s outside 5m ± 10%%", r, got)
		}
	}
}

func TestDecide(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	later := now.Add(time.Hour)
	p := fixedPolicy()
	cases := []struct {
		name        string
		rep         store.Repeater
		sum         store.BatchSummary
		wantNext    *time.Time
		wantCount   int
		wantWorkers int
	}{
		{"nothing sent leaves it alone", store.Repeater{NextAttemptAt: &later, BackoffCount: 3, EffectiveWorkers: 4},
			store.BatchSummary{}, &later, 3, 4},
		{"a success resets", store.Repeater{NextAttemptAt: &later, BackoffCount: 3},
			store.BatchSummary{Attempted: 2, Succeeded: 1, Failed: 1}, nil, 0, 7},
		{"a rejection resets too", store.Repeater{BackoffCount: 2},
			store.BatchSummary{Attempted: 1, Rejected: 1}, nil, 0, 7},
		{"only failures back off", store.Repeater{BackoffCount: 1},
			store.BatchSummary{Attempted: 3, Failed: 3}, ptr(now.Add(10 * time.Minute)), 2, 7},
		{"throttling halves concurrency", store.Repeater{EffectiveWorkers: 6},
			store.BatchSummary{Attempted: 3, Failed: 3, Throttled: 3}, ptr(now.Add(5 * time.Minute)), 1, 3},
		{"a clean batch adds one worker back", store.Repeater{EffectiveWorkers: 3},
			store.BatchSummary{Attempted: 3, Succeeded: 3}, nil, 0, 4},
		{"success with Retry-After still waits", store.Repeater{},
			store.BatchSummary{Attempted: 1, Succeeded: 1, RetryAfter: 3 * time.Second}, ptr(now.Add(3 * time.Second)), 0, 7},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := p.Decide(&c.rep, c.sum, now)
			if (d.NextAttemptAt == nil) != (c.wantNext == nil) || d.NextAttemptAt != nil && !d.NextAttemptAt.Equal(*c.wantNext) {
				t.Errorf("next = %v, want %v", d.NextAttemptAt, c.wantNext)
			}
			if d.BackoffCount != c.wantCount || d.EffectiveWorkers != c.wantWorkers {
				t.Errorf("count %d workers %d, want %d %d", d.BackoffCount, d.EffectiveWorkers, c.wantCount, c.wantWorkers)
			}
		})
	}
}

func TestConcurrencyHonoursTheCap(t *testing.T) {
	p := fixedPolicy()
	p.MaxWorkers = 4
	if got := p.Concurrency(&store.Repeater{MaxWorkers: 10}); got != 4 {
		t.Fatalf("capped concurrency = %d, want 4", got)
	}
	if got := p.Concurrency(&store.Repeater{MaxWorkers: 10, EffectiveWorkers: 2}); got != 2 {
		t.Fatalf("AIMD-lowered concurrency = %d, want 2", got)
	}
}
