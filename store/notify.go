package store

import (
	"context"
	"sync"
	"time"
)

// notifier coalesces the dispatcher's wake-ups from the ingest paths. A
// NOTIFY inside a writing transaction takes a lock held through its commit,
// so notifying transactions commit one at a time: with synchronous_commit
// on, one WAL flush each instead of flushes shared by concurrent commits.
// Instead, each write asks for a NOTIFY after its commit; at most one is in
// flight, and any asked for meanwhile become one more once it is done. So
// every committed record is followed by a NOTIFY sent after its commit (the
// dispatcher reads it), and a burst of writes costs a few.
type notifier struct {
	mu               sync.Mutex
	running, pending bool
}

// wakeDispatcher asks for a NOTIFY on NotifyChannel after the caller's
// commit, without waiting for it. A lost one costs at most the dispatcher's
// poll ceiling.
func (s *Store) wakeDispatcher() {
	n := &s.wake
	n.mu.Lock()
	if n.running {
		n.pending = true
		n.mu.Unlock()
		return
	}
	n.running = true
	n.mu.Unlock()
	go s.notifyLoop()
}

func (s *Store) notifyLoop() {
	n := &s.wake
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		// Nothing to make durable: the commit need not wait for its flush.
		_, _ = s.pool.Exec(ctx, `SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')`, NotifyChannel)
		cancel()
		n.mu.Lock()
		if !n.pending {
			n.running = false
			n.mu.Unlock()
			return
		}
		n.pending = false
		n.mu.Unlock()
	}
}
