package repeaters

import (
	"cmp"
	"context"
	"crypto/rand"
	"math"
	"time"

	"repeaterd/store"
)

// Legacy path defaults.
const (
	DefaultLegacyRetryMin = time.Hour
	DefaultLegacyPage     = 500
	// DefaultLegacyClaim is how long check_repeaters' claim keeps a record
	// from either path while its send task waits in the queue.
	DefaultLegacyClaim = 5 * time.Minute
)

// LegacySchedule is a record's own retry schedule on the legacy path:
// Min, then ×3 each time (1h, 3h, 9h, …), capped at Max.
type LegacySchedule struct {
	// Min is the first retry delay. Defaults to 1h.
	Min time.Duration
	// Max caps the delay. Defaults to 168h.
	Max time.Duration
}

// WithDefaults returns s with every zero field set to its default.
func (s LegacySchedule) WithDefaults() LegacySchedule {
	s.Min = cmp.Or(s.Min, DefaultLegacyRetryMin)
	s.Max = cmp.Or(s.Max, DefaultBackoffMax)
	return s
}

// Delay is the wait after a record's n-th failed attempt.
func (s LegacySchedule) Delay(n int) time.Duration {
	s = s.WithDefaults()
	d := float64(s.Min) * math.Pow(3, float64(max(n-1, 0)))
	return time.Duration(min(d, float64(s.Max)))
}

// Legacy runs the per-record path of domains whose process_repeaters flag
// is off: check_repeaters claims due records and enqueues one send task per
// record; each send schedules that record's own retry.
type Legacy struct {
	Store    *store.Store
	Sender   *Sender
	Schedule LegacySchedule
	// Page is how many records one claim takes. Defaults to 500.
	Page int
	// Claim is the lease check_repeaters takes on a record. A send task lost
	// with Redis is re-derived when it lapses: the record is due again, and a
	// task still queued is not doubled (send tasks are unique per record).
	// Defaults to 5m.
	Claim time.Duration
	// Clock decides when a failed or postponed record is due again.
	// Defaults to the system clock.
	Clock Clock
	// OnSent is called with each attempt SendRecord recorded, so a test can
	// wait for it instead of sleeping. It must not block. Defaults to none.
	OnSent func(store.Outcome)
	// Limits are the rate limits both paths share: check_repeaters schedules
	// each send of a rate-limited repeater at the time its tokens allow.
	// Defaults to none (legacy sends unlimited).
	Limits *Limits
}

// LegacyClaim is one record check_repeaters claimed: its send task carries
// the owner, and sends only while that claim holds.
type LegacyClaim struct {
	RecordID int64
	Owner    string
	// NotBefore is when the send may go, under the repeater's rate limits:
	// its tokens are reserved for then. Zero = at once.
	NotBefore time.Time
}

// CheckRepeaters claims due legacy records page by page and hands each claim
// to enqueue. Each page is claimed under an owner of its own, so a record
// claimed again after its claim lapsed gets a new send task, and the old one
// (if it still waits) finds its claim gone and sends nothing. A record whose
// enqueue fails is released at once.
func (l *Legacy) CheckRepeaters(ctx context.Context, enqueue func(ctx context.Context, c LegacyClaim) error) (int, error) {
	page := cmp.Or(l.Page, DefaultLegacyPage)
	claimFor := cmp.Or(l.Claim, DefaultLegacyClaim)
	total := 0
	for ctx.Err() == nil {
		owner := "legacy:" + rand.Text()
		ids, err := l.Store.ClaimLegacyRecords(ctx, page, owner, claimFor)
		if err != nil {
			return total, err
		}
		claims, err := l.schedule(ctx, ids, owner, min(claimFor/2, time.Minute))
		if err != nil {
			_ = l.Store.ReleaseClaims(context.WithoutCancel(ctx), ids, owner)
			return total, err
		}
		for i, c := range claims {
			if err := enqueue(ctx, c); err != nil {
				rest := make([]int64, 0, len(claims)-i)
				for _, c := range claims[i:] {
					rest = append(rest, c.RecordID)
				}
				_ = l.Store.ReleaseClaims(context.WithoutCancel(ctx), rest, owner)
				return total, err
			}
			total++
		}
		if len(ids) < page {
			break
		}
	}
	return total, ctx.Err()
}

// SendRecord sends one record under the claim check_repeaters took: a
// deleted repeater cancels it, a paused one postpones it, otherwise one
// attempt is made and recorded with the record's next retry. A claim that no
// longer holds (the other path took the record after the claim lapsed, or it
// was recorded) sends nothing.
func (l *Legacy) SendRecord(ctx context.Context, c LegacyClaim) error {
	clock := clockOr(l.Clock)
	if err := waitUntil(ctx, clock, c.NotBefore); err != nil {
		return err
	}
	rec, _, err := l.Store.GetRecord(ctx, c.RecordID)
	if err != nil || !rec.State.Ready() {
		if store.ErrorCode(err) == store.ENOTFOUND {
			return nil // purged meanwhile
		}
		return err
	}
	r, err := l.Store.GetRepeater(ctx, rec.RepeaterID)
	if err != nil {
		return err
	}
	switch {
	case r.IsDeleted:
		_, err := l.Store.CancelRecord(ctx, c.RecordID)
		if store.ErrorCode(err) == store.ECONFLICT {
			return nil
		}
		return err
	case r.IsPaused:
		return l.Store.PostponeRecord(ctx, c.RecordID, c.Owner, clock.Now().Add(l.Schedule.Delay(1)))
	}
	ready, err := l.Store.ClaimRecord(ctx, c.RecordID, c.Owner, l.Sender.Timeout(r)+time.Minute)
	if store.ErrorCode(err) == store.ENOTFOUND {
		// Not ours any more; a cancel waiting on our claim takes effect.
		return l.Store.ReleaseClaims(ctx, []int64{c.RecordID}, c.Owner)
	}
	if err != nil {
		return err
	}
	out := l.Sender.Send(ctx, r, ready)
	out.Owner = c.Owner
	observe(out)
	if out.State == store.StateFail {
		out.NextCheck = clock.Now().Add(max(l.Schedule.Delay(ready.AttemptCount+1), out.RetryAfter))
	}
	changed, err := l.Store.RecordOutcomes(context.WithoutCancel(ctx), []store.Outcome{out}, nil)
	if err != nil {
		return err
	}
	countLate(1 - changed)
	if changed == 1 {
		logCancelled(nil, r.Domain, r.ID, []store.ReadyRecord{*ready}, []store.Outcome{out})
	}
	if l.OnSent != nil {
		l.OnSent(out)
	}
	return nil
}
