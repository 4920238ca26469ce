// Package tasks adapts the delivery engine to asynq: task types, payloads,
// constructors, handlers, and the worker and client wiring.
package tasks

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"repeaterd/repeaters"
)

// Task types.
const (
	TypeProcessRepeater = "repeater:process"
	TypeUpdateRepeater  = "repeater:update"
)

// Queues. Updates outrank batches: an update releases a repeater's lock, so
// a backlog of batches must never hold releases up.
const (
	QueueRepeaters = "repeaters"
	QueueUpdates   = "repeater_updates"
	QueueLegacy    = "legacy"
	QueuePeriodic  = "periodic"
)

// QueuePriorities weights the queues for asynq's scheduler.
var QueuePriorities = map[string]int{QueueUpdates: 6, QueueRepeaters: 3, QueueLegacy: 3, QueuePeriodic: 1}

// ProcessRepeaterPayload is process_repeater's payload: a repeaters.Batch.
type ProcessRepeaterPayload = repeaters.Batch

// UpdateRepeaterPayload is update_repeater's payload. The outcome summary
// travels in Postgres with the recorded batch, so the task stays idempotent.
type UpdateRepeaterPayload struct {
	RepeaterID int64  `json:"repeater_id"`
	Token      string `json:"token"`
}

// batchTimeout bounds one process_repeater run.
const batchTimeout = 15 * time.Minute

// NewProcessRepeaterTask builds a process_repeater task. Its ID is unique per
// lock token, so a batch can never be enqueued twice.
func NewProcessRepeaterTask(b repeaters.Batch) (*asynq.Task, error) {
	return newJSONTask(TypeProcessRepeater, b,
		asynq.Queue(QueueRepeaters),
		asynq.TaskID(fmt.Sprintf("process:%d:%s", b.RepeaterID, b.Token)),
		asynq.MaxRetry(5),
		asynq.Timeout(batchTimeout))
}

// NewUpdateRepeaterTask builds an update_repeater task, unique per token.
func NewUpdateRepeaterTask(p UpdateRepeaterPayload) (*asynq.Task, error) {
	return newJSONTask(TypeUpdateRepeater, p,
		asynq.Queue(QueueUpdates),
		asynq.TaskID(fmt.Sprintf("update:%d:%s", p.RepeaterID, p.Token)),
		asynq.MaxRetry(20),
		asynq.Timeout(time.Minute))
}

// newJSONTask builds a task whose payload is payload as JSON.
func newJSONTask(typ string, payload any, opts ...asynq.Option) (*asynq.Task, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	return asynq.NewTask(typ, body, opts...), nil
}
