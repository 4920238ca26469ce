package repeaters

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// newDispatcher wires a dispatcher on e that enqueues into enq, with a
// fake clock unless cfg brings a clock of its own.
func (e *engineEnv) newDispatcher(cfg DispatcherConfig, enq Enqueuer) *Dispatcher {
	if cfg.Clock == nil && e.clock != nil {
		cfg.Clock = e.clock
	}
	return NewDispatcher(cfg, e.st, e.rdb, e.locker, enq, discardLogger())
}

func runPass(t *testing.T, d *Dispatcher) PassResult {
	t.Helper()
	res, err := d.RunOnce(context.Background())
	if err != nil {
		t.Fatalf("pass: %v", err)
	}
	return res
}

// batchNames names each batch by its repeater, through names (id → name).
func batchNames(batches []Batch, names map[int64]string) string {
	out := make([]string, len(batches))
	for i, b := range batches {
		out[i] = names[b.RepeaterID]
	}
	return fmt.Sprint(out)
}

// readyRepeaters makes one repeater per name, in the domain named by the
// name's first letter ("a2" is in domain a), each with one due record. It
// returns id → name and name → repeater.
func (e *engineEnv) readyRepeaters(t *testing.T, names ...string) (map[int64]string, map[string]*store.Repeater) {
	t.Helper()
	byID, byName := map[int64]string{}, map[string]*store.Repeater{}
	for _, n := range names {
		r := e.repeater(t, n[:1], "")
		storetest.Records(t, e.st, r, 1)
		byID[r.ID], byName[n] = n, r
	}
	return byID, byName
}

func TestDispatcherRoundRobinsAcrossDomains(t *testing.T) {
	e := newEngineEnv(t)
	names, _ := e.readyRepeaters(t, "a1", "a2", "b1", "c1")
	e.startClock()
	enq := &fakeEnqueuer{}
	d := e.newDispatcher(DispatcherConfig{DomainMaxInFlight: 10}, enq)

	res := runPass(t, d)
	if got := batchNames(res.Batches, names); got != "[a1 b1 c1 a2]" || res.Ready != 4 {
		t.Fatalf("first pass: %s of %d ready; want [a1 b1 c1 a2] of 4", got, res.Ready)
	}
	if got := batchNames(enq.take(), names); got != "[a1 b1 c1 a2]" {
		t.Fatalf("enqueued %s, want what the pass reported", got)
	}
	for _, b := range res.Batches {
		e.release(t, b) // every batch done: all four are ready again
	}
	if got := batchNames(runPass(t, d).Batches, names); got != "[b1 c1 a1 a2]" {
		t.Fatalf("second pass: %s; want it to start from the next domain, [b1 c1 a1 a2]", got)
	}
}

func TestDispatcherCapsBatchesInFlightPerDomain(t *testing.T) {
	tests := []struct {
		name string
		cfg  DispatcherConfig
	}{
		{"configured cap", DispatcherConfig{DomainMaxInFlight: 2}},
		// Two domains with work: each may hold a third of a pool of 6.
		{"a share of the worker pool", DispatcherConfig{TotalConcurrency: func(context.Context) int { return 6 }}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngineEnv(t)
			names, _ := e.readyRepeaters(t, "a1", "a2", "a3", "b1")
			e.startClock()
			d := e.newDispatcher(tt.cfg, &fakeEnqueuer{})

			first := runPass(t, d)
			if got := batchNames(first.Batches, names); got != "[a1 b1 a2]" || first.Skipped[SkipDomainCap] != 1 {
				t.Fatalf("first pass: %s, skipped %v; want [a1 b1 a2] and a3 over the cap", got, first.Skipped)
			}
			second := runPass(t, d)
			if len(second.Batches) != 0 || second.Skipped[SkipLocked] != 3 || second.Skipped[SkipDomainCap] != 1 {
				t.Fatalf("with every batch in flight: %d batches, skipped %v; want none, 3 locked, 1 over the cap",
					len(second.Batches), second.Skipped)
			}
			e.release(t, first.Batches[0]) // a1's batch finishes: domain a has room for one more
			third := runPass(t, d)
			if len(third.Batches) != 1 || third.Batches[0].Domain != "a" || third.Skipped[SkipDomainCap] != 1 {
				t.Fatalf("after one of a's batches finished: %s, skipped %v; want one more batch of a",
					batchNames(third.Batches, names), third.Skipped)
			}
		})
	}
}

func TestDispatcherSkipsARepeaterLockedElsewhere(t *testing.T) {
	e := newEngineEnv(t)
	names, reps := e.readyRepeaters(t, "a1", "a2")
	e.startClock()
	d := e.newDispatcher(DispatcherConfig{}, &fakeEnqueuer{})
	other := e.lock(t, reps["a1"].ID) // another dispatcher's batch, or one that outlived its leader

	res := runPass(t, d)
	if got := batchNames(res.Batches, names); got != "[a2]" || res.Skipped[SkipLocked] != 1 {
		t.Fatalf("pass: %s, skipped %v; want [a2] with a1 skipped as locked", got, res.Skipped)
	}
	e.release(t, Batch{RepeaterID: reps["a1"].ID, Token: other})
	if got := batchNames(runPass(t, d).Batches, names); got != "[a1]" {
		t.Fatalf("after the other holder released a1: %s, want [a1]", got)
	}
}

