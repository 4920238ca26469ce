package tasks_test

import (
	"context"
	"errors"
	"testing"

	"github.com/hibiken/asynq"

	"repeaterd/store"
	"repeaterd/store/storetest"
	"repeaterd/tasks"
)

// TestBulkJobTaskResumesFromItsCursor: a run cut off after its second chunk
// (a worker killed: asynq runs the task again) leaves the job where that
// chunk committed; the next run finishes it with exact counts.
func TestBulkJobTaskResumesFromItsCursor(t *testing.T) {
	st := storetest.NewStore(t)
	r := storetest.Repeater(t, st, storetest.RepeaterOpts{})
	ids := storetest.Records(t, st, r, 230)
	job, err := st.CreateBulkJob(t.Context(), store.CreateBulkJobParams{Action: store.BulkCancel,
		Filter: &store.BulkFilter{RepeaterID: r.ID}})
	if err != nil {
		t.Fatal(err)
	}
	task, err := tasks.NewBulkJobTask(job.ID)
	if err != nil {
		t.Fatal(err)
	}
	ctx, kill := context.WithCancel(t.Context())
	chunks := 0
	h := &tasks.BulkJobHandlers{Store: st, Chunk: 50, OnChunk: func(*store.BulkJob) {
		if chunks++; chunks == 2 {
			kill()
		}
	}}
	if err := h.HandleBulkJobTask(ctx, task); !errors.Is(err, context.Canceled) {
		t.Fatalf("the cut-off run returned %v, want context.Canceled", err)
	}
	mid, err := st.GetBulkJob(t.Context(), job.ID, "")
	if err != nil || mid.State != store.BulkRunning || mid.Processed != 100 {
		t.Fatalf("after the cut: %+v, %v", mid, err)
	}
	h.OnChunk = nil
	if err := h.HandleBulkJobTask(t.Context(), task); err != nil {
		t.Fatal(err)
	}
	done, err := st.GetBulkJob(t.Context(), job.ID, "")
	if err != nil || done.State != store.BulkDone || done.Processed != int64(len(ids)) || done.Changed != int64(len(ids)) {
		t.Fatalf("done: %+v, %v", done, err)
	}
	if n := storetest.Count(t, st, `SELECT count(*) FROM repeat_records WHERE state = 8`); n != len(ids) {
		t.Errorf("%d cancelled, want %d", n, len(ids))
	}
	// A job that no longer exists is not retried.
	gone, _ := tasks.NewBulkJobTask(999999)
	if err := h.HandleBulkJobTask(t.Context(), gone); !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("an unknown job: %v, want SkipRetry", err)
	}
}
