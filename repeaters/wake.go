package repeaters

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"repeaterd/store"
)

// sleep waits for wait, a wake-up or the end of ctx, whichever comes first.
func (d *Dispatcher) sleep(ctx context.Context, wait time.Duration) {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-d.wake:
	}
}

// Wake makes a sleeping dispatcher run a pass now.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// listenPostgres wakes the dispatcher on NOTIFY of new records.
func (d *Dispatcher) listenPostgres(ctx context.Context) {
	for ctx.Err() == nil {
		err := d.store.Listen(ctx, store.NotifyChannel, func(*pgconn.Notification) { d.Wake() })
		if ctx.Err() == nil {
			d.logger.Warn("listen for new records", "err", err)
			sleep(ctx, time.Second)
		}
	}
}

// listenRedis wakes the dispatcher when a lock is released.
func (d *Dispatcher) listenRedis(ctx context.Context) {
	sub := d.rdb.Subscribe(ctx, WakeChannel)
	defer sub.Close()
	ch := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			d.Wake()
		}
	}
}