func TestDispatcherRateLimitWaitsForTheNextToken(t *testing.T) {
	e := newEngineEnv(t)
	r := e.repeater(t, "a", "", func(r *store.Repeater) { r.RateLimitPerS, r.RateBurst = 10, 5 })
	storetest.Records(t, e.st, r, 20)
	clock := e.startClock()
	d := e.newDispatcher(DispatcherConfig{}, &fakeEnqueuer{})

	first := runPass(t, d)
	if len(first.Batches) != 1 || first.Batches[0].Limit != 5 {
		t.Fatalf("first pass: %+v; want one batch of the burst (5)", first.Batches)
	}
	e.release(t, first.Batches[0])
	empty := runPass(t, d)
	if len(empty.Batches) != 0 || empty.Skipped[SkipRateLimited] != 1 || empty.Wait != 100*time.Millisecond {
		t.Fatalf("with the bucket empty: %d batches, skipped %v, wait %s; want none, rate limited, 100ms (one token at 10/s)",
			len(empty.Batches), empty.Skipped, empty.Wait)
	}
	clock.Advance(300 * time.Millisecond)
	if later := runPass(t, d); len(later.Batches) != 1 || later.Batches[0].Limit != 3 {
		t.Fatalf("300ms later: %+v; want one batch of the 3 tokens refilled", later.Batches)
	}
}

func TestDispatcherProbesABackedOffRepeaterWithOneRecord(t *testing.T) {
	e := newEngineEnv(t)
	names, reps := e.readyRepeaters(t, "a1", "b1")
	storetest.Records(t, e.st, reps["a1"], 99)
	storetest.Records(t, e.st, reps["b1"], 99)
	clock := e.startClock()
	e.backOff(t, reps["a1"], clock.Now()) // failing, and due for its next try now
	d := e.newDispatcher(DispatcherConfig{BatchSize: 30}, &fakeEnqueuer{})

	limits := map[string]int{}
	for _, b := range runPass(t, d).Batches {
		limits[names[b.RepeaterID]] = b.Limit
	}
	if limits["a1"] != 1 || limits["b1"] != 30 {
		t.Fatalf("batch limits %v; want a one-record probe for the backed-off a1, a full batch (30) for b1", limits)
	}
}

func TestDispatcherEnqueueErrorReleasesTheLock(t *testing.T) {
	e := newEngineEnv(t)
	names, reps := e.readyRepeaters(t, "a1")
	e.startClock()
	enq := &fakeEnqueuer{}
	d := e.newDispatcher(DispatcherConfig{}, enq)

	down := errors.New("queue down")
	enq.failWith(down)
	if _, err := d.RunOnce(context.Background()); !errors.Is(err, down) {
		t.Fatalf("pass with the queue down: err %v, want %v", err, down)
	}
	if locked, err := e.locker.Locked(context.Background(), []int64{reps["a1"].ID}); err != nil || locked[0] {
		t.Fatalf("the lock outlived the failed enqueue (locked %v, err %v)", locked, err)
	}
	enq.failWith(nil)
	if got := batchNames(runPass(t, d).Batches, names); got != "[a1]" {
		t.Fatalf("once the queue is back: %s, want [a1] (not held as in flight)", got)
	}
}

func TestDispatcherWaitHonoursTheNextDueTime(t *testing.T) {
	e := newEngineEnv(t)
	names, reps := e.readyRepeaters(t, "a1", "b1")
	clock := e.startClock()
	e.backOff(t, reps["a1"], clock.Now().Add(300*time.Millisecond))
	e.backOff(t, reps["b1"], clock.Now().Add(5*time.Second))
	d := e.newDispatcher(DispatcherConfig{}, &fakeEnqueuer{})

	if res := runPass(t, d); len(res.Batches) != 0 || res.Wait != 300*time.Millisecond {
		t.Fatalf("both backed off: %d batches, wait %s; want none until a1 is due in 300ms", len(res.Batches), res.Wait)
	}
	clock.Advance(300 * time.Millisecond)
	res := runPass(t, d)
	if got := batchNames(res.Batches, names); got != "[a1]" {
		t.Fatalf("when a1 is due: %s, want its probe", got)
	}
	if res.Wait != DefaultPollCeiling {
		t.Fatalf("with b1 due in 4.7s: wait %s, want the poll ceiling (%s)", res.Wait, DefaultPollCeiling)
	}
}

func TestDispatcherSignalsEachPass(t *testing.T) {
	e := newEngineEnv(t)
	r := e.repeater(t, "a", "")
	passes := make(chan PassResult, 64)
	d := e.newDispatcher(DispatcherConfig{Clock: SystemClock{}, OnPass: func(res PassResult) {
		select {
		case passes <- res:
		default: // a slow test drops passes rather than stall the dispatcher
		}
	}}, &fakeEnqueuer{})
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })

	if res := awaitSignal(t, passes, "the first pass"); res.Ready != 0 || res.Err != nil {
		t.Fatalf("first pass with nothing registered: %+v", res)
	}
	storetest.Records(t, e.st, r, 1)
	for {
		res := awaitSignal(t, passes, "a pass that dispatches the new record")
		if len(res.Batches) == 1 && res.Batches[0].RepeaterID == r.ID {
			return
		}
	}
}
