package repeaters

import (
	"testing"
	"time"

	"repeaterd/store"
)

func TestDecidePaces(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := fixedPolicy()
	p.Jitter = -1
	p = p.WithDefaults()
	cases := []struct {
		name        string
		rep         store.Repeater
		sum         store.BatchSummary
		wantPace    float64
		wantClean   int
		wantCount   int // backoff_count after
		wantNext    time.Duration
		wantWorkers int
		wantFlowing bool
	}{
		{"a healthy endpoint is never paced", store.Repeater{Flowing: true},
			store.BatchSummary{Attempted: 50, Succeeded: 50}, 0, 0, 0, 0, 7, true},
		{"one poison record among successes is no rate signal", store.Repeater{Flowing: true},
			store.BatchSummary{Attempted: 50, Succeeded: 49, Failed: 1, Throttled: 1, ThrottledFirst: 1}, 0, 0, 0, 0, 7, true},
		{"refusals after a success: too fast", store.Repeater{},
			store.BatchSummary{Attempted: 7, Succeeded: 1, Failed: 6, Throttled: 6, ThrottledFirst: 6}, 1, 0, 0, 0, 3, true},
		{"a whole batch refused right after successes: too fast, not dead", store.Repeater{Flowing: true},
			store.BatchSummary{Attempted: 7, Failed: 7, Throttled: 7, ThrottledFirst: 7}, 1, 0, 0, 0, 3, false},
		{"refused again with no success between: dead", store.Repeater{PacePerS: 1},
			store.BatchSummary{Attempted: 1, Failed: 1, Throttled: 1}, 1, 0, 1, 5 * time.Minute, 3, false},
		{"refused from the start: dead", store.Repeater{},
			store.BatchSummary{Attempted: 7, Failed: 7, Throttled: 7, ThrottledFirst: 7}, 0, 0, 1, 5 * time.Minute, 3, false},
		{"paced and refused right after a success: slower", store.Repeater{PacePerS: 2, PaceClean: 3, Flowing: true},
			store.BatchSummary{Attempted: 1, Failed: 1, Throttled: 1}, 1.4, 0, 0, 0, 3, false},
		{"a lone poison record refused again backs off", store.Repeater{Flowing: true},
			store.BatchSummary{Attempted: 1, Failed: 1, Throttled: 1}, 0, 0, 1, 5 * time.Minute, 3, false},
		{"clean while paced probes upwards", store.Repeater{PacePerS: 1, PaceClean: 1, Flowing: true},
			store.BatchSummary{Attempted: 1, Succeeded: 1}, 1.2, 2, 0, 0, 7, true},
		{"fast enough, pacing ends", store.Repeater{PacePerS: 900, PaceClean: 9, Flowing: true},
			store.BatchSummary{Attempted: 5, Succeeded: 5}, 0, 0, 0, 0, 7, true},
		{"errors are no rate signal", store.Repeater{PacePerS: 3, PaceClean: 2, Flowing: true},
			store.BatchSummary{Attempted: 7, Failed: 7}, 3, 2, 1, 5 * time.Minute, 7, false},
		{"too fast with Retry-After waits for it", store.Repeater{Flowing: true, BackoffCount: 0},
			store.BatchSummary{Attempted: 3, Failed: 3, Throttled: 3, ThrottledFirst: 3, RetryAfter: 10 * time.Second}, 1, 0, 0, 10 * time.Second, 3, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := p.Decide(&c.rep, c.sum, now)
			var next time.Duration
			if d.NextAttemptAt != nil {
				next = d.NextAttemptAt.Sub(now)
			}
			if d.PacePerS != c.wantPace || d.PaceClean != c.wantClean || d.BackoffCount != c.wantCount || next != c.wantNext ||
				d.EffectiveWorkers != c.wantWorkers || d.Flowing != c.wantFlowing {
				t.Errorf("pace %g clean %d backoff %d next %s workers %d flowing %v; want %g %d %d %s %d %v",
					d.PacePerS, d.PaceClean, d.BackoffCount, next, d.EffectiveWorkers, d.Flowing,
					c.wantPace, c.wantClean, c.wantCount, c.wantNext, c.wantWorkers, c.wantFlowing)
			}
		})
	}
}

func TestSendGate(t *testing.T) {
	ok := store.Outcome{State: store.StateSuccess}
	refused := store.Outcome{State: store.StateFail, StatusCode: 503}
	broken := store.Outcome{State: store.StateFail, StatusCode: 500}
	for _, c := range []struct {
		name     string
		outcomes []store.Outcome
		stopAt   int // index of the outcome that stops the batch; -1 = never
	}{
		{"healthy", []store.Outcome{ok, ok, ok, ok, ok, ok, ok, ok}, -1},
		{"one poison record", []store.Outcome{refused, ok, ok, ok, ok, ok, ok, ok}, -1},
		{"too fast", []store.Outcome{ok, refused, refused}, 2},
		{"dies mid-batch", []store.Outcome{ok, ok, broken, broken, broken}, 4},
	} {
		g := &sendGate{window: 3}
		stopped := -1
		for i, o := range c.outcomes {
			if g.stop(o) && stopped < 0 {
				stopped = i
			}
		}
		if stopped != c.stopAt {
			t.Errorf("%s: stopped at %d, want %d", c.name, stopped, c.stopAt)
		}
	}
}
