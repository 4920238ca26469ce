package store_test

import (
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// RecordAndApply commits a batch's outcomes and its verdict on the
// repeater together: a verdict that cannot be written undoes the outcomes,
// and a batch that finds another's mark pending applies nothing.
func TestRecordAndApplyIsOneTransaction(t *testing.T) {
	s := storetest.NewStore(t)
	r := &store.Repeater{Domain: "d", URL: "http://x", MaxWorkers: 4}
	if err := s.CreateRepeater(ctx, r); err != nil {
		t.Fatal(err)
	}
	var recs []*store.RepeatRecord
	for range 3 {
		recs = append(recs, register(t, s, r.ID))
	}
	record := func(i int, token string, decide store.Decide) (int, bool, error) {
		t.Helper()
		owner := "batch:" + token
		if _, err := s.ClaimReadyRecords(ctx, r.ID, 1, owner, time.Minute); err != nil {
			t.Fatal(err)
		}
		outcomes := []store.Outcome{{RecordID: recs[i].ID, State: store.StateFail, StatusCode: 500, Owner: owner,
			NextCheck: time.Now().Add(time.Hour)}} // its retry waits: the next claim takes the next record
		mark := &store.BatchMark{RepeaterID: r.ID, Token: token, Summary: store.Summarize(outcomes)}
		return s.RecordAndApply(ctx, store.RecordBatchParams{Outcomes: outcomes, Mark: mark}, decide)
	}
	attempts := func(i int) int {
		return count(t, s, `SELECT count(*) FROM repeat_record_attempts WHERE record_id = $1`, recs[i].ID)
	}

	// A verdict the schema refuses undoes the outcome with it.
	_, _, err := record(0, "t1", func(*store.Repeater, store.BatchSummary) store.BatchDecision {
		return store.BatchDecision{PacePerS: -1}
	})
	if err == nil {
		t.Fatal("a verdict violating the schema was written")
	}
	if rec, _, _ := s.GetRecord(ctx, recs[0].ID); attempts(0) != 0 || rec.State != store.StatePending || rec.ClaimOwner == nil {
		t.Fatalf("the failed transaction left %d attempts, record %+v", attempts(0), rec)
	}

	// Another batch's mark pending: the outcome is recorded, nothing applied.
	if _, err := s.Pool().Exec(ctx, `UPDATE repeaters SET pending_batch = 'older' WHERE id = $1`, r.ID); err != nil {
		t.Fatal(err)
	}
	called := false
	changed, applied, err := record(1, "t2", func(*store.Repeater, store.BatchSummary) store.BatchDecision {
		called = true
		return store.BatchDecision{BackoffCount: 9}
	})
	got, _ := s.GetRepeater(ctx, r.ID)
	if err != nil || changed != 1 || applied || called || got.PendingBatch == nil || *got.PendingBatch != "older" || got.BackoffCount != 0 {
		t.Fatalf("beside a pending mark: changed=%d applied=%v decided=%v err=%v; repeater pending %v backoff %d",
			changed, applied, called, err, got.PendingBatch, got.BackoffCount)
	}

	// Otherwise the verdict commits with the outcome.
	if _, err := s.Pool().Exec(ctx, `UPDATE repeaters SET pending_batch = NULL WHERE id = $1`, r.ID); err != nil {
		t.Fatal(err)
	}
	next := time.Now().Add(5 * time.Minute).Truncate(time.Millisecond)
	changed, applied, err = record(2, "t3", func(rep *store.Repeater, sum store.BatchSummary) store.BatchDecision {
		if rep.ID != r.ID || rep.Domain != "d" || rep.MaxWorkers != 4 || sum.Attempted != 1 || sum.Failed != 1 {
			t.Errorf("decided on %+v, %+v", rep, sum)
		}
		return store.BatchDecision{BackoffCount: 1, NextAttemptAt: &next, EffectiveWorkers: 2}
	})
	got, _ = s.GetRepeater(ctx, r.ID)
	if err != nil || changed != 1 || !applied || attempts(2) != 1 {
		t.Fatalf("changed=%d applied=%v err=%v attempts %d", changed, applied, err, attempts(2))
	}
	if got.BackoffCount != 1 || got.NextAttemptAt == nil || !got.NextAttemptAt.Equal(next) || got.EffectiveWorkers != 2 ||
		got.PendingBatch != nil || got.LastAttemptAt == nil {
		t.Fatalf("repeater after the batch: %+v", got)
	}
}

// A delete while a batch is recorded: the batch locks its repeater's row
// before its records, as DeleteRepeater does, so the two queue instead of
// deadlocking (which would lose the batch's attempts).
func TestRecordAndApplyBesideADeleteDoesNotDeadlock(t *testing.T) {
	s := storetest.NewStore(t)
	r := newRepeater(t, s, "d")
	var outcomes []store.Outcome
	for range 3 {
		rec := register(t, s, r.ID)
		outcomes = append(outcomes, store.Outcome{RecordID: rec.ID, State: store.StateSuccess, StatusCode: 200, Owner: "batch:t"})
	}
	if _, err := s.ClaimReadyRecords(ctx, r.ID, 3, "batch:t", time.Minute); err != nil {
		t.Fatal(err)
	}
	// Hold the last record, so the recording stops holding the others.
	holder, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx)
	if _, err := holder.Exec(ctx, `SELECT 1 FROM repeat_records WHERE id = $1 FOR UPDATE`, outcomes[2].RecordID); err != nil {
		t.Fatal(err)
	}
	recorded, deleted := make(chan error, 1), make(chan error, 1)
	go func() {
		mark := &store.BatchMark{RepeaterID: r.ID, Token: "t", Summary: store.Summarize(outcomes)}
		_, _, err := s.RecordAndApply(ctx, store.RecordBatchParams{Outcomes: outcomes, Mark: mark},
			func(*store.Repeater, store.BatchSummary) store.BatchDecision {
				return store.BatchDecision{EffectiveWorkers: 1}
			})
		recorded <- err
	}()
	waitForLockWaiters(t, s, 1)
	go func() { deleted <- s.DeleteRepeater(ctx, r.ID) }()
	waitForLockWaiters(t, s, 2)
	if err := holder.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for what, ch := range map[string]chan error{"the recording": recorded, "the delete": deleted} {
		select {
		case err := <-ch:
			if err != nil {
				t.Errorf("%s failed: %v", what, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still waits after 10 s", what)
		}
	}
	if n := count(t, s, `SELECT count(*) FROM repeat_record_attempts`); n != 3 {
		t.Fatalf("%d attempts recorded of the batch's 3", n)
	}
}
