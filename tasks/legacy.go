package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"repeaterd/repeaters"
)

// Legacy path task types.
const (
	TypeCheckRepeaters   = "legacy:check_repeaters"
	TypeSendRepeatRecord = "legacy:send_repeat_record"
)

// SendRepeatRecordPayload is send_repeat_record's payload.
type SendRepeatRecordPayload struct {
	RecordID int64 `json:"record_id"`
}

// checkTimeout bounds one check_repeaters run.
const checkTimeout = 10 * time.Minute

// NewCheckRepeatersTask builds check_repeaters. It is unique until it
// finishes (or times out), so however many schedulers tick, one run at a
// time is queued or running.
func NewCheckRepeatersTask() *asynq.Task {
	return asynq.NewTask(TypeCheckRepeaters, nil,
		asynq.Queue(QueuePeriodic), asynq.Unique(checkTimeout), asynq.MaxRetry(0), asynq.Timeout(checkTimeout))
}

// NewSendRepeatRecordTask builds send_repeat_record for one record. Its ID
// is the record's, so a record re-claimed while its task still waits is not
// queued twice.
func NewSendRepeatRecordTask(recordID int64) *asynq.Task {
	body, _ := json.Marshal(SendRepeatRecordPayload{RecordID: recordID})
	return asynq.NewTask(TypeSendRepeatRecord, body,
		asynq.Queue(QueueLegacy), asynq.TaskID(fmt.Sprintf("send:%d", recordID)),
		asynq.MaxRetry(3), asynq.Timeout(5*time.Minute))
}

// LegacyHandlers runs the legacy path's tasks.
type LegacyHandlers struct {
	Legacy *repeaters.Legacy
	Client *Client
}

// Register adds the legacy handlers to mux.
func (h *LegacyHandlers) Register(mux *asynq.ServeMux) {
	mux.HandleFunc(TypeCheckRepeaters, h.HandleCheckRepeatersTask)
	mux.HandleFunc(TypeSendRepeatRecord, h.HandleSendRepeatRecordTask)
}

// HandleCheckRepeatersTask claims due legacy records and enqueues one send
// task per record.
func (h *LegacyHandlers) HandleCheckRepeatersTask(ctx context.Context, _ *asynq.Task) error {
	_, err := h.Legacy.CheckRepeaters(ctx, func(ctx context.Context, id int64) error {
		return h.Client.enqueue(ctx, NewSendRepeatRecordTask(id))
	})
	return err
}

// HandleSendRepeatRecordTask sends one record.
func (h *LegacyHandlers) HandleSendRepeatRecordTask(ctx context.Context, t *asynq.Task) error {
	var p SendRepeatRecordPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("%w: bad payload: %v", asynq.SkipRetry, err)
	}
	return h.Legacy.SendRecord(ctx, p.RecordID)
}
