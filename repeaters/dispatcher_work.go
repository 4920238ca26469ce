package repeaters

import (
	"context"
	"time"

	"repeaterd/store"
)

// pruneEvery is how often (real time) the leader takes repeaters whose work
// ended out of the work set. An idle repeater left in it a little longer
// costs one index probe per pass; pruning every pass would double the
// readiness work under load, when passes come many times a second.
const pruneEvery = time.Second

// pruneIdle runs store.PruneIdleRepeaters at most every pruneEvery. Its
// failure is logged, not fatal to the pass: a stale work set only costs
// probes, never a missed record.
func (d *Dispatcher) pruneIdle(ctx context.Context) {
	if !d.lastPrune.IsZero() && time.Since(d.lastPrune) < pruneEvery {
		return
	}
	d.lastPrune = time.Now()
	pruned, err := d.store.PruneIdleRepeaters(ctx, store.DefaultPruneLimit)
	if err != nil {
		if ctx.Err() == nil {
			d.logger.Warn("dispatcher: pruning the work set", "err", err)
		}
		return
	}
	if len(pruned) > 0 {
		d.logger.Debug("dispatcher: repeaters out of the work set", "count", len(pruned))
	}
}
