package repeaters

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// batchEvents collects what a Processor signals.
type batchEvents struct {
	recorded chan store.BatchSummary
	applied  chan store.BatchDecision
}

// newProcessor returns a processor on e whose backoff is exactly Min
// doubling (no jitter), timed by e's fake clock, and the events it signals.
func (e *engineEnv) newProcessor() (*Processor, batchEvents) {
	ev := batchEvents{recorded: make(chan store.BatchSummary, 16), applied: make(chan store.BatchDecision, 16)}
	p := &Processor{
		Store: e.st, Locker: e.locker, Sender: e.sender, Logger: discardLogger(),
		Policy:     BackoffPolicy{Min: time.Minute, Max: time.Hour, Jitter: -1}.WithDefaults(), // -1: no jitter
		Clock:      e.clock,
		OnRecorded: func(_ Batch, sum store.BatchSummary) { ev.recorded <- sum },
		OnApplied:  func(_ int64, d store.BatchDecision) { ev.applied <- d },
	}
	return p, ev
}

// lockedBatch locks r and returns the batch the dispatcher would enqueue.
func (e *engineEnv) lockedBatch(t *testing.T, r *store.Repeater, limit int) Batch {
	t.Helper()
	return Batch{RepeaterID: r.ID, Domain: r.Domain, Token: e.lock(t, r.ID), Limit: limit}
}

func TestProcessorSendsABatchAndRecordsItsOutcomes(t *testing.T) {
	e := newEngineEnv(t)
	rc, r := e.receivingRepeater(t, "a", nil)
	ids := storetest.Records(t, e.st, r, 5)
	p, ev := e.newProcessor()
	p.FollowOns = -1 // one batch: follow-ons are followon_test.go's
	b := e.lockedBatch(t, r, 3)

	processBatch(t, p, b)
	got := rc.received()
	slices.Sort(got)
	if want := webhookIDs(ids[:3]...); !slices.Equal(got, want) {
		t.Fatalf("receiver got %v; want the batch's limit of oldest records, %v", got, want)
	}
	if sum := awaitSignal(t, ev.recorded, "the batch recorded"); sum.Attempted != 3 || sum.Succeeded != 3 {
		t.Fatalf("recorded summary %+v, want 3 attempted, 3 succeeded", sum)
	}
	for i, id := range ids {
		want := store.StatePending
		if i < 3 {
			want = store.StateSuccess
		}
		if rec := e.getRecord(t, id); rec.State != want {
			t.Errorf("record %d: %s, want %s", i, rec.State, want)
		}
	}
	// Applied with its outcomes, in one transaction: nothing is left pending.
	if d := awaitSignal(t, ev.applied, "the batch applied"); d.BackoffCount != 0 || d.NextAttemptAt != nil {
		t.Fatalf("a clean batch decided %+v", d)
	}
	if got := e.getRepeater(t, r.ID); got.PendingBatch != nil || got.LastAttemptAt == nil {
		t.Fatalf("pending batch %v, last attempt %v: want the batch applied as it was recorded", got.PendingBatch, got.LastAttemptAt)
	}
	if !e.holds(t, r.ID, b.Token) {
		t.Fatal("the batch gave up its lock before its task released it")
	}
}

