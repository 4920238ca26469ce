package repeaters

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// refusing answers 503 to the webhook-ids given and 200 to the rest.
func refusing(ids ...string) func(string) int {
	return func(id string) int {
		for _, r := range ids {
			if id == r {
				return http.StatusServiceUnavailable
			}
		}
		return http.StatusOK
	}
}

func (e *engineEnv) update(t *testing.T, p *Processor, ev batchEvents, b Batch) store.BatchDecision {
	t.Helper()
	if err := p.UpdateRepeater(context.Background(), b.RepeaterID, b.Token); err != nil {
		t.Fatal(err)
	}
	return awaitSignal(t, ev.applied, "the update applied")
}

// A record its endpoint refuses gets its own retry time, and the repeater
// is neither backed off nor slowed down for it.
func TestARefusedRecordWaitsItsOwnRetry(t *testing.T) {
	e := newEngineEnv(t)
	rc, r := e.receivingRepeater(t, "a", nil, func(r *store.Repeater) { r.MaxWorkers = 3 })
	ids := storetest.Records(t, e.st, r, 5)
	rc.answer(refusing(WebhookID(ids[0])))
	p, ev := e.newProcessor()
	b := e.lockedBatch(t, r, 10)
	processBatch(t, p, b)
	if sum := awaitSignal(t, ev.recorded, "the batch recorded"); sum.Succeeded != 4 || sum.Throttled != 1 {
		t.Fatalf("recorded %+v, want 4 delivered and the poison record refused", sum)
	}
	poison := e.getRecord(t, ids[0])
	if want := e.clock.Now().Add(time.Minute); poison.State != store.StateFail || !poison.NextCheck.Equal(want) {
		t.Fatalf("the refused record: %s due %s; want Fail due at its first retry, %s (the policy's Min)", poison.State, poison.NextCheck, want)
	}
	d := e.update(t, p, ev, b)
	if d.BackoffCount != 0 || d.NextAttemptAt != nil || d.PacePerS != 0 || d.EffectiveWorkers != 3 {
		t.Fatalf("decision %+v; want the repeater neither backed off, paced nor slowed for one refused record", d)
	}
	storetest.Records(t, e.st, r, 2)
	again, err := e.st.ClaimReadyRecords(context.Background(), r.ID, 10, "batch:next", time.Minute)
	if err != nil || len(again) != 2 {
		t.Fatalf("the next batch claimed %d records (%v); want the 2 new ones, not the refused one before its retry", len(again), err)
	}
}

// A wave of which one request got through and the rest were refused stops
// the batch: the endpoint said "too fast". The repeater is paced, not backed
// off, and the records never sent stay as they were.
func TestABatchStopsWhenTheEndpointSaysTooFast(t *testing.T) {
	e := newEngineEnv(t)
	var served atomic.Int32
	_, r := e.receivingRepeater(t, "a", func(string) int {
		if served.Add(1) == 1 {
			return http.StatusOK
		}
		return http.StatusTooManyRequests
	}, func(r *store.Repeater) { r.MaxWorkers = 7 })
	storetest.Records(t, e.st, r, 20)
	p, ev := e.newProcessor()
	b := e.lockedBatch(t, r, 20)
	processBatch(t, p, b)
	sum := awaitSignal(t, ev.recorded, "the batch recorded")
	if n := served.Load(); n != 7 || sum.Attempted != 7 || sum.Succeeded != 1 {
		t.Fatalf("%d requests, recorded %+v; want the first wave only (7), one delivered", n, sum)
	}
	unsent := storetest.Count(t, e.st, `SELECT count(*) FROM repeat_records
		WHERE repeater_id = $1 AND state = 1 AND attempt_count = 0 AND claim_owner IS NULL`, r.ID)
	if unsent != 13 {
		t.Fatalf("%d records left untouched, want the 13 never sent", unsent)
	}
	d := e.update(t, p, ev, b)
	if d.BackoffCount != 0 || d.NextAttemptAt != nil || d.PacePerS != 1 || d.EffectiveWorkers != 3 {
		t.Fatalf("decision %+v; want paced at what got through (1/s), concurrency halved, not backed off", d)
	}
}

// Records never tried go first in a batch: a first wave of retried records
// that the endpoint refuses would stand for a dead endpoint and back the
// repeater off.
func TestFreshRecordsLeadTheFirstWave(t *testing.T) {
	e := newEngineEnv(t)
	rc, r := e.receivingRepeater(t, "a", nil, func(r *store.Repeater) { r.MaxWorkers = 1 })
	ids := storetest.Records(t, e.st, r, 4)
	rc.answer(refusing(WebhookID(ids[0])))
	// The oldest record was refused before and is due again.
	if _, err := e.st.Pool().Exec(context.Background(),
		`UPDATE repeat_records SET state = 2, attempt_count = 1 WHERE id = $1`, ids[0]); err != nil {
		t.Fatal(err)
	}
	p, ev := e.newProcessor()
	b := e.lockedBatch(t, r, 10)
	processBatch(t, p, b)
	if got := rc.received(); len(got) != 4 || got[0] != WebhookID(ids[1]) {
		t.Fatalf("requests %v; want all four, the fresh %s first", got, WebhookID(ids[1]))
	}
	awaitSignal(t, ev.recorded, "the batch recorded")
	if d := e.update(t, p, ev, b); d.BackoffCount != 0 {
		t.Fatalf("decision %+v; want no backoff", d)
	}
}
