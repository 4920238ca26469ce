package tasks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"repeaterd/repeaters/lifecycle"
)

// Periodic is one task the scheduler enqueues on an interval.
type Periodic struct {
	Every time.Duration
	Task  *asynq.Task
}

// Scheduler is the scheduler role: it enqueues periodic tasks. Several may
// run; each task is unique per interval, so a tick runs once.
type Scheduler struct {
	sched *asynq.Scheduler
	tasks []Periodic
	// afterStart run once each, in the background, from Start until Stop.
	afterStart []func(ctx context.Context)
	life       lifecycle.Base
}

// NewScheduler returns a scheduler for tasks.
func NewScheduler(redisOpt asynq.RedisConnOpt, logger *slog.Logger, tasks ...Periodic) *Scheduler {
	s := asynq.NewScheduler(redisOpt, &asynq.SchedulerOpts{
		Logger:   asynqLogger{logger},
		LogLevel: asynq.WarnLevel,
		EnqueueErrorHandler: func(t *asynq.Task, _ []asynq.Option, err error) {
			if !errors.Is(err, asynq.ErrDuplicateTask) {
				logger.Warn("periodic enqueue", "task", t.Type(), "err", err)
			}
		},
	})
	return &Scheduler{sched: s, tasks: tasks}
}

// Start registers the tasks and begins ticking.
func (s *Scheduler) Start(ctx context.Context) error {
	return s.life.Start(ctx, func(ctx context.Context) error {
		for _, p := range s.tasks {
			if _, err := s.sched.Register(fmt.Sprintf("@every %s", p.Every), p.Task); err != nil {
				return err
			}
		}
		if err := s.sched.Start(); err != nil {
			return err
		}
		for _, fn := range s.afterStart {
			s.life.Go(func() { fn(ctx) })
		}
		return nil
	})
}

// Stop stops ticking.
func (s *Scheduler) Stop(ctx context.Context) error {
	return s.life.Stop(ctx, func(context.Context) error { s.sched.Shutdown(); return nil })
}
