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

// SendRepeatRecordPayload is send_repeat_record's payload: the record and
// the claim check_repeaters took on it.
type SendRepeatRecordPayload struct {
	RecordID int64  `json:"record_id"`
	Owner    string `json:"owner"`
	// NotBefore is the time its rate-limit tokens come; zero = at once.
	NotBefore time.Time `json:"not_before,omitzero"`
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

// NewSendRepeatRecordTask builds send_repeat_record for one claim. Its ID
// is the claim's, so one claim is never queued twice, while a record claimed
// again after its claim lapsed gets a task of its own (the old one, if it
// still waits, finds its claim gone and sends nothing). A claim with a
// NotBefore is scheduled for then.
func NewSendRepeatRecordTask(c repeaters.LegacyClaim) (*asynq.Task, error) {
	opts := []asynq.Option{asynq.Queue(QueueLegacy), asynq.TaskID(fmt.Sprintf("send:%d:%s", c.RecordID, c.Owner)),
		asynq.MaxRetry(3), asynq.Timeout(5 * time.Minute)}
	if !c.NotBefore.IsZero() {
		// asynq schedules by whole seconds: the task may start up to a second
		// early, and the send waits out the rest (Legacy.SendRecord).
		opts = append(opts, asynq.ProcessAt(c.NotBefore))
	}
	return newJSONTask(TypeSendRepeatRecord, SendRepeatRecordPayload{RecordID: c.RecordID, Owner: c.Owner, NotBefore: c.NotBefore}, opts...)
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
	_, err := h.Legacy.CheckRepeaters(ctx, func(ctx context.Context, c repeaters.LegacyClaim) error {
		t, err := NewSendRepeatRecordTask(c)
		if err != nil {
			return err
		}
		return h.Client.enqueue(ctx, t)
	})
	return err
}

// HandleSendRepeatRecordTask sends one record.
func (h *LegacyHandlers) HandleSendRepeatRecordTask(ctx context.Context, t *asynq.Task) error {
	var p SendRepeatRecordPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("%w: bad payload: %v", asynq.SkipRetry, err)
	}
	if p.Owner == "" {
		// A task from before claims had owners: its claim lapses and
		// check_repeaters claims the record again.
		return nil
	}
	return h.Legacy.SendRecord(ctx, repeaters.LegacyClaim{RecordID: p.RecordID, Owner: p.Owner, NotBefore: p.NotBefore})
}
