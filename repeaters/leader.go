package repeaters

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/bsm/redislock"
	"github.com/redis/go-redis/v9"
)

// LeaderKey is the Redis key of the dispatcher's lease.
const LeaderKey = "{repeaterd}:leader:dispatcher"

// DefaultLeaseTTL is how long a dead leader blocks a standby.
const DefaultLeaseTTL = 5 * time.Second

// Elector runs a function while this process holds the leader lease, and
// stands by otherwise. The lease is renewed at a third of its TTL; a leader
// that cannot renew stops leading before the lease can pass to another.
type Elector struct {
	locks  *redislock.Client
	ttl    time.Duration
	logger *slog.Logger
}

// NewElector returns an Elector on a lease of ttl.
func NewElector(rdb redis.UniversalClient, ttl time.Duration, logger *slog.Logger) *Elector {
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	return &Elector{locks: redislock.New(rdb), ttl: ttl, logger: logger}
}

// Run calls lead with a context that ends when leadership is lost and the
// term's Fence, for as long as ctx lives, retrying the lease while another
// process holds it.
func (e *Elector) Run(ctx context.Context, lead func(context.Context, Fence)) {
	for ctx.Err() == nil {
		lease, err := e.locks.Obtain(ctx, LeaderKey, e.ttl, nil)
		if err != nil {
			if !errors.Is(err, redislock.ErrNotObtained) {
				e.logger.Warn("leader lease", "err", err)
			}
			sleep(ctx, e.ttl/3)
			continue
		}
		e.logger.Info("dispatcher leading")
		e.hold(ctx, lease, lead)
		e.logger.Info("dispatcher stopped leading")
	}
}

func (e *Elector) hold(ctx context.Context, lease *redislock.Lock, lead func(context.Context, Fence)) {
	leadCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		lead(leadCtx, Fence{Key: LeaderKey, Token: lease.Token()})
	}()
	ticker := time.NewTicker(e.ttl / 3)
	defer ticker.Stop()
	for {
		select {
		case <-done:
			cancel()
			e.release(lease)
			return
		case <-ticker.C:
			if err := lease.Refresh(ctx, e.ttl, nil); err != nil {
				e.logger.Warn("leader lease lost", "err", err)
				cancel()
				<-done
				return
			}
		}
	}
}

func (e *Elector) release(lease *redislock.Lock) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = lease.Release(ctx)
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
