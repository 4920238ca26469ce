package tasks

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"

	"repeaterd/repeaters/lifecycle"
)

// Worker defaults.
const (
	DefaultConcurrency       = 20
	DefaultTaskCheckInterval = 20 * time.Millisecond
	DefaultDrainTimeout      = 20 * time.Second
)

// WorkerConfig configures the worker role.
type WorkerConfig struct {
	// Concurrency is how many tasks run at once. Defaults to 20.
	Concurrency int
	// TaskCheckInterval is how often idle workers look for tasks. asynq's own
	// default (1s) would add up to a second to every delivery. Defaults to 20ms.
	TaskCheckInterval time.Duration
	// DrainTimeout bounds how long shutdown waits for in-flight batches.
	// Defaults to 20s.
	DrainTimeout time.Duration
}

// WithDefaults returns c with every zero field set to its default.
func (c WorkerConfig) WithDefaults() WorkerConfig {
	c.Concurrency = cmp.Or(c.Concurrency, DefaultConcurrency)
	c.TaskCheckInterval = cmp.Or(c.TaskCheckInterval, DefaultTaskCheckInterval)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, DefaultDrainTimeout)
	return c
}

// Worker is the worker role: an asynq server running the engine's tasks.
type Worker struct {
	srv      *asynq.Server
	mux      *asynq.ServeMux
	draining atomic.Bool
	life     lifecycle.Base
}

// NewWorker wires a worker whose handlers register on its mux.
func NewWorker(cfg WorkerConfig, redisOpt asynq.RedisConnOpt, logger *slog.Logger, register ...func(*asynq.ServeMux)) *Worker {
	cfg = cfg.WithDefaults()
	srv := asynq.NewServer(redisOpt, asynq.Config{
		Concurrency:       cfg.Concurrency,
		Queues:            QueuePriorities,
		TaskCheckInterval: cfg.TaskCheckInterval,
		ShutdownTimeout:   cfg.DrainTimeout,
		RetryDelayFunc:    RetryDelay,
		Logger:            asynqLogger{logger},
		LogLevel:          asynq.WarnLevel,

		// Scheduled tasks (legacy sends held to their rate-limit time, retries)
		// move to their queue within this; asynq's 5s default would send a
		// rate-limited legacy schedule in clumps.
		DelayedTaskCheckInterval: 100 * time.Millisecond,
	})
	mux := asynq.NewServeMux()
	for _, r := range register {
		r(mux)
	}
	return &Worker{srv: srv, mux: mux}
}

// Start begins processing.
func (w *Worker) Start(ctx context.Context) error {
	return w.life.Start(ctx, func(context.Context) error {
		w.draining.Store(false)
		return w.srv.Start(w.mux)
	})
}

// Stop drains in-flight tasks and stops. asynq bounds the drain by the
// configured DrainTimeout; Stop returns when it ends or when ctx does.
func (w *Worker) Stop(ctx context.Context) error {
	return w.life.Stop(ctx, func(ctx context.Context) error {
		w.draining.Store(true)
		done := make(chan struct{})
		go func() { w.srv.Shutdown(); close(done) }()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("worker: drain: %w", ctx.Err())
		}
	})
}

// Draining reports whether Stop has begun.
func (w *Worker) Draining() bool { return w.draining.Load() }

// RetryDelay is how long a failed task waits: 1s doubling to a minute, with
// jitter. Failures here are mostly a database or Redis blip; asynq's default
// (15s and up, growing as n⁴) would hold repeaters up long after recovery.
func RetryDelay(n int, _ error, _ *asynq.Task) time.Duration {
	d := min(time.Second<<min(n, 6), time.Minute)
	return d/2 + rand.N(d/2+1)
}

// asynqLogger routes asynq's logs to slog.
type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug("asynq", "msg", args) }
func (a asynqLogger) Info(args ...any)  { a.l.Info("asynq", "msg", args) }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn("asynq", "msg", args) }
func (a asynqLogger) Error(args ...any) { a.l.Error("asynq", "msg", args) }
func (a asynqLogger) Fatal(args ...any) { a.l.Error("asynq fatal", "msg", args) }
