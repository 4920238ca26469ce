package tasks

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

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

// Purge metrics, exported by the processes that run the purge (workers).
var (
	purged = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "repeaterd_purged_total",
		Help: "Rows the retention purge deleted, by kind (records, attempts, payloads).",
	}, []string{"kind"})
	purgeLastSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "repeaterd_purge_last_success_timestamp_seconds",
		Help: "Unix time the last retention purge of this process finished without error; 0 if none did.",
	})
)

func init() {
	for _, k := range []string{"records", "attempts", "payloads"} {
		purged.WithLabelValues(k)
	}
}

// Collectors returns the maintenance metrics, for registration.
func Collectors() []prometheus.Collector { return []prometheus.Collector{purged, purgeLastSuccess} }

// NewPurgeTask builds the retention purge, unique while it runs.
func NewPurgeTask() *asynq.Task {
	return asynq.NewTask(TypePurge, nil,
		asynq.Queue(QueuePeriodic), asynq.Unique(time.Hour), asynq.MaxRetry(1), asynq.Timeout(time.Hour))
}

// Purge deletes terminal records completed longer than retention ago, with
// their attempts and orphaned payloads, in small batches; progress, when
// set, is told the running total after each batch.
func Purge(ctx context.Context, st *store.Store, retention time.Duration, progress func(store.PurgeResult)) (store.PurgeResult, error) {
	return st.Purge(ctx, store.PurgeParams{
		Cutoff: time.Now().Add(-retention), Batch: purgeBatch, Pause: purgePause, Progress: progress,
	})
}

// NewRefreshInvariantsTask builds the invariants refresh, unique while it runs.
func NewRefreshInvariantsTask() *asynq.Task {
	return asynq.NewTask(TypeRefreshInvariants, nil,
		asynq.Queue(QueuePeriodic), asynq.Unique(10*time.Minute), asynq.MaxRetry(1), asynq.Timeout(10*time.Minute))
}

// MaintenanceHandlers runs periodic upkeep.
type MaintenanceHandlers struct {
	Store *store.Store
	// Retention is how long terminal records are kept after completing.
	// Defaults to 720h.
	Retention time.Duration
	// Logger receives each purge's counts. Defaults to slog.Default().
	Logger *slog.Logger
}

// Register adds the maintenance handlers to mux.
func (h *MaintenanceHandlers) Register(mux *asynq.ServeMux) {
	mux.HandleFunc(TypeRefreshInvariants, func(ctx context.Context, _ *asynq.Task) error {
		return h.Store.RefreshInvariants(ctx)
	})
	mux.HandleFunc(TypePurge, func(ctx context.Context, _ *asynq.Task) error {
		_, err := h.purge(ctx)
		return err
	})
}

// purge runs one scheduled purge, counting what it removed in the metrics
// as it goes and logging the totals.
func (h *MaintenanceHandlers) purge(ctx context.Context) (store.PurgeResult, error) {
	logger := cmp.Or(h.Logger, slog.Default())
	retention := cmp.Or(h.Retention, DefaultRetention)
	began := time.Now()
	var last store.PurgeResult
	total, err := Purge(ctx, h.Store, retention, func(t store.PurgeResult) {
		purged.WithLabelValues("records").Add(float64(t.Records - last.Records))
		purged.WithLabelValues("attempts").Add(float64(t.Attempts - last.Attempts))
		purged.WithLabelValues("payloads").Add(float64(t.Payloads - last.Payloads))
		last = t
	})
	attrs := []any{"records", total.Records, "attempts", total.Attempts, "payloads", total.Payloads,
		"retention", retention, "took", time.Since(began).Round(time.Millisecond)}
	if err != nil {
		logger.Warn("purge: stopped early", append(attrs, "err", err)...)
		return total, err
	}
	purgeLastSuccess.SetToCurrentTime()
	logger.Info("purge: done", attrs...)
	return total, nil
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

// refreshAfterStart enqueues one invariants refresh delay after the
// scheduler starts, so the view reflects a deploy once it has settled
// instead of waiting up to a whole interval (or for pg_cron). Schedulers
// started together enqueue it once: the task is unique.
func (e *Engine) refreshAfterStart(delay time.Duration) func(ctx context.Context) {
	return func(ctx context.Context) {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := e.Client.asynq.EnqueueContext(ctx, NewRefreshInvariantsTask())
		switch {
		case err == nil:
			e.Logger.Info("invariants: refresh after start enqueued", "delay", delay)
		case errors.Is(err, asynq.ErrDuplicateTask):
		case ctx.Err() == nil:
			e.Logger.Warn("invariants: refresh after start", "err", err)
		}
	}
}
