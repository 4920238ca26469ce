package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"repeaterd/store"
)

// TypeBulkJob runs an operator's bulk requeue, cancel or resend (a
// bulk_jobs row, store/bulkjobs.go).
const TypeBulkJob = "records:bulk_job"

// Bulk job task settings. A job's progress lives in Postgres, committed with
// each chunk, so a run that dies (a worker killed, the task's timeout) is
// retried by asynq and resumes at the job's cursor.
const (
	bulkJobTimeout  = time.Hour
	bulkJobMaxRetry = 25
)

// BulkJobPayload is the bulk job task's payload.
type BulkJobPayload struct {
	JobID int64 `json:"job_id"`
}

// NewBulkJobTask builds the task that runs job id, unique per job while
// queued or running.
func NewBulkJobTask(id int64) (*asynq.Task, error) {
	return newJSONTask(TypeBulkJob, BulkJobPayload{JobID: id},
		asynq.Queue(QueuePeriodic),
		asynq.TaskID("bulk_job:"+strconv.FormatInt(id, 10)),
		asynq.MaxRetry(bulkJobMaxRetry),
		asynq.Timeout(bulkJobTimeout))
}

// EnqueueBulkJob queues the task running bulk job id. The API and the
// console call it right after store.CreateBulkJob.
func (c *Client) EnqueueBulkJob(ctx context.Context, id int64) error {
	t, err := NewBulkJobTask(id)
	if err != nil {
		return err
	}
	return c.enqueue(ctx, t)
}

// BulkJobHandlers runs bulk jobs.
type BulkJobHandlers struct {
	Store  *store.Store
	Logger *slog.Logger
	// Chunk is how many records one transaction changes. Defaults to
	// store.DefaultBulkChunk.
	Chunk int
	// OnChunk, when set, is told the job after each committed chunk (a test
	// signal). Defaults to nothing.
	OnChunk func(*store.BulkJob)
}

// Register adds the handler to mux.
func (h *BulkJobHandlers) Register(mux *asynq.ServeMux) {
	mux.HandleFunc(TypeBulkJob, h.HandleBulkJobTask)
}

// HandleBulkJobTask runs a job's chunks until it is finished. An error
// leaves the job where its last chunk committed, for the retry; on the last
// retry the job is marked failed, with the error.
func (h *BulkJobHandlers) HandleBulkJobTask(ctx context.Context, t *asynq.Task) error {
	var p BulkJobPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("%w: bad payload: %v", asynq.SkipRetry, err)
	}
	err := h.Run(ctx, p.JobID)
	if store.ErrorCode(err) == store.ENOTFOUND {
		return fmt.Errorf("%w: %v", asynq.SkipRetry, err)
	}
	if err != nil {
		retried, ok1 := asynq.GetRetryCount(ctx)
		maxRetry, ok2 := asynq.GetMaxRetry(ctx)
		if ok1 && ok2 && retried >= maxRetry {
			_ = h.Store.FailBulkJob(context.WithoutCancel(ctx), p.JobID, err.Error())
		}
	}
	return err
}

// Run runs job id's chunks from its cursor until it is finished or ctx ends.
func (h *BulkJobHandlers) Run(ctx context.Context, id int64) error {
	for {
		job, err := h.Store.RunBulkChunk(ctx, id, h.Chunk)
		if err != nil {
			return fmt.Errorf("bulk job %d: %w", id, err)
		}
		if h.OnChunk != nil {
			h.OnChunk(job)
		}
		if job.Finished() {
			if h.Logger != nil {
				h.Logger.Info("bulk job finished", "job", job.ID, "action", job.Action, "state", job.State,
					"processed", job.Processed, "changed", job.Changed, "skipped", job.Skipped())
			}
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("bulk job %d: %w", id, err)
		}
	}
}
