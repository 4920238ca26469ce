package store_test

import (
	"sync"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// setState moves records to state by SQL, as many attempts would.
func setState(t *testing.T, s *store.Store, state store.State, ids []int64) {
	t.Helper()
	if _, err := s.Pool().Exec(ctx, `UPDATE repeat_records SET state = $1 WHERE id = ANY($2)`, state, ids); err != nil {
		t.Fatal(err)
	}
}

func runJob(t *testing.T, s *store.Store, id int64, chunk int) *store.BulkJob {
	t.Helper()
	for range 10_000 {
		job, err := s.RunBulkChunk(ctx, id, chunk)
		if err != nil {
			t.Fatal(err)
		}
		if job.Finished() {
			return job
		}
	}
	t.Fatal("the job did not finish in 10,000 chunks")
	return nil
}

func TestBulkRequeueByFilterSkipsOtherStatesAndRepeaters(t *testing.T) {
	s := storetest.NewStore(t)
	r := storetest.Repeater(t, s, storetest.RepeaterOpts{Domain: "a.example"})
	other := storetest.Repeater(t, s, storetest.RepeaterOpts{Domain: "a.example"})
	cancelled := storetest.Records(t, s, r, 23)
	setState(t, s, store.StateCancelled, cancelled)
	setState(t, s, store.StateSuccess, storetest.Records(t, s, r, 5))
	setState(t, s, store.StateCancelled, storetest.Records(t, s, other, 4))

	job, err := s.CreateBulkJob(ctx, store.CreateBulkJobParams{Action: store.BulkRequeue,
		Filter: &store.BulkFilter{RepeaterID: r.ID, States: []store.State{store.StateCancelled}}})
	if err != nil {
		t.Fatal(err)
	}
	if job.State != store.BulkQueued || job.Total != 23 {
		t.Fatalf("new job: %s total %d, want queued with 23", job.State, job.Total)
	}
	if n := storetest.Count(t, s, `SELECT count(*) FROM repeat_records WHERE state = 8`); n != 27 {
		t.Fatalf("creating the job changed records: %d cancelled", n)
	}
	job = runJob(t, s, job.ID, 5)
	if job.State != store.BulkDone || job.Processed != 23 || job.Changed != 23 || job.Total != 23 || job.FinishedAt == nil {
		t.Fatalf("job: %+v", job)
	}
	if n := storetest.Count(t, s, `SELECT count(*) FROM repeat_records WHERE repeater_id = $1 AND state = 2
		AND next_check <= now() AND max_possible_tries > attempt_count`, r.ID); n != 23 {
		t.Errorf("%d records requeued, want 23", n)
	}
	if n := storetest.Count(t, s, `SELECT count(*) FROM repeat_records WHERE repeater_id = $1 AND state = 8`, other.ID); n != 4 {
		t.Errorf("the other repeater's records were touched: %d cancelled, want 4", n)
	}
}

// TestBulkJobResumesWithoutCountingTwice: runs that stop after any chunk
// (a killed worker) and runs of the same job at once (a task run twice)
// end with exact counts.
func TestBulkJobResumesWithoutCountingTwice(t *testing.T) {
	s := storetest.NewStore(t)
	r := storetest.Repeater(t, s, storetest.RepeaterOpts{})
	ids := storetest.Records(t, s, r, 300)
	job, err := s.CreateBulkJob(ctx, store.CreateBulkJobParams{Action: store.BulkCancel,
		Filter: &store.BulkFilter{RepeaterID: r.ID}})
	if err != nil {
		t.Fatal(err)
	}
	// Two chunks, then the "worker" dies.
	for range 2 {
		if _, err := s.RunBulkChunk(ctx, job.ID, 40); err != nil {
			t.Fatal(err)
		}
	}
	mid, err := s.GetBulkJob(ctx, job.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if mid.State != store.BulkRunning || mid.Processed != 80 || mid.Changed != 80 {
		t.Fatalf("after two chunks: %+v", mid)
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for {
				j, err := s.RunBulkChunk(ctx, job.ID, 40)
				if err != nil {
					t.Error(err)
					return
				}
				if j.Finished() {
					return
				}
			}
		})
	}
	wg.Wait()
	done, err := s.GetBulkJob(ctx, job.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if done.State != store.BulkDone || done.Processed != int64(len(ids)) || done.Changed != int64(len(ids)) {
		t.Fatalf("done: %+v, want %d processed and changed", done, len(ids))
	}
	if n := storetest.Count(t, s, `SELECT count(*) FROM repeat_records WHERE state = 8`); n != len(ids) {
		t.Errorf("%d cancelled, want %d", n, len(ids))
	}
}

// TestBulkJobOnRecordsBeingSent: a record under a live claim gets the
// request (applied when the send ends), one with a request already waiting
// is skipped, as with the single-record actions.
func TestBulkJobOnRecordsBeingSent(t *testing.T) {
	s := storetest.NewStore(t)
	r := storetest.Repeater(t, s, storetest.RepeaterOpts{})
	ids := storetest.Records(t, s, r, 10)
	claimed, err := s.ClaimReadyRecords(ctx, r.ID, 4, "batch:tok", time.Minute)
	if err != nil || len(claimed) != 4 {
		t.Fatalf("claim: %v, %d", err, len(claimed))
	}
	if _, err := s.CancelRecord(ctx, claimed[0].ID); err != nil { // a cancel already waits
		t.Fatal(err)
	}
	job, err := s.CreateBulkJob(ctx, store.CreateBulkJobParams{Action: store.BulkRequeue, IDs: ids})
	if err != nil {
		t.Fatal(err)
	}
	job = runJob(t, s, job.ID, 3)
	if job.Processed != 10 || job.Changed != 9 || job.Skipped() != 1 {
		t.Fatalf("job: processed %d changed %d skipped %d, want 10, 9, 1", job.Processed, job.Changed, job.Skipped())
	}
	if n := storetest.Count(t, s, `SELECT count(*) FROM repeat_records WHERE requested_state = 1 AND claim_owner = 'batch:tok'`); n != 3 {
		t.Errorf("%d claimed records wait for a requeue, want 3", n)
	}
	if n := storetest.Count(t, s, `SELECT count(*) FROM repeat_records WHERE requested_state = 8`); n != 1 {
		t.Errorf("the waiting cancel was replaced: %d cancels wait", n)
	}
	// The batch's outcomes then apply the requests: failures are due again.
	var outcomes []store.Outcome
	for _, c := range claimed[1:] {
		outcomes = append(outcomes, store.Outcome{RecordID: c.ID, State: store.StateFail, StatusCode: 500, Owner: "batch:tok",
			NextCheck: time.Now().Add(time.Hour)})
	}
	if _, err := s.RecordOutcomes(ctx, outcomes, nil); err != nil {
		t.Fatal(err)
	}
	if n := storetest.Count(t, s, `SELECT count(*) FROM repeat_records WHERE id = ANY($1) AND next_check <= now()
		AND requested_state IS NULL AND claim_owner IS NULL`, []int64{claimed[1].ID, claimed[2].ID, claimed[3].ID}); n != 3 {
		t.Errorf("%d of the requeued failures are due now, want 3", n)
	}
}

func TestBulkJobRefusesBadInput(t *testing.T) {
	s := storetest.NewStore(t)
	r := storetest.Repeater(t, s, storetest.RepeaterOpts{Domain: "a.example"})
	other := storetest.Repeater(t, s, storetest.RepeaterOpts{Domain: "b.example"})
	rec := storetest.Record(t, s, r, nil)
	otherRec := storetest.Record(t, s, other, nil)
	old := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	far := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	now := time.Now()
	for _, c := range []struct {
		name string
		p    store.CreateBulkJobParams
		code string
	}{
		{"no action", store.CreateBulkJobParams{IDs: []int64{rec.ID}}, store.EINVALID},
		{"neither", store.CreateBulkJobParams{Action: store.BulkCancel}, store.EINVALID},
		{"both", store.CreateBulkJobParams{Action: store.BulkCancel, IDs: []int64{rec.ID}, Filter: &store.BulkFilter{RepeaterID: r.ID}}, store.EINVALID},
		{"unknown id", store.CreateBulkJobParams{Action: store.BulkCancel, IDs: []int64{rec.ID, 999999}}, store.ENOTFOUND},
		{"another domain's id", store.CreateBulkJobParams{Action: store.BulkCancel, Scope: "a.example", IDs: []int64{otherRec.ID}}, store.ENOTFOUND},
		{"negative id", store.CreateBulkJobParams{Action: store.BulkCancel, IDs: []int64{-1}}, store.EINVALID},
		{"empty filter", store.CreateBulkJobParams{Action: store.BulkCancel, Filter: &store.BulkFilter{}}, store.EINVALID},
		{"unknown repeater", store.CreateBulkJobParams{Action: store.BulkCancel, Filter: &store.BulkFilter{RepeaterID: 999999}}, store.ENOTFOUND},
		{"another domain's repeater", store.CreateBulkJobParams{Action: store.BulkCancel, Scope: "a.example", Filter: &store.BulkFilter{RepeaterID: other.ID}}, store.ENOTFOUND},
		{"another domain", store.CreateBulkJobParams{Action: store.BulkCancel, Scope: "a.example", Filter: &store.BulkFilter{Domain: "b.example"}}, store.ENOTFOUND},
		{"year 1", store.CreateBulkJobParams{Action: store.BulkCancel, Filter: &store.BulkFilter{RepeaterID: r.ID, CreatedAfter: &old}}, store.EINVALID},
		{"year 9999", store.CreateBulkJobParams{Action: store.BulkCancel, Filter: &store.BulkFilter{RepeaterID: r.ID, CreatedBefore: &far}}, store.EINVALID},
		{"after past before", store.CreateBulkJobParams{Action: store.BulkCancel, Filter: &store.BulkFilter{RepeaterID: r.ID, CreatedAfter: &now, CreatedBefore: &now}}, store.EINVALID},
		{"unknown state", store.CreateBulkJobParams{Action: store.BulkCancel, Filter: &store.BulkFilter{RepeaterID: r.ID, States: []store.State{3}}}, store.EINVALID},
	} {
		if _, err := s.CreateBulkJob(ctx, c.p); store.ErrorCode(err) != c.code {
			t.Errorf("%s: %v, want %s", c.name, err, c.code)
		}
	}
	if n := storetest.Count(t, s, `SELECT count(*) FROM bulk_jobs`); n != 0 {
		t.Errorf("refused jobs left %d rows", n)
	}
	if _, err := s.GetBulkJob(ctx, 1, ""); store.ErrorCode(err) != store.ENOTFOUND {
		t.Errorf("unknown job: %v", err)
	}
}
