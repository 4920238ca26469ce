package store_test

import (
	"strings"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// The sending limits are refused on save with a clear error, and nothing is
// written: a 1e-11/s rate made the dispatcher compute waits past any clock,
// and an unbounded timeout let one endpoint hold a worker slot for weeks.
func TestRepeaterLimitsAreBounded(t *testing.T) {
	st := storetest.NewStore(t)
	for _, tc := range []struct {
		name, want string
		edit       func(*store.Repeater)
	}{
		{"absurdly low rate", "rate_limit_per_s must be 0 (no limit) or from 0.001 to 100000 requests per second, not 1e-11",
			func(r *store.Repeater) { r.RateLimitPerS = 1e-11 }},
		{"absurdly high rate", "not 1e+09", func(r *store.Repeater) { r.RateLimitPerS = 1e9 }},
		{"huge burst", "rate_burst must be from 0 (one second's worth) to 100000, not 1073741824", func(r *store.Repeater) { r.RateLimitPerS, r.RateBurst = 10, 1<<30 }},
		{"timeout past the maximum", "timeout_ms must be at most 120000 (2m0s), not 120001",
			func(r *store.Repeater) { r.TimeoutMS = 120_001 }},
	} {
		r := &store.Repeater{Domain: "limits", Name: tc.name, URL: "https://example.com/"}
		tc.edit(r)
		err := st.CreateRepeater(t.Context(), r)
		if store.ErrorCode(err) != store.EINVALID || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want EINVALID saying %q", tc.name, err, tc.want)
		}
	}
	if n := storetest.Count(t, st, `SELECT count(*) FROM repeaters WHERE domain = 'limits'`); n != 0 {
		t.Fatalf("%d refused repeaters were saved", n)
	}

	ok := storetest.Repeater(t, st, storetest.RepeaterOpts{Edit: func(r *store.Repeater) {
		r.RateLimitPerS, r.RateBurst, r.TimeoutMS = store.MinRateLimitPerS, 1, int(store.DefaultMaxTimeout/time.Millisecond)
	}})
	ok.TimeoutMS = 200_000
	if err := st.UpdateRepeater(t.Context(), ok); store.ErrorCode(err) != store.EINVALID {
		t.Fatalf("an update past the maximum timeout: %v, want EINVALID", err)
	}
}

func TestMaxTimeoutIsConfigurable(t *testing.T) {
	st, err := store.OpenWith(t.Context(), storetest.NewDB(t), store.Options{MaxTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	r := &store.Repeater{Domain: "d", URL: "https://example.com/", TimeoutMS: 6000}
	if err := st.CreateRepeater(t.Context(), r); store.ErrorCode(err) != store.EINVALID ||
		!strings.Contains(err.Error(), "at most 5000 (5s)") {
		t.Fatalf("a 6s timeout under a 5s maximum: %v", err)
	}
	r.TimeoutMS = 5000
	if err := st.CreateRepeater(t.Context(), r); err != nil {
		t.Fatalf("a timeout at the maximum: %v", err)
	}
}

func TestValidateRateLimit(t *testing.T) {
	for _, tc := range []struct {
		rate  float64
		burst int
		ok    bool
	}{{0, 0, true}, {0.001, 0, true}, {100_000, 100_000, true}, {10, 5, true},
		{1e-11, 0, false}, {0.0009, 1, false}, {100_001, 0, false}, {10, -1, false}, {10, 100_001, false}, {-1, 0, false}} {
		if err := store.ValidateRateLimit("r", "b", tc.rate, tc.burst); (err == nil) != tc.ok {
			t.Errorf("rate %g burst %d: %v, want ok=%v", tc.rate, tc.burst, err, tc.ok)
		}
	}
}
