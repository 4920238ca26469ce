package tasks_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"repeaterd/repeaters"
	"repeaterd/repeaters/repeatertest"
	"repeaterd/store"
	"repeaterd/tasks"
)

// Endpoints between working and dead, as an operator meets them. The
// figures at the issue's sizes (20 s, 60 s windows) are `repeaterd bench
// hostile`'s; these are the short forms.

// One record its endpoint refuses, the oldest of 120: the other 119 are
// delivered as if it were not there, and it is tried on its own schedule
// (1 s doubling here), not burnt through its tries in a moment.
func TestPoisonRecordDoesNotHoldUpTheOthers(t *testing.T) {
	h := newHarness(t)
	var poison string
	sk := repeatertest.NewServer(t, repeatertest.Config{Respond: func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(repeaters.HeaderWebhookID) == poison {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}})
	rep := h.repeater("d", sk.URL("/poison"))
	ids := h.load(rep, 120)
	poison = repeaters.WebhookID(ids[0])
	began := time.Now()
	h.start("dispatcher", "worker")
	h.waitFor("the 119 healthy records delivered", 10*time.Second, func() bool {
		return h.countSQL(`SELECT count(*) FROM repeat_records WHERE repeater_id = $1 AND state = 4`, rep.ID) == 119
	})
	took := time.Since(began)
	if took > 3*time.Second {
		t.Fatalf("the 119 healthy records took %s behind one refused record", took)
	}
	time.Sleep(time.Until(began.Add(6 * time.Second))) // the window the poison record's retries are counted in
	rec, _, err := h.eng.Store.GetRecord(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("119 delivered in %s; the refused record: %d attempts in 6s, %s", took, rec.AttemptCount, rec.State)
	if rec.AttemptCount > 3 || rec.State != store.StateFail {
		t.Fatalf("the refused record: %d attempts in 6s, %s; want at most 3 (retries 1s, 2s apart) and still Fail",
			rec.AttemptCount, rec.State)
	}
}

// Three tenants with eight repeaters each on an endpoint that never
// answers, at the longest timeout: they hold their shares of the worker
// pool and no more, and a fourth tenant's records go out at once.
func TestSlowTenantsDoNotDelayOthers(t *testing.T) {
	h := newHarness(t)
	hole, err := repeatertest.NewBlackHole()
	if err != nil {
		t.Fatal(err)
	}
	sk := repeatertest.NewServer(t, repeatertest.Config{})
	for _, d := range []string{"slow1", "slow2", "slow3"} {
		for i := range 8 {
			r := h.repeater(d, hole.URL(fmt.Sprintf("/%s/%d", d, i)), func(r *store.Repeater) {
				r.TimeoutMS = int(h.eng.Store.MaxTimeout() / time.Millisecond)
			})
			h.load(r, 5)
		}
	}
	healthy := h.repeater("healthy", sk.URL("/healthy"))
	h.start("dispatcher", "worker")
	t.Cleanup(func() { _ = hole.Close() }) // before the engine stops: the hung requests fail, the drain is quick
	// The slow tenants take what they may: 8 workers / (3 + 1) = 2 batches
	// each, of 5 requests (their records).
	for i := range 2 * 3 * 5 {
		awaitEvent(t, hole.Accepted(), fmt.Sprintf("the slow tenants' requests hanging (%d)", i), 10*time.Second)
	}
	var ids []int64
	for i := range 20 {
		rec, _, err := h.eng.Store.RegisterRecord(ctx, store.RegisterParams{RepeaterID: healthy.ID, Body: fmt.Appendf(nil, `{"n":%d}`, i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rec.ID)
		time.Sleep(50 * time.Millisecond) // records arriving one at a time, as a tenant registers them
	}
	var lat []time.Duration
	for _, id := range ids {
		at, ok := sk.Wait(t.Context(), repeaters.WebhookID(id))
		if !ok {
			t.Fatalf("record %d was never delivered", id)
		}
		rec, _, err := h.eng.Store.GetRecord(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		lat = append(lat, at.Sub(rec.RegisteredAt))
	}
	p99 := percentile(lat, 0.99)
	t.Logf("healthy tenant beside 24 hung repeaters (%d requests held): p50 %s, p99 %s", hole.Held(), percentile(lat, 0.5), p99)
	if p99 > time.Second {
		t.Fatalf("the healthy tenant's p99 registration→delivery is %s; want < 1s", p99)
	}
	if held := hole.Held(); held > 2*3*5 {
		t.Fatalf("%d requests hang on the black hole; the slow tenants took more than their shares (30)", held)
	}
}

// An endpoint that accepts one request per window and refuses the rest
// (503): the repeater learns a pace near that rate instead of being backed
// off, so most windows deliver and refusals do not outnumber deliveries.
func TestFragileEndpointIsPacedNotBackedOff(t *testing.T) {
	// The pacer learns the endpoint's rate in its first seconds; the
	// measurement starts after that, so it judges the pace it settles on.
	// The short form runs beside the whole suite on 2 cores, where the
	// engine's own delays make the pace miss more windows; a backed-off
	// repeater would deliver in almost none.
	window, warmup, span, share := time.Second, 3*time.Second, drillLength(12*time.Second, 60*time.Second), 2.0/3
	if chaos() {
		window, share = 2*time.Second, 0.8
	}
	h := newHarness(t)
	fragile := &repeatertest.Windowed{Window: window, PerWindow: 1}
	sk := repeatertest.NewServer(t, repeatertest.Config{Respond: fragile.Respond})
	rep := h.repeater("d", sk.URL("/fragile"), func(r *store.Repeater) { r.MaxAttempts = 100 })
	h.load(rep, 500)
	h.start("dispatcher", "worker")
	h.waitFor("the first request", 10*time.Second, func() bool { return sk.Count("/fragile") > 0 })
	from := sk.Times("/fragile")[0].Add(warmup)
	time.Sleep(time.Until(from.Add(span))) // the measurement window itself
	accepted, refused, delivering, windows := fragile.Counts(from, from.Add(span))
	got, _ := h.eng.Store.GetRepeater(ctx, rep.ID)
	t.Logf("%s windows of %s: %d of %d delivered; %d accepted, %d refused; pace %.2f/s, backoff_count %d",
		span, window, delivering, windows, accepted, refused, got.PacePerS, got.BackoffCount)
	if float64(delivering) < share*float64(windows) {
		t.Errorf("%d of %d windows delivered a record; want at least %.0f %%", delivering, windows, 100*share)
	}
	if refused > accepted {
		t.Errorf("%d requests refused for %d delivered; want no more refused than delivered", refused, accepted)
	}
}

// 10/s with a burst of 5 allows at most 5 + 10×2 = 25 requests in any 2 s,
// on both paths and across a dispatcher leader's death.
func TestRateLimitHoldsInEveryWindow(t *testing.T) {
	const rate, burst, span = 10, 5, 2 * time.Second
	limit := burst + int(rate*span.Seconds())
	check := func(t *testing.T, times []time.Time) {
		t.Helper()
		most := 0
		for i := range times {
			n := 0
			for _, at := range times[i:] {
				if at.Sub(times[i]) < span {
					n++
				}
			}
			most = max(most, n)
		}
		t.Logf("%d requests, at most %d in any %s", len(times), most, span)
		if most > limit {
			t.Fatalf("%d requests in one %s window; the limit allows %d", most, span, limit)
		}
		if most < limit*3/4 {
			t.Fatalf("at most %d requests in any %s; the limiter starves the repeater (limit %d)", most, span, limit)
		}
	}
	limited := func(r *store.Repeater) { r.RateLimitPerS, r.RateBurst = rate, burst }

	t.Run("new path, leader killed", func(t *testing.T) {
		h := newHarness(t)
		sk := repeatertest.NewServer(t, repeatertest.Config{})
		rep := h.repeater("d", sk.URL("/limited"), limited)
		h.start("worker")
		leader, standby := h.spawnDispatchers()
		h.load(rep, 80)
		h.waitFor("deliveries under the first leader", 10*time.Second, func() bool { return sk.Count("/limited") >= 20 })
		leader.kill()
		h.waitFor("every record delivered", 20*time.Second, func() bool { return sk.Count("/limited") >= 80 })
		if !standby.isLeading() {
			t.Fatal("the standby never led")
		}
		check(t, sk.Times("/limited"))
	})
	t.Run("legacy path", func(t *testing.T) {
		h := newHarness(t, func(c *tasks.EngineConfig) { c.LegacyByDefault = true })
		sk := repeatertest.NewServer(t, repeatertest.Config{})
		rep := h.repeater("d", sk.URL("/limited"), limited)
		h.load(rep, 60)
		h.start("worker", "scheduler")
		h.waitFor("every record delivered", 20*time.Second, func() bool { return sk.Count("/limited") >= 60 })
		check(t, sk.Times("/limited"))
	})
}
