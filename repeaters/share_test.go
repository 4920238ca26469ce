package repeaters

import (
	"context"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// Three tenants whose batches hang (a black-hole endpoint) hold at most
// their shares of the pool: a fourth domain that gets work is dispatched at
// once, and so is a fifth.
func TestDispatcherKeepsAShareOfThePoolForOtherDomains(t *testing.T) {
	e := newEngineEnv(t)
	var names []string
	for _, d := range []string{"a", "b", "c"} {
		for i := range 8 {
			names = append(names, d+string(rune('0'+i)))
		}
	}
	byID, _ := e.readyRepeaters(t, names...)
	e.startClock()
	d := e.newDispatcher(DispatcherConfig{TotalConcurrency: func(context.Context) int { return 20 }}, &fakeEnqueuer{})

	first := runPass(t, d)
	held := map[string]int{}
	for _, b := range first.Batches {
		held[b.Domain]++
	}
	if len(first.Batches) != 15 || held["a"] != 5 || held["b"] != 5 || held["c"] != 5 {
		t.Fatalf("three domains with work: %v held; want 5 each (20 / 4), 5 slots left", held)
	}
	// Their batches hang. Another tenant's records arrive.
	healthy := e.repeater(t, "d", "")
	storetest.Records(t, e.st, healthy, 1)
	e.clock.Set(time.Now().Add(time.Millisecond)) // the new record is due
	second := runPass(t, d)
	if len(second.Batches) != 1 || second.Batches[0].RepeaterID != healthy.ID {
		t.Fatalf("with the three holding their shares: batches %s; want the new domain's at once", batchNames(second.Batches, byID))
	}
	if second.Skipped[SkipDomainCap] != 9 {
		t.Fatalf("skipped %v; want the 9 undispatched repeaters of a, b and c over their shares", second.Skipped)
	}
}

// A new leader counts the batches of the term before it, found by their
// locks, against their domains' shares.
func TestANewLeaderCountsTheBatchesOfTheTermBefore(t *testing.T) {
	e := newEngineEnv(t)
	names := []string{"a1", "a2", "a3", "a4", "b1"}
	byID, reps := e.readyRepeaters(t, names...)
	e.startClock()
	for _, n := range []string{"a1", "a2", "a3"} {
		e.lock(t, reps[n].ID) // batches of a dead leader, still hanging
	}
	d := e.newDispatcher(DispatcherConfig{TotalConcurrency: func(context.Context) int { return 9 }}, &fakeEnqueuer{})
	d.resetLeaderState()
	if err := d.adoptHeldLocks(context.Background()); err != nil {
		t.Fatal(err)
	}
	res := runPass(t, d)
	if got := batchNames(res.Batches, byID); got != "[b1]" || res.Skipped[SkipDomainCap] != 1 || res.Skipped[SkipLocked] != 3 {
		t.Fatalf("new term: %s, skipped %v; want only b1: a holds its share (9 / 3) with the old batches", got, res.Skipped)
	}
}

func TestDispatcherReservesOnlyTheRecordsThatExist(t *testing.T) {
	e := newEngineEnv(t)
	var names []string
	for i := range 10 {
		names = append(names, "g"+string(rune('0'+i)))
	}
	_, _ = e.readyRepeaters(t, names...) // one record each
	e.startClock()
	d := e.newDispatcher(DispatcherConfig{GlobalRatePerS: 100}, &fakeEnqueuer{})

	res := runPass(t, d)
	if len(res.Batches) != 10 {
		t.Fatalf("10 single-record repeaters under a 100/s global limit: %d dispatched in the first pass, want 10", len(res.Batches))
	}
	for _, b := range res.Batches {
		if b.Limit != 1 || b.Reserved != 1 {
			t.Fatalf("batch %+v; want one record and one token reserved", b)
		}
	}
}

func TestDispatcherRefundsWhatABatchDidNotSend(t *testing.T) {
	e := newEngineEnv(t)
	r := e.repeater(t, "a", "", func(r *store.Repeater) { r.RateLimitPerS, r.RateBurst = 1, 5 })
	storetest.Records(t, e.st, r, 20)
	e.startClock()
	d := e.newDispatcher(DispatcherConfig{}, &fakeEnqueuer{})

	first := runPass(t, d)
	if len(first.Batches) != 1 || first.Batches[0].Reserved != 5 {
		t.Fatalf("first pass: %+v; want one batch reserving the burst (5)", first.Batches)
	}
	b := first.Batches[0]
	if err := e.locker.NoteUsed(context.Background(), b.Token, 2); err != nil { // it sent 2, then stopped
		t.Fatal(err)
	}
	e.release(t, b)
	second := runPass(t, d)
	if len(second.Batches) != 1 || second.Batches[0].Limit != 3 {
		t.Fatalf("after a batch that used 2 of its 5 tokens: %+v; want the 3 refunded", second.Batches)
	}
	e.release(t, second.Batches[0]) // noted nothing: its worker died, it may have sent all
	if third := runPass(t, d); len(third.Batches) != 0 || third.Skipped[SkipRateLimited] != 1 {
		t.Fatalf("after a batch that noted nothing: %+v; want nothing refunded", third.Batches)
	}
}

// A limit far below a token per poll ceiling makes the dispatcher sleep its
// ceiling, never spin.
func TestASlowLimitDoesNotSpin(t *testing.T) {
	e := newEngineEnv(t)
	r := e.repeater(t, "a", "", func(r *store.Repeater) { r.RateLimitPerS = store.MinRateLimitPerS })
	storetest.Records(t, e.st, r, 3)
	e.startClock()
	d := e.newDispatcher(DispatcherConfig{}, &fakeEnqueuer{})
	first := runPass(t, d)
	if len(first.Batches) != 1 {
		t.Fatalf("first pass: %+v, want the one token's batch", first.Batches)
	}
	e.release(t, first.Batches[0])
	if res := runPass(t, d); len(res.Batches) != 0 || res.Wait != DefaultPollCeiling {
		t.Fatalf("with the bucket empty: %d batches, wait %s; want none and the poll ceiling", len(res.Batches), res.Wait)
	}
}
