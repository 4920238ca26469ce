package repeaters

import (
	"context"
	"slices"
	"sync"

	"repeaterd/store"
)

// How a batch goes out: the first wave (one request per allowed worker),
// then the rest while the endpoint keeps answering well. A batch stops
// starting requests when the endpoint looks dead (a wave's worth of
// failures in a row) or says "too fast" (refusals outnumber successes), so
// neither costs a whole batch of refused requests.

// sendUntil is SendBatch that stops starting requests once stop, called
// with each outcome as it arrives, returns true. The requests in flight then
// finish; the records not started are unsent.
func (s *Sender) sendUntil(ctx context.Context, r *store.Repeater, recs []store.ReadyRecord, concurrency int,
	stop func(store.Outcome) bool) (outcomes []store.Outcome, unsent []int64) {
	batch := make(chan struct{}, max(concurrency, 1))
	outcomes = make([]store.Outcome, len(recs))
	started := 0
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		stopped bool
	)
	for i := range recs {
		// The batch slot first: holding a process-wide slot while waiting for
		// our own batch would starve other batches.
		if !takeSendSlot(ctx, batch) {
			break
		}
		mu.Lock()
		halt := stopped
		mu.Unlock()
		if halt || !takeSendSlot(ctx, s.slots) {
			<-batch
			break
		}
		started++
		wg.Go(func() {
			defer func() { <-s.slots; <-batch }()
			out := s.send(ctx, r, &recs[i])
			outcomes[i] = out
			if stop != nil {
				mu.Lock()
				stopped = stopped || stop(out)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, rec := range recs[started:] {
		unsent = append(unsent, rec.ID)
	}
	return outcomes[:started], unsent
}

// sendGate follows a batch's outcomes as they arrive and says when to stop.
type sendGate struct {
	window                           int // a wave: this many failures in a row mean the endpoint is down
	succeeded, throttled, failStreak int
}

func (g *sendGate) stop(o store.Outcome) bool {
	switch o.State {
	case store.StateEmpty: // never reached the endpoint
	case store.StateFail:
		g.failStreak++
		if o.Throttled() {
			g.throttled++
		}
	case store.StateSuccess:
		g.succeeded++
		g.failStreak = 0
	default:
		g.failStreak = 0
	}
	return g.halted()
}

// halted reports whether the outcomes so far say to stop: a wave's worth of
// failures in a row (the endpoint is down), or refusals outnumbering
// successes (too fast; one refused poison record among successes is not).
func (g *sendGate) halted() bool {
	return g.failStreak >= g.window || g.throttled >= 2 && g.throttled > g.succeeded
}

// sendWaves sends the first wave (one request per worker) and the rest only
// if that wave reached the endpoint without saying "too fast"; the rest go
// out while the gate allows. Records never tried go first, so a wave of
// retries of refused records (a poison record) cannot stand for the
// endpoint. The records not sent are returned as unsent.
func (p *Processor) sendWaves(ctx context.Context, r *store.Repeater, recs []store.ReadyRecord) ([]store.Outcome, []int64) {
	recs = slices.Clone(recs)
	slices.SortStableFunc(recs, func(a, b store.ReadyRecord) int {
		return boolInt(a.AttemptCount > 0) - boolInt(b.AttemptCount > 0)
	})
	concurrency := p.Policy.Concurrency(r)
	gate := &sendGate{window: concurrency}
	first := min(len(recs), concurrency)
	outcomes, unsent := p.Sender.sendUntil(ctx, r, recs[:first], concurrency, gate.stop)
	rest := recs[first:]
	if len(unsent) == 0 && reachedEndpoint(outcomes) && !gate.halted() && len(rest) > 0 {
		more, moreUnsent := p.Sender.sendUntil(ctx, r, rest, concurrency, gate.stop)
		return append(outcomes, more...), moreUnsent
	}
	for _, rec := range rest {
		unsent = append(unsent, rec.ID)
	}
	return outcomes, unsent
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// reachedEndpoint reports whether any outcome is other than a failure.
func reachedEndpoint(outcomes []store.Outcome) bool {
	for _, o := range outcomes {
		if o.State != store.StateFail {
			return true
		}
	}
	return false
}
