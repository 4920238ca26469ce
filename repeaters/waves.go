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
// finish; the records not started are unsent. Records start in order, so
// the started ones are a prefix of recs. One goroutine per allowed request
// in flight takes the records in turn: a goroutine per request would grow a
// fresh stack for every one (net/http's calls run deep).
func (s *Sender) sendUntil(ctx context.Context, r *store.Repeater, recs []store.ReadyRecord, concurrency int,
	stop func(store.Outcome) bool) (outcomes []store.Outcome, unsent []int64) {
	outcomes = make([]store.Outcome, len(recs))
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		next    int // the next record to start
		stopped bool
	)
	// take returns the next record to start, holding a process-wide slot
	// for it, or false when none is left, the batch stopped or ctx ended.
	take := func() (int, bool) {
		if !takeSendSlot(ctx, s.slots) {
			return 0, false
		}
		mu.Lock()
		defer mu.Unlock()
		if stopped || next == len(recs) || ctx.Err() != nil {
			<-s.slots
			return 0, false
		}
		next++
		return next - 1, true
	}
	for range min(max(concurrency, 1), len(recs)) {
		wg.Go(func() {
			for {
				i, ok := take()
				if !ok {
					return
				}
				out := s.send(ctx, r, &recs[i])
				<-s.slots
				outcomes[i] = out
				if stop != nil {
					mu.Lock()
					stopped = stopped || stop(out)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for _, rec := range recs[next:] {
		unsent = append(unsent, rec.ID)
	}
	return outcomes[:next], unsent
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
	// The first wave goes out whole: its requests start together, so which
	// of them a fast refusal would cut off is only scheduling luck.
	observe := func(o store.Outcome) bool { gate.stop(o); return false }
	outcomes, unsent := p.Sender.sendUntil(ctx, r, recs[:first], concurrency, observe)
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
