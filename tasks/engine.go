package tasks

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"repeaterd/repeaters"
	"repeaterd/store"
)

// EngineConfig configures the delivery engine's roles.
type EngineConfig struct {
	DatabaseURL string
	RedisURL    string
	// AllowPrivateTargets lets repeaters reach private addresses. Defaults to false.
	AllowPrivateTargets bool
	// LockTTL is a repeater lock's lifetime while unrenewed. Defaults to 30s.
	LockTTL time.Duration
	// MaxInFlight caps a process's in-flight HTTP requests. Defaults to 256.
	MaxInFlight int
	// ProcessRepeatersDefault is the process_repeaters flag of a domain
	// without a row. Defaults to true (set by the caller).
	ProcessRepeatersDefault bool
	Backoff                 repeaters.BackoffPolicy
	// Legacy is the legacy path's per-record retry schedule.
	Legacy repeaters.LegacySchedule
	// CheckInterval is how often check_repeaters runs. Defaults to 10s.
	CheckInterval time.Duration
	// InvariantsInterval is how often the invariants view is refreshed.
	// Defaults to 30m.
	InvariantsInterval time.Duration
	// Retention is how long terminal records are kept. Defaults to 30 days.
	Retention time.Duration
	// LegacyClaim is the legacy path's lease on a queued record, and so how
	// long a send task lost with Redis delays its record. Defaults to 5m.
	LegacyClaim time.Duration
	Dispatcher  repeaters.DispatcherConfig
	Worker      WorkerConfig
	Version     string
}

// Engine holds what the engine's roles share: one Postgres pool, one Redis
// client, the locker, the sender.
type Engine struct {
	cfg       EngineConfig
	Store     *store.Store
	Redis     redis.UniversalClient
	Locker    *repeaters.Locker
	Sender    *repeaters.Sender
	Client    *Client
	Processor *repeaters.Processor
	Legacy    *repeaters.Legacy
	Logger    *slog.Logger
	// redisOpt gives asynq's server and scheduler connections of their own,
	// which they close on shutdown.
	redisOpt asynq.RedisConnOpt
}

// OpenEngine connects to Postgres and Redis.
func OpenEngine(ctx context.Context, cfg EngineConfig, logger *slog.Logger) (*Engine, error) {
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	st.ProcessRepeatersDefault = cfg.ProcessRepeatersDefault
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("bad REDIS_URL: %w", err)
	}
	redisOpt, err := asynq.ParseRedisURI(cfg.RedisURL)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("bad REDIS_URL: %w", err)
	}
	rdb := redis.NewClient(opt)
	if err := rdb.Ping(ctx).Err(); err != nil {
		st.Close()
		return nil, fmt.Errorf("redis: %w", err)
	}
	cfg.Backoff = cfg.Backoff.WithDefaults()
	e := &Engine{cfg: cfg, Store: st, Redis: rdb, Logger: logger, redisOpt: redisOpt}
	e.Locker = repeaters.NewLocker(rdb, cfg.LockTTL)
	e.Sender = repeaters.NewSender(repeaters.SenderConfig{
		AllowPrivateTargets: cfg.AllowPrivateTargets,
		MaxInFlight:         cfg.MaxInFlight,
		MaxRetryAfter:       cfg.Backoff.Max,
		Version:             cfg.Version,
	})
	e.Client = NewClient(rdb)
	e.Processor = &repeaters.Processor{Store: st, Locker: e.Locker, Sender: e.Sender, Policy: cfg.Backoff, Logger: logger}
	e.Legacy = &repeaters.Legacy{Store: st, Sender: e.Sender, Schedule: cfg.Legacy, Claim: cfg.LegacyClaim}
	if e.cfg.CheckInterval <= 0 {
		e.cfg.CheckInterval = DefaultCheckInterval
	}
	return e, nil
}

// DatabaseURL is the Postgres URL the engine was opened with.
func (e *Engine) DatabaseURL() string { return e.cfg.DatabaseURL }

// Close releases the connections.
func (e *Engine) Close() {
	e.Sender.Close()
	_ = e.Redis.Close()
	e.Store.Close()
}

// NewDispatcher returns the dispatcher role. Unless configured, the domain
// in-flight cap follows the live worker pool's total concurrency.
func (e *Engine) NewDispatcher() *repeaters.Dispatcher {
	cfg := e.cfg.Dispatcher
	if cfg.TotalConcurrency == nil {
		cfg.TotalConcurrency = e.totalConcurrency()
	}
	return repeaters.NewDispatcher(cfg, e.Store, e.Redis, e.Locker, e.Client, e.Logger)
}

// NewWorker returns the worker role running both paths' handlers.
func (e *Engine) NewWorker(register ...func(*asynq.ServeMux)) *Worker {
	h := &Handlers{Processor: e.Processor, Client: e.Client}
	legacy := &LegacyHandlers{Legacy: e.Legacy, Client: e.Client}
	upkeep := &MaintenanceHandlers{Store: e.Store, Retention: e.cfg.Retention}
	w := NewWorker(e.cfg.Worker, e.redisOpt, e.Logger,
		append([]func(*asynq.ServeMux){h.Register, legacy.Register, upkeep.Register}, register...)...)
	h.Draining = w.Draining
	return w
}

// NewScheduler returns the scheduler role: check_repeaters, the invariants
// refresh (unless pg_cron runs it), plus extra periodic tasks.
func (e *Engine) NewScheduler(ctx context.Context, extra ...Periodic) *Scheduler {
	tasks := append([]Periodic{
		{Every: e.cfg.CheckInterval, Task: NewCheckRepeatersTask()},
		{Every: DefaultPurgeInterval, Task: NewPurgeTask()},
	}, e.invariantsSchedule(ctx)...)
	return NewScheduler(e.redisOpt, e.Logger, append(tasks, extra...)...)
}

// totalConcurrency sums the concurrency of live asynq servers, read at most
// every 10s; with none seen yet it assumes one default worker.
func (e *Engine) totalConcurrency() func(context.Context) int {
	insp := asynq.NewInspectorFromRedisClient(e.Redis)
	var cached int
	var readAt time.Time
	return func(context.Context) int {
		if time.Since(readAt) < 10*time.Second && cached > 0 {
			return cached
		}
		readAt = time.Now()
		total := 0
		if servers, err := insp.Servers(); err == nil {
			for _, s := range servers {
				total += s.Concurrency
			}
		}
		if total == 0 {
			total = e.cfg.Worker.withDefaults().Concurrency
		}
		cached = total
		return total
	}
}
