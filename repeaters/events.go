package repeaters

import (
	"cmp"
	"log/slog"
	"time"

	"repeaterd/store"
)

// The INFO events an operator follows a repeater by: backoff start and
// end, and records cancelled for running out of tries. Extended backoffs
// are DEBUG: a dead endpoint would repeat one every window.

// logBackoff logs a batch's effect on its repeater's backoff, given the
// backoff count before it and the decision applied.
func logBackoff(logger *slog.Logger, r *store.Repeater, before int, d store.BatchDecision, now time.Time) {
	logger = cmp.Or(logger, slog.Default())
	switch {
	case before == 0 && d.NextAttemptAt != nil:
		logger.Info("repeater backing off", "repeater", r.ID, "domain", r.Domain,
			"until", d.NextAttemptAt.UTC().Format(time.RFC3339), "for", d.NextAttemptAt.Sub(now).Round(time.Second))
	case before > 0 && d.NextAttemptAt == nil:
		logger.Info("repeater recovered: backoff ended", "repeater", r.ID, "domain", r.Domain, "failed_batches", before)
	case d.NextAttemptAt != nil:
		logger.Debug("repeater backoff extended", "repeater", r.ID, "domain", r.Domain,
			"until", d.NextAttemptAt.UTC().Format(time.RFC3339), "failed_batches", d.BackoffCount)
	}
}

// logCancelled logs each record an outcome cancels: a failure on its last try
// (store.RecordOutcomes makes it Cancelled).
func logCancelled(logger *slog.Logger, domain string, repeaterID int64, recs []store.ReadyRecord, outcomes []store.Outcome) {
	logger = cmp.Or(logger, slog.Default())
	byID := make(map[int64]*store.ReadyRecord, len(recs))
	for i := range recs {
		byID[recs[i].ID] = &recs[i]
	}
	for _, o := range outcomes {
		rec := byID[o.RecordID]
		if o.State == store.StateFail && rec != nil && rec.AttemptCount+1 >= rec.MaxPossibleTries {
			logger.Info("record cancelled: out of tries", "record", o.RecordID, "repeater", repeaterID,
				"domain", domain, "attempts", rec.AttemptCount+1, "last_status", o.StatusCode)
		}
	}
}
