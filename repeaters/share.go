package repeaters

import (
	"context"
	"errors"
	"time"

	"repeaterd/store"
)

// The dispatcher's accounting of what a batch may take: its domain's share
// of the worker pool, and the rate-limit tokens of the records it will send.

// inFlight is a batch the dispatcher counts as in flight until its lock is
// gone.
type inFlight struct {
	domain   string
	token    string   // "" for a batch of an earlier term, found by its lock
	reserved int      // rate-limit tokens taken for it
	key      LimitKey // the buckets they came from
}

// Validate rejects limits the dispatcher cannot honour: a domain or global
// rate outside store.ValidateRateLimit's bounds, or negative sizes.
func (c DispatcherConfig) Validate() error {
	var errs []error
	for _, l := range []struct {
		name, burstName string
		rate            float64
		burst           int
	}{{"domain rate", "domain burst", c.DomainRatePerS, c.DomainBurst}, {"global rate", "global burst", c.GlobalRatePerS, c.GlobalBurst}} {
		if err := store.ValidateRateLimit(l.name, l.burstName, l.rate, l.burst); err != nil {
			errs = append(errs, err)
		}
	}
	if c.BatchSize < 0 || c.DomainMaxInFlight < 0 {
		errs = append(errs, errors.New("batch size and domain max in flight must not be negative"))
	}
	return errors.Join(errs...)
}

// domainCap is how many batches one domain may have in flight: its share
// of the worker pool, total / (domains with work + 1), at least 1, and at
// most DomainMaxInFlight when that is set. Every batch in flight counts,
// slow and hung ones included (they hold a worker slot until their lock
// goes), so the domains with work never hold more than total × active /
// (active + 1) slots: a share stays free for a domain that has work next,
// and for the updates that release locks. One tenant's slow endpoints cannot
// delay another's deliveries.
func (d *Dispatcher) domainCap(ctx context.Context, active int) int {
	total := DefaultTotalConcurrency
	if d.cfg.TotalConcurrency != nil {
		total = d.cfg.TotalConcurrency(ctx)
	}
	share := max(1, total/(active+1))
	if d.cfg.DomainMaxInFlight > 0 {
		return min(d.cfg.DomainMaxInFlight, share)
	}
	return share
}

// activeDomains counts the domains with work: ready repeaters this pass, or
// batches in flight.
func (d *Dispatcher) activeDomains(order []store.ReadyRepeater) int {
	seen := map[string]bool{}
	for _, r := range order {
		seen[r.Domain] = true
	}
	for _, b := range d.inFlight {
		seen[b.domain] = true
	}
	return len(seen)
}

// dueCounts asks how many records the rate-limited ready repeaters not in
// flight have due (up to a batch), so their batches reserve only tokens for
// records that exist. Unlimited repeaters are not counted: their batches
// take what is there.
func (d *Dispatcher) dueCounts(ctx context.Context, order []store.ReadyRepeater, now time.Time) (map[int64]int, error) {
	var ids []int64
	for _, r := range order {
		if _, busy := d.inFlight[r.ID]; !busy && d.limits.Limited(readyKey(r)) {
			ids = append(ids, r.ID)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return d.store.DueCounts(ctx, ids, now, d.cfg.BatchSize)
}

// reserve decides the size of r's batch: the batch size (one record for a
// probe), capped, when r is rate-limited, by its due records and the tokens
// its buckets hold, which it takes. n is 0 when there is nothing to send;
// retryIn is then how long until a token, if the limits are why.
func (d *Dispatcher) reserve(ctx context.Context, r store.ReadyRepeater, due map[int64]int) (n, reserved int, retryIn time.Duration, err error) {
	want := d.batchSize(r)
	k := readyKey(r)
	if !d.limits.Limited(k) {
		return want, 0, 0, nil
	}
	if want = min(want, due[r.ID]); want == 0 {
		return 0, 0, 0, nil // its due records went to someone else since the readiness query
	}
	n, retryIn, err = d.limits.Take(ctx, k, d.cfg.Clock.Now(), want)
	return n, n, retryIn, err
}

// refund gives back tokens a batch took and will not use.
func (d *Dispatcher) refund(ctx context.Context, k LimitKey, n int) {
	if err := d.limits.Refund(context.WithoutCancel(ctx), k, d.cfg.Clock.Now(), n); err != nil {
		d.logger.Warn("refund rate-limit tokens", "repeater", k.RepeaterID, "err", err)
	}
}

// refundUnused refunds what finished batches reserved beyond the attempts
// their workers noted. A batch that noted nothing (its worker died) is
// refunded nothing: its requests may have gone out.
func (d *Dispatcher) refundUnused(ctx context.Context, done []inFlight) error {
	if len(done) == 0 {
		return nil
	}
	tokens := make([]string, len(done))
	for i, b := range done {
		tokens[i] = b.token
	}
	used, err := d.locker.TakeUsed(ctx, tokens)
	if err != nil {
		return err
	}
	for _, b := range done {
		if n, ok := used[b.token]; ok && n < b.reserved {
			d.refund(ctx, b.key, b.reserved-n)
		}
	}
	return nil
}

// adoptHeldLocks counts, at the start of a term, the batches of an earlier
// one: every repeater whose lock is held is in flight for its domain until
// the lock goes, so a new leader does not hand a domain its whole share
// again on top of batches that still hang.
func (d *Dispatcher) adoptHeldLocks(ctx context.Context) error {
	ids, err := d.locker.HeldLocks(ctx)
	if err != nil || len(ids) == 0 {
		return err
	}
	domains, err := d.store.RepeaterDomains(ctx, ids)
	if err != nil {
		return err
	}
	for id, domain := range domains {
		d.inFlight[id] = inFlight{domain: domain}
	}
	return nil
}
