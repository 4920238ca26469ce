package repeaters

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"repeaterd/store"
)

// Processor runs the worker side of the new path: process_repeater sends a
// batch, update_repeater applies its outcome to the repeater.
type Processor struct {
	Store  *store.Store
	Locker *Locker
	Sender *Sender
	Policy BackoffPolicy
	Logger *slog.Logger
	// Clock decides when a backed-off repeater is next due. Defaults to the
	// system clock.
	Clock Clock
	// OnRecorded is called after a batch's outcomes are written, with their
	// summary, so a test can wait for it instead of sleeping. It must not
	// block. Defaults to none.
	OnRecorded func(Batch, store.BatchSummary)
	// OnApplied is called after update_repeater applied a batch to its
	// repeater (not for a stale or repeated token). It must not block.
	// Defaults to none.
	OnApplied func(repeaterID int64, d store.BatchDecision)
}

// recordTimeout bounds the writes after a batch, which run even when the
// task's context has ended (shutdown) so nothing sent goes unrecorded.
const recordTimeout = 30 * time.Second

// ProcessBatch sends one batch. It reports whether update_repeater must run
// for this token (false when the lock was lost: another batch owns the
// repeater now). A retry after a crash that already recorded the batch sends
// nothing and only asks for the update again.
func (p *Processor) ProcessBatch(ctx context.Context, b Batch) (needsUpdate bool, err error) {
	holds, err := p.Locker.Holds(ctx, b.RepeaterID, b.Token)
	if err != nil || !holds {
		return false, err
	}
	r, err := p.Store.GetRepeater(ctx, b.RepeaterID)
	if err != nil {
		return true, err
	}
	if r.PendingBatch != nil && *r.PendingBatch == b.Token {
		return true, nil // recorded before a crash; only the update is missing
	}
	if r.IsDeleted || r.IsPaused {
		return true, nil // nothing sent: the update releases the lock
	}
	recs, err := p.Store.ClaimReadyRecords(ctx, r.ID, b.Limit, p.Locker.TTL())
	if err != nil || len(recs) == 0 {
		return true, err
	}
	outcomes, unsent := p.send(ctx, r, b, recs)
	return true, p.record(ctx, r, b, outcomes, unsent)
}

// send runs the batch while a keeper extends the lock and the claims; losing
// the lock stops the batch from starting more requests.
func (p *Processor) send(ctx context.Context, r *store.Repeater, b Batch, recs []store.ReadyRecord) ([]store.Outcome, []int64) {
	sendCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ids := make([]int64, len(recs))
	for i := range recs {
		ids[i] = recs[i].ID
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.keep(sendCtx, cancel, b, ids)
	}()
	outcomes, unsent := p.sendWaves(sendCtx, r, recs)
	cancel()
	wg.Wait()
	for _, o := range outcomes {
		observe(o)
	}
	return outcomes, unsent
}

// sendWaves sends the first wave (one request per worker) and the rest only
// if that wave reached the endpoint: when every request of it failed, the
// endpoint is down and the batch stops, so a dead endpoint costs one wave,
// not a batch. The records not sent are returned as unsent.
func (p *Processor) sendWaves(ctx context.Context, r *store.Repeater, recs []store.ReadyRecord) ([]store.Outcome, []int64) {
	concurrency := p.Policy.Concurrency(r)
	first := min(len(recs), concurrency)
	outcomes, unsent := p.Sender.SendBatch(ctx, r, recs[:first], concurrency)
	rest := recs[first:]
	if len(unsent) == 0 && reachedEndpoint(outcomes) && len(rest) > 0 {
		more, moreUnsent := p.Sender.SendBatch(ctx, r, rest, concurrency)
		return append(outcomes, more...), moreUnsent
	}
	for _, rec := range rest {
		unsent = append(unsent, rec.ID)
	}
	return outcomes, unsent
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

func (p *Processor) keep(ctx context.Context, stop context.CancelFunc, b Batch, ids []int64) {
	t := time.NewTicker(p.Locker.TTL() / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			held, err := p.Locker.Extend(ctx, b.RepeaterID, b.Token)
			if err == nil && !held {
				p.Logger.Warn("repeater lock lost mid-batch", "repeater", b.RepeaterID)
				stop()
				return
			}
			if err := p.Store.ExtendClaims(ctx, ids, p.Locker.TTL()); err != nil && ctx.Err() == nil {
				p.Logger.Warn("extend claims", "repeater", b.RepeaterID, "err", err)
			}
		}
	}
}

// record writes the outcomes and the batch mark in one transaction and
// frees the claims of records never started.
func (p *Processor) record(ctx context.Context, r *store.Repeater, b Batch, outcomes []store.Outcome, unsent []int64) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := p.Store.ReleaseClaims(ctx, unsent); err != nil {
		return fmt.Errorf("release unsent claims: %w", err)
	}
	if len(outcomes) == 0 {
		return nil
	}
	mark := &store.BatchMark{RepeaterID: r.ID, Token: b.Token, Summary: store.Summarize(outcomes)}
	if _, err := p.Store.RecordOutcomes(ctx, outcomes, mark); err != nil {
		return err
	}
	if p.OnRecorded != nil {
		p.OnRecorded(b, mark.Summary)
	}
	return nil
}

// UpdateRepeater applies a recorded batch's outcome to its repeater (once
// per token), then releases the lock if the token still holds it, which
// wakes the dispatcher.
func (p *Processor) UpdateRepeater(ctx context.Context, repeaterID int64, token string) error {
	var d store.BatchDecision
	applied, err := p.Store.ApplyBatch(ctx, repeaterID, token, func(r *store.Repeater, sum store.BatchSummary) store.BatchDecision {
		d = p.Policy.Decide(r, sum, clockOr(p.Clock).Now())
		return d
	})
	if err != nil {
		return err
	}
	if applied && p.OnApplied != nil {
		p.OnApplied(repeaterID, d)
	}
	_, err = p.Locker.Release(ctx, repeaterID, token)
	return err
}

func observe(o store.Outcome) {
	deliveries.WithLabelValues(o.State.String()).Inc()
	deliveryDuration.Observe(o.Duration.Seconds())
}
