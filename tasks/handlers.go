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

// HandleProcessRepeaterTask sends a batch, then enqueues update_repeater.
func (h *Handlers) HandleProcessRepeaterTask(ctx context.Context, t *asynq.Task) error {
	var b repeaters.Batch
	if err := json.Unmarshal(t.Payload(), &b); err != nil {
		return fmt.Errorf("%w: bad payload: %v", asynq.SkipRetry, err)
	}
	needsUpdate, err := h.Processor.ProcessBatch(ctx, b)
	if err != nil {
		return err
	}
	if !needsUpdate {
		return nil
	}
	ctx = context.WithoutCancel(ctx) // the update releases the lock: it must not be skipped
	if h.Draining != nil && h.Draining() {
		// A draining worker may be the last one: apply the update here so the
		// lock is released now, not when its TTL lapses.
		return h.Processor.UpdateRepeater(ctx, b.RepeaterID, b.Token)
	}
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
