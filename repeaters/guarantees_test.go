package repeaters

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// These tests force the timings the engine does not control — a task held
// in the queue past its claim or lock, an operator acting while a request is
// in flight, a leader paused past its lease — and check the promises hold.

// heldReceiver holds every request until the test says how to answer, so
// the test can act while a send is in flight.
type heldReceiver struct {
	url     string
	arrived chan string // webhook-ids as they arrive
	answer  chan int    // one status per request
}

func newHeldReceiver(t *testing.T) *heldReceiver {
	h := &heldReceiver{arrived: make(chan string, 16), answer: make(chan int, 16)}
	stop := make(chan struct{})
	h.url = newHTTPSink(t, func(w http.ResponseWriter, r *http.Request) {
		h.arrived <- r.Header.Get(HeaderWebhookID)
		select {
		case code := <-h.answer:
			w.WriteHeader(code)
		case <-r.Context().Done():
		case <-stop: // the test ended (perhaps failed) with a request held
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}).URL
	t.Cleanup(func() { close(stop) }) // runs before the server's Close, which waits for handlers
	return h
}

// oneRecordInFlight registers one record of a repeater on a held receiver
// and starts its batch: it returns once the request is at the receiver.
func oneRecordInFlight(t *testing.T) (*engineEnv, *heldReceiver, *store.Repeater, int64, <-chan error) {
	t.Helper()
	e := newEngineEnv(t)
	hr := newHeldReceiver(t)
	r := e.repeater(t, "acme", hr.url)
	id := storetest.Records(t, e.st, r, 1)[0]
	p, _ := e.newProcessor()
	_, done := e.inFlight(t, p, hr, r)
	return e, hr, r, id, done
}

// inFlight starts a batch of r's one record and returns once its request is
// at the receiver, with a channel that reports the batch's end.
func (e *engineEnv) inFlight(t *testing.T, p *Processor, hr *heldReceiver, r *store.Repeater) (Batch, <-chan error) {
	t.Helper()
	b := e.lockedBatch(t, r, 10)
	done := make(chan error, 1)
	go func() {
		_, err := p.ProcessBatch(context.Background(), b)
		done <- err
	}()
	awaitSignal(t, hr.arrived, "the request in flight")
	return b, done
}

func TestRequeueOfAnInFlightRecordWaitsForTheSend(t *testing.T) {
	e, hr, r, id, done := oneRecordInFlight(t)

	rec, err := e.st.RequeueRecord(context.Background(), id)
	if err != nil || rec.RequestedState == nil || *rec.RequestedState != store.StatePending {
		t.Fatalf("requeue in flight: %+v, %v; want a requeue waiting for the send", rec, err)
	}
	if _, err := e.st.RequeueRecord(context.Background(), id); store.ErrorCode(err) != store.ECONFLICT {
		t.Fatalf("a second request while one waits: %v, want a conflict", err)
	}
	if again, err := e.st.ClaimReadyRecords(context.Background(), r.ID, 10, "batch:second", time.Minute); err != nil || len(again) != 0 {
		t.Fatalf("a second batch claimed %d records while the first send was in flight (%v)", len(again), err)
	}
	hr.answer <- http.StatusServiceUnavailable
	if err := awaitSignal(t, done, "the batch's end"); err != nil {
		t.Fatal(err)
	}
	rec = e.getRecord(t, id)
	if rec.State != store.StateFail || rec.RequestedState != nil || rec.ClaimOwner != nil || rec.AttemptCount != 1 {
		t.Fatalf("after the failed send: %+v; want Fail, the request applied, unclaimed, one attempt", rec)
	}
	if again, err := e.st.ClaimReadyRecords(context.Background(), r.ID, 10, "batch:second", time.Minute); err != nil || len(again) != 1 {
		t.Fatalf("the requeued record is not due after the send ended: %d claimed, %v", len(again), err)
	}
}

func TestCancelOfAnInFlightRecordKeepsItsAttempt(t *testing.T) {
	for _, c := range []struct {
		answer int
		want   store.State
	}{
		{http.StatusOK, store.StateSuccess},                   // delivered: the cancel came too late
		{http.StatusServiceUnavailable, store.StateCancelled}, // failed: the cancel takes effect
	} {
		t.Run(http.StatusText(c.answer), func(t *testing.T) {
			e, hr, _, id, done := oneRecordInFlight(t)

			rec, err := e.st.CancelRecord(context.Background(), id)
			if err != nil || rec.RequestedState == nil || *rec.RequestedState != store.StateCancelled || rec.State != store.StatePending {
				t.Fatalf("cancel in flight: %+v, %v; want a cancel waiting for the send", rec, err)
			}
			hr.answer <- c.answer
			if err := awaitSignal(t, done, "the batch's end"); err != nil {
				t.Fatal(err)
			}
			rec, attempts, err := e.st.GetRecord(context.Background(), id)
			if err != nil || rec.State != c.want || len(attempts) != 1 || rec.AttemptCount != 1 {
				t.Fatalf("after the send: %s with %d attempts (count %d), %v; want %s with the attempt logged",
					rec.State, len(attempts), rec.AttemptCount, err, c.want)
			}
		})
	}
}

func TestOperatorActionsRefuseWhatTheyCannotDo(t *testing.T) {
	e := newEngineEnv(t)
	rc, r := e.receivingRepeater(t, "acme", nil)
	id := storetest.Records(t, e.st, r, 1)[0]
	p, _ := e.newProcessor()
	processBatch(t, p, e.lockedBatch(t, r, 10))
	if len(rc.received()) != 1 {
		t.Fatal("the record was not delivered")
	}
	ctx := context.Background()
	if _, err := e.st.CancelRecord(ctx, id); store.ErrorCode(err) != store.ECONFLICT {
		t.Fatalf("cancel of a delivered record: %v, want a conflict", err)
	}
	for _, act := range []func(context.Context, int64) (*store.RepeatRecord, error){e.st.CancelRecord, e.st.RequeueRecord} {
		if _, err := act(ctx, 987654); store.ErrorCode(err) != store.ENOTFOUND {
			t.Fatalf("action on an unknown record: %v, want not found", err)
		}
	}
	if rec := e.getRecord(t, id); rec.State != store.StateSuccess || rec.AttemptCount != 1 {
		t.Fatalf("refused actions changed the record: %+v", rec)
	}
}

// TestLateUpdateStillBacksOff: a dead endpoint's batch is recorded, its
// update_repeater is late, the lock lapses and the next batch comes. That
// batch applies the first one's outcome before it sends, so the repeater is
// backed off and the endpoint gets no second wave; the late update then
// changes nothing.
func TestLateUpdateStillBacksOff(t *testing.T) {
	e := newEngineEnv(t)
	rc, r := e.receivingRepeater(t, "acme", answering(http.StatusServiceUnavailable))
	storetest.Records(t, e.st, r, 30)
	p, _ := e.newProcessor()
	first := e.lockedBatch(t, r, 10)
	processBatch(t, p, first)
	probes := len(rc.received())
	if probes == 0 {
		t.Fatal("the first batch sent nothing")
	}

	// The lock lapses before update_repeater runs (forced: deleted, as a lapse would).
	if err := e.rdb.Del(context.Background(), LockKey(r.ID)).Err(); err != nil {
		t.Fatal(err)
	}
	processBatch(t, p, e.lockedBatch(t, r, 10))
	if got := len(rc.received()); got != probes {
		t.Fatalf("the endpoint got %d requests, want %d: the second batch must find the repeater backed off", got, probes)
	}
	rep := e.getRepeater(t, r.ID)
	if rep.BackoffCount != 1 || rep.NextAttemptAt == nil || rep.PendingBatch != nil {
		t.Fatalf("after the second batch: backoff_count %d, next %v, pending %v; want the first batch applied",
			rep.BackoffCount, rep.NextAttemptAt, rep.PendingBatch)
	}
	if err := p.UpdateRepeater(context.Background(), r.ID, first.Token); err != nil {
		t.Fatal(err)
	}
	if rep := e.getRepeater(t, r.ID); rep.BackoffCount != 1 {
		t.Fatalf("the late update applied again: backoff_count %d", rep.BackoffCount)
	}
}

func TestBatchPastItsLockRunsOrIsDroppedLoudly(t *testing.T) {
	e := newEngineEnv(t)
	rc, r := e.receivingRepeater(t, "acme", nil)
	storetest.Records(t, e.st, r, 3)
	p, _ := e.newProcessor()
	p.FollowOns = -1 // one batch per task, to count what each late batch sent
	ctx := context.Background()

	// The lock lapsed while the task waited and nobody took it: the batch runs.
	late := e.lockedBatch(t, r, 1)
	if err := e.rdb.Del(ctx, LockKey(r.ID)).Err(); err != nil {
		t.Fatal(err)
	}
	processBatch(t, p, late)
	if len(rc.received()) != 1 || !e.holds(t, r.ID, late.Token) {
		t.Fatalf("a late batch with its lock free sent %d, holds=%v; want it to run under its token", len(rc.received()), e.holds(t, r.ID, late.Token))
	}
	if err := p.UpdateRepeater(ctx, r.ID, late.Token); err != nil {
		t.Fatal(err)
	}

	// The lock lapsed and a successor holds it: the late batch sends nothing.
	stale := e.lockedBatch(t, r, 1)
	if err := e.rdb.Del(ctx, LockKey(r.ID)).Err(); err != nil {
		t.Fatal(err)
	}
	successor := e.lock(t, r.ID)
	end, err := p.ProcessBatch(ctx, stale)
	if err != nil || end != EndDropped {
		t.Fatalf("superseded batch: end=%v err=%v", end, err)
	}
	if len(rc.received()) != 1 || !e.holds(t, r.ID, successor) {
		t.Fatalf("a superseded batch sent (%d requests) or took the successor's lock", len(rc.received()))
	}
}

// TestPausedLeaderCannotDispatch: a leader whose lease passed to another
// (it was paused past its TTL) acts with its old term and is refused.
func TestPausedLeaderCannotDispatch(t *testing.T) {
	e := newEngineEnv(t)
	_, byName := e.readyRepeaters(t, "a1")
	e.startClock()
	enq := &fakeEnqueuer{}
	d := e.newDispatcher(DispatcherConfig{}, enq)
	ctx := context.Background()
	d.resetLeaderState()
	d.fence = Fence{Key: LeaderKey, Token: "old-term"}
	if err := e.rdb.Set(ctx, LeaderKey, "new-term", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.RunOnce(ctx); !errors.Is(err, ErrFenced) {
		t.Fatalf("pass under a lost term: %v, want ErrFenced", err)
	}
	locked, err := e.locker.Locked(ctx, []int64{byName["a1"].ID})
	if err != nil || locked[0] || len(enq.take()) != 0 {
		t.Fatalf("the old leader locked (%v) or enqueued a batch", locked)
	}
	// The same pass under the current term dispatches.
	if err := e.rdb.Set(ctx, LeaderKey, "old-term", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if res := runPass(t, d); len(res.Batches) != 1 {
		t.Fatalf("the current leader dispatched %d batches, want 1", len(res.Batches))
	}
}
