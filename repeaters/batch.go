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

// Owner is the claim owner of a batch's records.
func (b Batch) Owner() string { return "batch:" + b.Token }

// ProcessBatch sends one batch. It reports whether update_repeater must run
// for this token (false when another batch owns the repeater now). A retry
// after a crash that already recorded the batch sends nothing and only asks
// for the update again. An earlier batch whose update never applied (its lock
// lapsed first) is applied before this one sends, so no outcome is lost and a
// repeater that should be backed off sends nothing.
func (p *Processor) ProcessBatch(ctx context.Context, b Batch) (needsUpdate bool, err error) {
	if ok, err := p.holdLock(ctx, b); err != nil || !ok {
		return false, err
	}
	used := 0
	if b.Reserved > 0 {
		// Before the update releases the lock: the dispatcher refunds the
		// tokens this batch did not use once it sees the lock gone.
		defer func() { p.noteUsed(ctx, b, used) }()
	}
	r, err := p.Store.GetRepeater(ctx, b.RepeaterID)
	if err != nil {
		return true, err
	}
	if r.PendingBatch != nil {
		if *r.PendingBatch == b.Token {
			used = b.Reserved // its sends went out before the crash
			return true, nil  // recorded before a crash; only the update is missing
		}
		if err := p.apply(ctx, r.ID, *r.PendingBatch); err != nil {
			return true, err
		}
		if r, err = p.Store.GetRepeater(ctx, b.RepeaterID); err != nil {
			return true, err
		}
	}
	if r.IsDeleted || r.IsPaused || p.backedOff(r) {
		return true, nil // nothing sent: the update releases the lock
	}
	recs, err := p.Store.ClaimReadyRecords(ctx, r.ID, b.Limit, b.Owner(), p.Locker.TTL())
	if err != nil || len(recs) == 0 {
		return true, err
	}
	outcomes, unsent := p.send(ctx, r, b, recs)
	used = store.Summarize(outcomes).Attempted
	if err := p.record(ctx, r, b, outcomes, unsent); err != nil {
		return true, err
	}
	logCancelled(p.Logger, r.Domain, r.ID, recs, outcomes)
	return true, nil
}

// noteUsed tells the dispatcher how many of the batch's tokens it used.
func (p *Processor) noteUsed(ctx context.Context, b Batch, used int) {
	if err := p.Locker.NoteUsed(context.WithoutCancel(ctx), b.Token, used); err != nil {
		p.Logger.Warn("note the batch's used rate-limit tokens", "repeater", b.RepeaterID, "err", err)
	}
}

// holdLock proves the batch's token holds the repeater's lock. A batch whose
// task waited in the queue past its lock takes the lock back if nobody else
// did (and runs); if a successor holds it, the batch is dropped, loudly: its
// records were never claimed, so nothing is lost.
func (p *Processor) holdLock(ctx context.Context, b Batch) (bool, error) {
	holds, err := p.Locker.Holds(ctx, b.RepeaterID, b.Token)
	if err != nil || holds {
		return holds, err
	}
	took, err := p.Locker.Reacquire(ctx, b.RepeaterID, b.Token)
	if err != nil {
		return false, err
	}
	if took {
		lateBatches.WithLabelValues(lateResumed).Inc()
		p.Logger.Info("batch resumed after its lock lapsed in the queue", "repeater", b.RepeaterID)
		return true, nil
	}
	lateBatches.WithLabelValues(lateSuperseded).Inc()
	p.Logger.Warn("batch dropped: its lock lapsed in the queue and a newer batch holds the repeater",
		"repeater", b.RepeaterID)
	return false, nil
}

// backedOff reports whether the repeater is backed off now: a batch that
// arrives inside a backoff window (a late or duplicate one) sends nothing.
func (p *Processor) backedOff(r *store.Repeater) bool {
	return r.NextAttemptAt != nil && r.NextAttemptAt.After(clockOr(p.Clock).Now())
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
	prior := make(map[int64]int, len(recs))
	for _, rec := range recs {
		prior[rec.ID] = rec.AttemptCount
	}
	now := clockOr(p.Clock).Now()
	for i := range outcomes {
		o := &outcomes[i]
		o.Owner, o.PriorAttempts = b.Owner(), prior[o.RecordID]
		if o.State == store.StateFail {
			// Its own retry: a record the endpoint refuses waits its turn
			// instead of leading every batch until its tries run out.
			o.NextCheck = now.Add(p.Policy.RetryDelay(o.PriorAttempts+1, o.RetryAfter))
		}
		observe(*o)
	}
	return outcomes, unsent
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
			if err := p.Store.ExtendClaims(ctx, ids, b.Owner(), p.Locker.TTL()); err != nil && ctx.Err() == nil {
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
	if err := p.Store.ReleaseClaims(ctx, unsent, b.Owner()); err != nil {
		return fmt.Errorf("release unsent claims: %w", err)
	}
	if len(outcomes) == 0 {
		return nil
	}
	mark := &store.BatchMark{RepeaterID: r.ID, Token: b.Token, Summary: store.Summarize(outcomes)}
	changed, err := p.Store.RecordOutcomes(ctx, outcomes, mark)
	if err != nil {
		return err
	}
	countLate(len(outcomes) - changed)
	// A fresh TTL for the wait until update_repeater runs; if that wait is
	// longer still, the next batch applies this one first (ProcessBatch).
	if _, err := p.Locker.Extend(ctx, b.RepeaterID, b.Token); err != nil {
		p.Logger.Warn("extend the lock after recording", "repeater", b.RepeaterID, "err", err)
	}
	if p.OnRecorded != nil {
		p.OnRecorded(b, mark.Summary)
	}
	return nil
}

// UpdateRepeater applies a recorded batch's outcome to its repeater (once
// per token, whatever happened to the lock), then releases the lock if the
// token still holds it, which wakes the dispatcher.
func (p *Processor) UpdateRepeater(ctx context.Context, repeaterID int64, token string) error {
	if err := p.apply(ctx, repeaterID, token); err != nil {
		return err
	}
	_, err := p.Locker.Release(ctx, repeaterID, token)
	return err
}

// apply applies the batch recorded under token, if it is still the
// repeater's pending batch.
func (p *Processor) apply(ctx context.Context, repeaterID int64, token string) error {
	var (
		d      store.BatchDecision
		before int
		rep    *store.Repeater
		slower bool
		now    = clockOr(p.Clock).Now()
	)
	applied, err := p.Store.ApplyBatch(ctx, repeaterID, token, func(r *store.Repeater, sum store.BatchSummary) store.BatchDecision {
		d, before, rep = p.Policy.Decide(r, sum, now), r.BackoffCount, r
		slower = d.PacePerS > 0 && (r.PacePerS == 0 || d.PacePerS < r.PacePerS)
		return d
	})
	if err == nil && applied {
		logBackoff(p.Logger, rep, before, d, now)
	}
	if err == nil && applied && slower {
		// Too fast: the next request waits one interval at the new pace.
		err = p.Locker.restartPace(ctx, repeaterID)
	}
	if err == nil && applied && p.OnApplied != nil {
		p.OnApplied(repeaterID, d)
	}
	return err
}

// countLate counts attempts whose claim was lost before they were recorded.
func countLate(n int) {
	if n > 0 {
		lateOutcomes.Add(float64(n))
	}
}

func observe(o store.Outcome) {
	deliveries.WithLabelValues(o.State.String()).Inc()
	deliveryDuration.Observe(o.Duration.Seconds())
}
