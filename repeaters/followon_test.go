package repeaters

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// A task whose batches come back full and clean sends the next ones itself,
// up to its share, each record once.
func TestFollowOnBatchesDrainABacklogInOneTask(t *testing.T) {
	for _, tt := range []struct {
		name      string
		followOns int
		want      int // records sent by one task, of 17 at 3 a batch
	}{
		{"default share", 0, 3 * (1 + DefaultFollowOns)},
		{"two follow-ons", 2, 9},
		{"none", -1, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngineEnv(t)
			rc, r := e.receivingRepeater(t, "a", nil)
			ids := storetest.Records(t, e.st, r, 17)
			p, ev := e.newProcessor()
			p.FollowOns = tt.followOns
			b := e.lockedBatch(t, r, 3)
			processBatch(t, p, b)

			got := rc.received()
			if want := sorted(webhookIDs(ids[:tt.want]...)); !slices.Equal(sorted(got), want) {
				t.Fatalf("one task sent %v; want the %d oldest, each once: %v", got, tt.want, want)
			}
			for range tt.want / 3 {
				if sum := awaitSignal(t, ev.recorded, "a batch recorded"); sum.Succeeded != 3 {
					t.Fatalf("a batch recorded %+v; want 3 delivered", sum)
				}
			}
			select {
			case sum := <-ev.recorded:
				t.Fatalf("one more batch recorded (%+v) than the task's share", sum)
			default:
			}
			for i, id := range ids {
				want := store.StatePending
				if i < tt.want {
					want = store.StateSuccess
				}
				if rec := e.getRecord(t, id); rec.State != want {
					t.Errorf("record %d: %s, want %s", i, rec.State, want)
				}
			}
			if !e.holds(t, r.ID, b.Token) {
				t.Fatal("the task gave up its lock before its handler released it")
			}
		})
	}
}

// What ends a task after its first batch: a record the endpoint did not
// take, a batch short of its limit, reserved rate-limit tokens, and, while
// the first batch's request is in flight, an operator's pause or the lock
// passing to another batch.
func TestFollowOnStopsWhereTheDispatcherMustDecide(t *testing.T) {
	for _, tt := range []struct {
		name    string
		records int
		refuse  bool // the endpoint refuses the second record
		batch   func(b *Batch)
		// inFlight runs while the first request is held at the endpoint.
		inFlight func(t *testing.T, e *engineEnv, r *store.Repeater)
	}{
		{name: "a record refused", records: 9, refuse: true},
		{name: "a short batch", records: 2},
		{name: "rate-limit tokens reserved", records: 9, batch: func(b *Batch) { b.Reserved = 3 }},
		{name: "paused mid-request", records: 9, inFlight: func(t *testing.T, e *engineEnv, r *store.Repeater) {
			if err := e.st.SetPaused(context.Background(), r.ID, true); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "lock taken over mid-request", records: 9, inFlight: func(t *testing.T, e *engineEnv, r *store.Repeater) {
			if err := e.rdb.Del(context.Background(), LockKey(r.ID)).Err(); err != nil {
				t.Fatal(err)
			}
			e.lock(t, r.ID)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngineEnv(t)
			held, release := make(chan struct{}), make(chan struct{})
			var first sync.Once
			var refused atomic.Value // the webhook-id the endpoint refuses
			refused.Store("")
			rc, r := e.receivingRepeater(t, "a", func(id string) int {
				if tt.inFlight != nil {
					first.Do(func() { close(held); <-release })
				}
				if id == refused.Load() {
					return http.StatusInternalServerError
				}
				return http.StatusOK
			}, func(r *store.Repeater) { r.MaxWorkers = 1 })
			ids := storetest.Records(t, e.st, r, tt.records)
			if tt.refuse {
				refused.Store(WebhookID(ids[1]))
			}
			p, _ := e.newProcessor()
			b := e.lockedBatch(t, r, 3)
			if tt.batch != nil {
				tt.batch(&b)
			}
			done := make(chan error, 1)
			go func() { _, err := p.ProcessBatch(context.Background(), b); done <- err }()
			if tt.inFlight != nil {
				awaitClosed(t, held, "the first request at the endpoint")
				tt.inFlight(t, e, r)
				close(release)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			first3 := webhookIDs(ids[:min(3, tt.records)]...)
			got := rc.received()
			if len(got) == 0 || slices.ContainsFunc(got, func(id string) bool { return !slices.Contains(first3, id) }) ||
				!tt.refuse && len(got) != len(first3) {
				t.Fatalf("the task sent %v; want only its first batch, %v", got, first3)
			}
		})
	}
}

func sorted(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

func awaitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}
