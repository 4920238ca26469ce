package repeaters

import (
	"context"
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
	// FollowOns is how many more batches one task may send for its
	// repeater, without a trip back through the dispatcher and the queue,
	// while each batch comes back full and clean (followOn). Defaults to
	// DefaultFollowOns; negative: none.
	FollowOns int
}

// DefaultFollowOns: a task sends at most five batches. A repeater with a
// backlog keeps its worker that long (bounded by followOnBudget too);
// another repeater waits for its turn no more than that.
const DefaultFollowOns = 4

// followOnBudget ends a task's follow-on batches: a slow endpoint's task
// goes back through the dispatcher, which shares the pool between domains.
const followOnBudget = time.Second

// recordTimeout bounds the writes after a batch, which run even when the
// task's context has ended (shutdown) so nothing sent goes unrecorded.
const recordTimeout = 30 * time.Second

// Owner is the claim owner of a batch's records.
func (b Batch) Owner() string { return "batch:" + b.Token }

// BatchEnd is what ProcessBatch leaves to do for its token.
type BatchEnd int

const (
	// EndDropped: a newer batch holds the repeater; nothing is left to do.
	EndDropped BatchEnd = iota
	// EndRelease: nothing is left to apply; release the lock (Release).
	EndRelease
	// EndUpdate: a recorded batch waits for its update (UpdateRepeater),
	// which applies it and releases the lock. Also the answer with an error.
	EndUpdate
)

// ProcessBatch sends one batch and records it, applied to its repeater in
// the same transaction. A retry after a crash that recorded the batch
// without applying it (as a version before RecordAndApply did) sends
// nothing and asks for the update. An earlier batch whose update never
// applied is applied before this one sends, so no outcome is lost and a
// repeater that should be backed off sends nothing.
func (p *Processor) ProcessBatch(ctx context.Context, b Batch) (BatchEnd, error) {
	if ok, err := p.holdLock(ctx, b); err != nil || !ok {
		return EndDropped, err
	}
	used := 0
	if b.Reserved > 0 {
		// Before the update releases the lock: the dispatcher refunds the
		// tokens this batch did not use once it sees the lock gone.
		defer func() { p.noteUsed(ctx, b, used) }()
	}
	r, err := p.Store.GetRepeater(ctx, b.RepeaterID)
	if err != nil {
		return EndUpdate, err
	}
	if r.PendingBatch != nil {
		if *r.PendingBatch == b.Token {
			used = b.Reserved     // its sends went out before the crash
			return EndUpdate, nil // recorded before a crash; only the update is missing
		}
		if err := p.apply(ctx, r.ID, *r.PendingBatch); err != nil {
			return EndUpdate, err
		}
		if r, err = p.Store.GetRepeater(ctx, b.RepeaterID); err != nil {
			return EndUpdate, err
		}
	}
	began := time.Now()
	for n := 0; ; n++ {
		if r.IsDeleted || r.IsPaused || p.backedOff(r) {
			return EndRelease, nil // nothing sent
		}
		recs, err := p.Store.ClaimReadyRecords(ctx, r.ID, b.Limit, b.Owner(), p.Locker.TTL())
		if err != nil {
			return EndUpdate, err
		}
		if len(recs) == 0 {
			return EndRelease, nil
		}
		outcomes, unsent := p.send(ctx, r, b, recs)
		sum := store.Summarize(outcomes)
		used += sum.Attempted
		v, err := p.record(ctx, r, b, outcomes, unsent)
		if err != nil {
			return EndUpdate, err
		}
		logCancelled(p.Logger, r.Domain, r.ID, recs, outcomes)
		if !p.followOn(ctx, b, n, began, len(recs), sum, v) {
			return EndRelease, nil
		}
		followOns.Inc()
		// Fresh, for what the batch decided and what an operator changed.
		if r, err = p.Store.GetRepeater(ctx, b.RepeaterID); err != nil {
			return EndRelease, err
		}
	}
}

