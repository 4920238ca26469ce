package tasks

import (
	"context"
	"time"

	"github.com/hibiken/asynq"

	"repeaterd/store"
)

// Maintenance task types.
const TypeRefreshInvariants = "maintenance:refresh_invariants"

// DefaultInvariantsInterval is how often the invariants view is refreshed.
const DefaultInvariantsInterval = 30 * time.Minute

// NewRefreshInvariantsTask builds the invariants refresh, unique while it runs.
func NewRefreshInvariantsTask() *asynq.Task {
	return asynq.NewTask(TypeRefreshInvariants, nil,
		asynq.Queue(QueuePeriodic), asynq.Unique(10*time.Minute), asynq.MaxRetry(1), asynq.Timeout(10*time.Minute))
}

// MaintenanceHandlers runs periodic upkeep.
type MaintenanceHandlers struct {
	Store *store.Store
}

// Register adds the maintenance handlers to mux.
func (h *MaintenanceHandlers) Register(mux *asynq.ServeMux) {
	mux.HandleFunc(TypeRefreshInvariants, func(ctx context.Context, _ *asynq.Task) error {
		return h.Store.RefreshInvariants(ctx)
	})
}

// invariantsSchedule returns the periodic refresh, or none when pg_cron
// runs it inside Postgres.
func (e *Engine) invariantsSchedule(ctx context.Context) []Periodic {
	interval := e.cfg.InvariantsInterval
	if interval <= 0 {
		interval = DefaultInvariantsInterval
	}
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