func TestProcessorUpdateBacksOffOnlyWhenEveryAttemptFailed(t *testing.T) {
	tests := []struct {
		name        string
		backoffs    int                // failed batches before this one
		status      func(string) int   // the endpoint's answer by webhook-id
		wantCount   int                // backoff_count after the update
		wantBackoff time.Duration      // next_attempt_at - now; 0 = not backed off
		wantSummary store.BatchSummary // what the batch recorded
	}{
		{"all fail: the first backoff", 0, answering(http.StatusInternalServerError), 1, time.Minute,
			store.BatchSummary{Attempted: 3, Failed: 3}},
		{"all fail again: doubled", 1, answering(http.StatusBadGateway), 2, 2 * time.Minute,
			store.BatchSummary{Attempted: 3, Failed: 3}},
		{"one success resets", 2, nil, 0, 0, store.BatchSummary{Attempted: 3, Succeeded: 1, Failed: 2}},
		{"a rejection resets too", 2, answering(http.StatusBadRequest), 0, 0,
			store.BatchSummary{Attempted: 3, Rejected: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngineEnv(t)
			clock := e.clock
			rc, r := e.receivingRepeater(t, "a", tt.status, func(r *store.Repeater) { r.MaxWorkers = 3 })
			ids := storetest.Records(t, e.st, r, 3)
			if tt.status == nil { // the oldest record, first in the first wave, succeeds
				rc.answer(func(id string) int {
					if id == WebhookID(ids[0]) {
						return http.StatusOK
					}
					return http.StatusServiceUnavailable
				})
			}
			for range tt.backoffs {
				e.backOff(t, r, clock.Now().Add(-time.Second))
			}
			p, ev := e.newProcessor()
			b := e.lockedBatch(t, r, 10)
			processBatch(t, p, b)
			if sum := awaitSignal(t, ev.recorded, "the batch recorded"); sum.Attempted != tt.wantSummary.Attempted ||
				sum.Succeeded != tt.wantSummary.Succeeded || sum.Rejected != tt.wantSummary.Rejected || sum.Failed != tt.wantSummary.Failed {
				t.Fatalf("recorded %+v, want %+v", sum, tt.wantSummary)
			}

			if err := p.UpdateRepeater(context.Background(), r.ID, b.Token); err != nil {
				t.Fatal(err)
			}
			d := awaitSignal(t, ev.applied, "the update applied")
			got := e.getRepeater(t, r.ID)
			var wantNext *time.Time
			if tt.wantBackoff > 0 {
				wantNext = ptr(clock.Now().Add(tt.wantBackoff))
			}
			if got.BackoffCount != tt.wantCount || !sameTime(got.NextAttemptAt, wantNext) || d.BackoffCount != tt.wantCount {
				t.Fatalf("backoff_count %d, next %v (signalled %+v); want %d, %v",
					got.BackoffCount, got.NextAttemptAt, d, tt.wantCount, wantNext)
			}
			if got.PendingBatch != nil {
				t.Fatal("the update left the batch pending")
			}
			if e.holds(t, r.ID, b.Token) {
				t.Fatal("the update did not release the lock")
			}
		})
	}
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func TestProcessorStaleTokenAppliesNothing(t *testing.T) {
	e := newEngineEnv(t)
	rc, r := e.receivingRepeater(t, "a", answering(http.StatusInternalServerError))
	storetest.Records(t, e.st, r, 3)
	p, ev := e.newProcessor()
	ctx := context.Background()

	// A batch whose lock passed to another holder sends nothing.
	current := e.lockedBatch(t, r, 10)
	stale := current
	stale.Token = "lapsed"
	if end, err := p.ProcessBatch(ctx, stale); err != nil || end != EndDropped {
		t.Fatalf("stale batch: end=%v err=%v; want nothing to do", end, err)
	}
	if n := len(rc.received()); n != 0 {
		t.Fatalf("a batch without the lock sent %d requests", n)
	}

	// A batch recorded but not applied, as a version before RecordAndApply
	// left one: an update with a stale token leaves it and the lock alone.
	markPending(t, e, r.ID, current.Token, store.BatchSummary{Attempted: 3, Failed: 3})
	if err := p.UpdateRepeater(ctx, r.ID, stale.Token); err != nil {
		t.Fatal(err)
	}
	if got := e.getRepeater(t, r.ID); got.BackoffCount != 0 || got.PendingBatch == nil || *got.PendingBatch != current.Token {
		t.Fatalf("a stale update changed the repeater: backoff_count %d, pending %v", got.BackoffCount, got.PendingBatch)
	}
	if !e.holds(t, r.ID, current.Token) {
		t.Fatal("a stale update released the current holder's lock")
	}

	// The current token applies once; a repeat of it applies nothing more.
	for range 2 {
		if err := p.UpdateRepeater(ctx, r.ID, current.Token); err != nil {
			t.Fatal(err)
		}
	}
	awaitSignal(t, ev.applied, "the current update applied")
	if len(ev.applied) != 0 {
		t.Fatal("the stale or the repeated update was applied too")
	}
	if got := e.getRepeater(t, r.ID); got.BackoffCount != 1 {
		t.Fatalf("backoff_count %d after one failed batch updated twice, want 1", got.BackoffCount)
	}
}

// markPending leaves a batch recorded under token but not applied.
func markPending(t *testing.T, e *engineEnv, repeaterID int64, token string, sum store.BatchSummary) {
	t.Helper()
	if _, err := e.st.Pool().Exec(context.Background(), `UPDATE repeaters SET pending_batch = $2, pending_summary = $3,
		last_attempt_at = now() WHERE id = $1`, repeaterID, token, sum); err != nil {
		t.Fatal(err)
	}
}

func processBatch(t *testing.T, p *Processor, b Batch) {
	t.Helper()
	end, err := p.ProcessBatch(context.Background(), b)
	if err != nil || end != EndRelease {
		t.Fatalf("process batch: end=%v err=%v; want it recorded and applied, only the lock left to release", end, err)
	}
}
