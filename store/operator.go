package store

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
)

// sqlLiveClaim is true for a record someone is sending now: a ready record
// whose claim has not lapsed. An operator's action on such a record waits in
// requested_state for the claim to end, so it never races the send.
const sqlLiveClaim = `(rr.claim_owner IS NOT NULL AND rr.next_check > now() AND rr.` + sqlReady + `)`

// RequeueRecord makes a record due again now; a terminal record becomes Fail
// with its tries extended by the repeater's max attempts. On a record being
// sent the requeue waits for the send to end (the record's RequestedState is
// set): a failure is then due at once. A second request while one waits is a
// conflict.
func (s *Store) RequeueRecord(ctx context.Context, id int64) (*RepeatRecord, error) {
	var r RepeatRecord
	err := s.pool.QueryRow(ctx, `UPDATE repeat_records rr SET
			requested_state = CASE WHEN `+sqlLiveClaim+` THEN 1 END,
			state = CASE WHEN rr.`+sqlReady+` THEN rr.state ELSE `+sqlStateFail+` END,
			max_possible_tries = CASE WHEN rr.`+sqlReady+` THEN rr.max_possible_tries
				ELSE rr.attempt_count + rep.max_attempts END,
			next_check = CASE WHEN `+sqlLiveClaim+` THEN rr.next_check ELSE now() END,
			claim_owner = CASE WHEN `+sqlLiveClaim+` THEN rr.claim_owner END
		FROM repeaters rep
		WHERE rr.id = $1 AND rep.id = rr.repeater_id AND NOT rep.is_deleted
		  AND NOT (`+sqlLiveClaim+` AND rr.requested_state IS NOT NULL)
		RETURNING `+prefixed("rr.", recordColumns), id).Scan(r.scanTargets()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, s.whyUnchanged(ctx, id, "requeue")
	}
	if err == nil && r.RequestedState == nil {
		err = NotifyRecords(ctx, s.pool)
	}
	return &r, err
}

// CancelRecord cancels a ready record. On a record being sent the cancel
// waits for the send to end (RequestedState is set): a failure then ends
// Cancelled, while a delivery that succeeded stays Success — the attempt
// happened and is logged either way.
func (s *Store) CancelRecord(ctx context.Context, id int64) (*RepeatRecord, error) {
	var r RepeatRecord
	err := s.pool.QueryRow(ctx, `UPDATE repeat_records rr SET
			requested_state = CASE WHEN `+sqlLiveClaim+` THEN `+sqlStateCancelled+` END,
			state = CASE WHEN `+sqlLiveClaim+` THEN rr.state ELSE `+sqlStateCancelled+` END,
			claim_owner = CASE WHEN `+sqlLiveClaim+` THEN rr.claim_owner END
		WHERE rr.id = $1 AND rr.`+sqlReady+`
		  AND NOT (`+sqlLiveClaim+` AND rr.requested_state IS NOT NULL)
		RETURNING `+prefixed("rr.", recordColumns), id).Scan(r.scanTargets()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, s.whyUnchanged(ctx, id, "cancel")
	}
	return &r, err
}

// whyUnchanged names why an operator action changed nothing.
func (s *Store) whyUnchanged(ctx context.Context, id int64, action string) error {
	rec, _, err := s.GetRecord(ctx, id)
	if err != nil {
		return err
	}
	if rec.RequestedState != nil {
		return Errorf(ECONFLICT, "record %d is being sent and already has a %s waiting", id, rec.RequestedState.Request())
	}
	if action == "cancel" {
		return Errorf(ECONFLICT, "record %d is %s, not ready: there is nothing to cancel", id, rec.State)
	}
	return Errorf(ECONFLICT, "record %d belongs to a deleted repeater", id)
}
