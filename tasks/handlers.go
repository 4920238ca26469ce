package tasks

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hibiken/asynq"

	"repeaterd/repeaters"
)

// Handlers runs the engine's tasks.
type Handlers struct {
	Processor *repeaters.Processor
	Client    *Client
	// Draining reports that the worker is shutting down. Nil = never.
	Draining func() bool
}

// Register adds every handler to mux.
func (h *Handlers) Register(mux *asynq.ServeMux) {
	mux.HandleFunc(TypeProcessRepeater, h.HandleProcessRepeaterTask)
	mux.HandleFunc(TypeUpdateRepeater, h.HandleUpdateRepeaterTask)
}

// HandleProcessRepeaterTask sends a batch, which records it applied to its
// repeater (the backoff decision), then releases the lock; a batch an
// earlier version recorded without applying is updated here instead. Only
// if that fails is update_repeater enqueued to do it, so a batch costs no
// second task, and the repeater's next batch need not wait for one.
func (h *Handlers) HandleProcessRepeaterTask(ctx context.Context, t *asynq.Task) error {
	var b repeaters.Batch
	if err := json.Unmarshal(t.Payload(), &b); err != nil {
		return fmt.Errorf("%w: bad payload: %v", asynq.SkipRetry, err)
	}
	end, err := h.Processor.ProcessBatch(ctx, b)
	if err != nil || end == repeaters.EndDropped {
		return err
	}
	ctx = context.WithoutCancel(ctx) // the update releases the lock: it must not be skipped
	if end == repeaters.EndRelease {
		err = h.Processor.Release(ctx, b.RepeaterID, b.Token)
	} else {
		err = h.Processor.UpdateRepeater(ctx, b.RepeaterID, b.Token)
	}
	if err == nil || h.Draining != nil && h.Draining() {
		// A draining worker may be the last one: its error is the task's, and
		// asynq retries the task (a recorded batch only asks for its update).
		return err
	}
	h.Processor.Logger.Warn("update after the batch failed; update_repeater will apply it", "repeater", b.RepeaterID, "err", err)
	return h.Client.EnqueueUpdate(ctx, UpdateRepeaterPayload{RepeaterID: b.RepeaterID, Token: b.Token})
}

// HandleUpdateRepeaterTask applies a batch's outcome and releases the lock.
func (h *Handlers) HandleUpdateRepeaterTask(ctx context.Context, t *asynq.Task) error {
	var p UpdateRepeaterPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("%w: bad payload: %v", asynq.SkipRetry, err)
	}
	return h.Processor.UpdateRepeater(ctx, p.RepeaterID, p.Token)
}
