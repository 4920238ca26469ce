package tasks

import (
	"cmp"
	"context"
	"time"

	"github.com/hibiken/asynq"

	"repeaterd/store"
)

// Maintenance task types.
const (
	TypeRefreshInvariants = "maintenance:refresh_invariants"
	TypePurge             = "maintenance:purge"
)

// Maintenance defaults.
const (
	// purgeBatch and purgePause keep each purge transaction short and leave
	// room between them for the dispatcher and the WAL consumer.
	purgeBatch = 1000
	purgePause = 50 * time.Millisecond
)

// NewPurgeTask builds the retention purge, unique while it runs.
func NewPurgeTask() *asynq.Task {
	return asynq.NewTask(TypePurge, nil,
		asynq.Queue(QueuePeriodic), asynq.Unique(time.Hour), asynq.MaxRetry(1), asynq.Timeout(time.Hour))
}

// Purge deletes terminal records older than retention, with their attempts
// and orphaned payloads, in small batches.
func Purge(ctx context.Context, st *store.Store, retention time.Duration) (store.PurgeResult, error) {
	return st.Purge(ctx, time.Now().Add(-retention), purgeBatch, purgePause)
}

// NewRefreshInvariantsTask builds the invariants refresh, unique while it runs.
func NewRefreshInvariantsTask() *asynq.Task {
	return asynq.NewTask(TypeRefreshInvariants, nil,
		asynq.Queue(QueuePeriodic), asynq.Unique(10*time.Minute), asynq.MaxRetry(1), asynq.Timeout(10*time.Minute))
}

// MaintenanceHandlers runs periodic upkeep.
type MaintenanceHandlers struct {
	Store *store.Store
	// Retention is how long terminal records are kept. Defaults to 30 days.
	Retention time.Duration
}

// Register adds the maintenance handlers to mux.
func (h *MaintenanceHandlers) Register(mux *asynq.ServeMux) {
	mux.HandleFunc(TypeRefreshInvariants, func(ctx context.Context, _ *asynq.Task) error {
		return h.Store.RefreshInvariants(ctx)
	})
	mux.HandleFunc(TypePurge, func(ctx context.Context, _ *asynq.Task) error {
		_, err := Purge(ctx, h.Store, cmp.Or(h.Retention, DefaultRetention))
		return err
	})
}

// invariantsSchedule returns the periodic refresh, or none when pg_cron
// runs it inside Postgres.
func (e *Engine) invariantsSchedule(ctx context.Context) []Periodic {
	interval := e.cfg.Scheduler.InvariantsInterval
	if e.Store.PgCronAvailable(ctx) {
		err := e.Store.SchedulePgCron(ctx, interval)
		if err == nil {
			e.Logger.Info("invariants refreshed by pg_cron", "every", interval)
			return nil
		}
		e.Logger.Warn("pg_cron schedule failed; using the scheduler", "err", err)
	}
	return []Periodic{{Every: interval, Task: NewRefreshInvariantsTask()}}
}