// followOn reports whether the task should send another batch for its
// repeater at once: the batch after a full, clean one (every record
// delivered, the repeater neither paced nor backed off) is likely full
// too, and the dispatcher would only hand it straight back. Not for a
// rate-limited repeater (its tokens are reserved a batch at a time), not
// past the task's share (FollowOns, followOnBudget), not while the worker
// stops, and only while the batch still holds the lock.
func (p *Processor) followOn(ctx context.Context, b Batch, n int, began time.Time, claimed int,
	sum store.BatchSummary, v *verdict) bool {
	most := p.FollowOns
	if most == 0 {
		most = DefaultFollowOns
	}
	if v == nil { // not applied: another batch's update comes first
		return false
	}
	switch {
	case n >= most, time.Since(began) >= followOnBudget, ctx.Err() != nil, b.Reserved > 0,
		claimed < b.Limit, sum.Succeeded < claimed, v.d.NextAttemptAt != nil, v.d.PacePerS > 0:
		return false
	}
	held, err := p.Locker.Extend(ctx, b.RepeaterID, b.Token)
	return err == nil && held
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

// record frees the claims of records never started and writes the
// outcomes, applied to the repeater (Store.RecordAndApply), in one
// transaction: two round trips, one commit.
// It returns the batch's verdict when it was applied, else nil.
func (p *Processor) record(ctx context.Context, r *store.Repeater, b Batch, outcomes []store.Outcome, unsent []int64) (*verdict, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if len(outcomes) == 0 {
		_, err := p.Store.RecordBatch(ctx, store.RecordBatchParams{Unsent: unsent, Owner: b.Owner()})
		return nil, err
	}
	mark := &store.BatchMark{RepeaterID: r.ID, Token: b.Token, Summary: store.Summarize(outcomes)}
	v := p.newVerdict()
	changed, applied, err := p.Store.RecordAndApply(ctx,
		store.RecordBatchParams{Outcomes: outcomes, Mark: mark, Unsent: unsent, Owner: b.Owner()}, v.decide)
	if err != nil {
		return nil, err
	}
	countLate(len(outcomes) - changed)
	if p.OnRecorded != nil {
		p.OnRecorded(b, mark.Summary)
	}
	if !applied {
		return nil, nil
	}
	// The batch is stored and applied: a failure here must not send it again.
	if err := v.stored(ctx, r.ID); err != nil {
		p.Logger.Warn("after applying the batch", "repeater", r.ID, "err", err)
	}
	return v, nil
}

// UpdateRepeater applies a recorded batch's outcome to its repeater (once
// per token, whatever happened to the lock), then releases the lock if the
// token still holds it, which wakes the dispatcher.
func (p *Processor) UpdateRepeater(ctx context.Context, repeaterID int64, token string) error {
	if err := p.apply(ctx, repeaterID, token); err != nil {
		return err
	}
	return p.Release(ctx, repeaterID, token)
}

// Release releases the repeater's lock if token still holds it, which wakes
// the dispatcher.
func (p *Processor) Release(ctx context.Context, repeaterID int64, token string) error {
	_, err := p.Locker.Release(ctx, repeaterID, token)
	return err
}

// apply applies the batch recorded under token, if it is still the
// repeater's pending batch.
func (p *Processor) apply(ctx context.Context, repeaterID int64, token string) error {
	v := p.newVerdict()
	applied, err := p.Store.ApplyBatch(ctx, repeaterID, token, v.decide)
	if err != nil || !applied {
		return err
	}
	return v.stored(ctx, repeaterID)
}

// verdict is one batch's decision on its repeater: decide makes it (as
// the store applies it), stored does what follows once it is committed.
type verdict struct {
	p      *Processor
	now    time.Time
	d      store.BatchDecision
	before int
	rep    *store.Repeater
	slower bool
}

func (p *Processor) newVerdict() *verdict { return &verdict{p: p} }

// decide runs with the repeater's row locked, the outcomes written: a
// backoff window starts then.
func (v *verdict) decide(r *store.Repeater, sum store.BatchSummary) store.BatchDecision {
	v.now = clockOr(v.p.Clock).Now()
	v.d, v.before, v.rep = v.p.Policy.Decide(r, sum, v.now), r.BackoffCount, r
	v.slower = v.d.PacePerS > 0 && (r.PacePerS == 0 || v.d.PacePerS < r.PacePerS)
	return v.d
}

// stored logs the decision, restarts the pace when it slowed (the next
// request waits one interval at the new pace) and reports it.
func (v *verdict) stored(ctx context.Context, repeaterID int64) error {
	logBackoff(v.p.Logger, v.rep, v.before, v.d, v.now)
	if v.slower {
		if err := v.p.Locker.restartPace(ctx, repeaterID); err != nil {
			return err
		}
	}
	if v.p.OnApplied != nil {
		v.p.OnApplied(repeaterID, v.d)
	}
	return nil
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
