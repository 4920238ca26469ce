package tasks

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"repeaterd/repeaters"
	"repeaterd/repeaters/lifecycle"
	"repeaterd/store"
)

// Role names. A process runs any set of them (`repeaterd run --roles`).
const (
	RoleDispatcher = "dispatcher"
	RoleWorker     = "worker"
	RoleScheduler  = "scheduler"
	RoleStats      = "stats"
	RoleWeb        = "web"
)

// AllRoles lists every role in start order.
var AllRoles = []string{RoleDispatcher, RoleWorker, RoleScheduler, RoleStats, RoleWeb}

// RoleBuilder builds a role that lives outside this package (stats and web
// live in dashboards/, which knows nothing of asynq's engine wiring).
type RoleBuilder func(ctx context.Context, e *Engine) (lifecycle.Service, error)

// Engine holds what the engine's roles share: one Postgres pool, one Redis
// client, the locker, the sender, the clock. Opening it connects; it starts
// nothing.
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
	// redisOpt is REDIS_URL parsed; it gives asynq's server and scheduler
	// connections of their own, which they close on shutdown.
	redisOpt RedisOptions
}

// OpenEngine connects to Postgres and Redis.
func OpenEngine(ctx context.Context, cfg EngineConfig, logger *slog.Logger) (*Engine, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	redisOpt, err := ParseRedisURL(cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	st, err := store.OpenWith(ctx, cfg.DatabaseURL, store.Options{LegacyByDefault: cfg.LegacyByDefault, Secrets: cfg.Secrets,
		MaxTimeout: cfg.MaxTimeout})
	if err != nil {
		return nil, err
	}
	rdb := redisOpt.NewClient()
	if err := rdb.Ping(ctx).Err(); err != nil {
		st.Close()
		_ = rdb.Close()
		return nil, fmt.Errorf("redis (%s): %w", redisOpt, err)
	}
	e := &Engine{cfg: cfg, Store: st, Redis: rdb, Logger: logger, redisOpt: redisOpt}
	e.Locker = repeaters.NewLocker(rdb, cfg.LockTTL)
	e.Sender = repeaters.NewSender(cfg.Sender)
	e.Client = NewClient(rdb)
	e.Processor = &repeaters.Processor{Store: st, Locker: e.Locker, Sender: e.Sender, Policy: cfg.Backoff, Logger: logger, Clock: cfg.Clock}
	e.Legacy = &repeaters.Legacy{Store: st, Sender: e.Sender, Schedule: cfg.Legacy.Schedule, Claim: cfg.Legacy.Claim, Clock: cfg.Clock,
		Limits: repeaters.NewLimits(rdb, cfg.Dispatcher)}
	return e, nil
}

// Config is the engine's configuration with its defaults filled in.
func (e *Engine) Config() EngineConfig { return e.cfg }

// RedisOptions is REDIS_URL parsed, for the parts outside this package
// that open Redis connections of their own (asynqmon): they then reach the
// same deployment, Sentinel or Cluster included, with the same settings.
func (e *Engine) RedisOptions() RedisOptions { return e.redisOpt }

// DatabaseURL is the Postgres URL the engine was opened with.
func (e *Engine) DatabaseURL() string { return e.cfg.DatabaseURL }

// Close releases the connections.
func (e *Engine) Close() {
	e.Sender.Close()
	_ = e.Redis.Close()
	e.Store.Close()
}

// Services builds the named roles' services, in AllRoles order. Roles this
// package cannot build itself (stats, web) come from extra; an unknown role,
// or one with no builder, is an error naming the roles there are.
func (e *Engine) Services(ctx context.Context, roles []string, extra map[string]RoleBuilder) ([]lifecycle.Service, error) {
	for _, r := range roles {
		if !slices.Contains(AllRoles, r) {
			return nil, fmt.Errorf("unknown role %q (roles: %s)", r, strings.Join(AllRoles, ","))
		}
	}
	builders := map[string]RoleBuilder{
		RoleDispatcher: func(context.Context, *Engine) (lifecycle.Service, error) { return e.NewDispatcher(), nil },
		RoleWorker:     func(context.Context, *Engine) (lifecycle.Service, error) { return e.NewWorker(), nil },
		RoleScheduler:  func(ctx context.Context, _ *Engine) (lifecycle.Service, error) { return e.NewScheduler(ctx), nil },
	}
	var out []lifecycle.Service
	for _, role := range AllRoles {
		if !slices.Contains(roles, role) {
			continue
		}
		build, ok := builders[role]
		if !ok {
			build, ok = extra[role]
		}
		if !ok {
			return nil, fmt.Errorf("role %s: not available in this process", role)
		}
		s, err := build(ctx, e)
		if err != nil {
			return nil, fmt.Errorf("role %s: %w", role, err)
		}
		out = append(out, s)
	}
	return out, nil
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
	upkeep := &MaintenanceHandlers{Store: e.Store, Retention: e.cfg.Scheduler.Retention, Logger: e.Logger}
	bulk := &BulkJobHandlers{Store: e.Store, Logger: e.Logger}
	w := NewWorker(e.cfg.Worker, e.redisOpt, e.Logger,
		append([]func(*asynq.ServeMux){h.Register, legacy.Register, upkeep.Register, bulk.Register}, register...)...)
	h.Draining = w.Draining
	return w
}

// NewScheduler returns the scheduler role: check_repeaters, the purge, the
// invariants refresh (unless pg_cron runs it) and one refresh a while after
// start, plus extra periodic tasks.
func (e *Engine) NewScheduler(ctx context.Context, extra ...Periodic) *Scheduler {
	tasks := append([]Periodic{
		{Every: e.cfg.Scheduler.CheckInterval, Task: NewCheckRepeatersTask()},
		{Every: e.cfg.Scheduler.PurgeInterval, Task: NewPurgeTask()},
	}, e.invariantsSchedule(ctx)...)
	s := NewScheduler(e.redisOpt, e.Logger, append(tasks, extra...)...)
	s.afterStart = append(s.afterStart, e.refreshAfterStart(e.cfg.Scheduler.InvariantsStartupDelay))
	return s
}

// totalConcurrency sums the concurrency of live asynq servers, read at most
// every 10s; with none seen yet it assumes one worker of this config.
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
		cached = cmp.Or(total, e.cfg.Worker.Concurrency)
		return cached
	}
}
