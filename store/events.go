package store

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Events: a fan-out payload may carry a type ("case.updated") and an
// idempotency key (unique per domain). A repeater subscribes to a list of
// types (empty = every event, typed or not; a non-empty list receives only
// events of those types) and optionally a payload filter (filter.go).
// PublishEvent decides who receives an event and writes their records in
// the transaction that stores the payload, with the repeaters locked FOR
// KEY SHARE, so a repeater changed or deleted concurrently is judged either
// before or after, never half.

// eventTypePattern is what an event type may look like: no spaces, no
// quotes, so it is safe in an array literal and in a URL.
var eventTypePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$`)

// maxEventTypes bounds a repeater's subscription list.
const maxEventTypes = 100

// ValidateEventType checks one event type.
func ValidateEventType(field, t string) error {
	if !eventTypePattern.MatchString(t) {
		return Errorf(EINVALID, "%s %q is not an event type (letters, digits and . _ : / -, at most 100, starting with a letter or digit)", field, t)
	}
	return nil
}

// validateSubscription checks a repeater's event types and filter.
func (r *Repeater) validateSubscription() error {
	if len(r.EventTypes) > maxEventTypes {
		return Errorf(EINVALID, "at most %d event_types", maxEventTypes)
	}
	for _, t := range r.EventTypes {
		if err := ValidateEventType("event_types element", t); err != nil {
			return err
		}
	}
	if r.PreviousSigningSecret != "" && strings.HasPrefix(r.PreviousSigningSecret, SealedPrefix) {
		return Errorf(EINVALID, "previous signing secret %v", errSealedPlaintext)
	}
	_, err := ParseFilter(r.EventFilter)
	return err
}

// Subscribed reports whether the repeater receives events of eventType
// ("" = untyped) before its filter is applied.
func (r *Repeater) Subscribed(eventType string) bool {
	return len(r.EventTypes) == 0 || eventType != "" && r.EventTypes.Contains(eventType)
}

// EventParams is one event to publish.
type EventParams struct {
	Domain         string
	ContentType    string // defaults to application/json
	Body           []byte
	Type           string // optional
	IdempotencyKey string // optional; unique per domain
}

// PublishEvent stores one payload and a record for every active repeater
// of the domain that subscribes to the event's type and whose filter the
// payload matches, in one transaction. A domain without active repeaters is
// ENOTFOUND and writes nothing; an event nobody matches is stored with no
// record. With an idempotency key already used in the domain it returns
// that event's records and created=false, writing nothing, or an ECONFLICT
// when the earlier event had another payload, content type or type.
func (s *Store) PublishEvent(ctx context.Context, p EventParams) (recs []RepeatRecord, created bool, err error) {
	if err := ValidateDomain(p.Domain); err != nil {
		return nil, false, err
	}
	if p.Type != "" {
		if err := ValidateEventType("event_type", p.Type); err != nil {
			return nil, false, err
		}
	}
	p.ContentType = cmp.Or(p.ContentType, "application/json")
	p.Body = nonNil(p.Body)
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		recs, created, err = s.publishIn(ctx, tx, p)
		return err
	})
	if errors.Is(err, errKeyRace) { // a concurrent event with the same key won
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var err error
			recs, err = s.eventByKey(ctx, tx, p)
			return err
		})
	}
	return recs, created, err
}

func (s *Store) publishIn(ctx context.Context, tx pgx.Tx, p EventParams) ([]RepeatRecord, bool, error) {
	if p.IdempotencyKey != "" {
		recs, err := s.eventByKey(ctx, tx, p)
		if ErrorCode(err) != ENOTFOUND {
			return recs, false, err
		}
	}
	targets, err := subscribers(ctx, tx, p)
	if err != nil {
		return nil, false, err
	}
	var key *string
	if p.IdempotencyKey != "" {
		key = &p.IdempotencyKey
	}
	var payloadID int64
	err = tx.QueryRow(ctx, `INSERT INTO payloads (domain, content_type, body, event_type, event_key)
		VALUES ($1, $2, $3, NULLIF($4, ''), $5)
		ON CONFLICT (domain, event_key) WHERE event_key IS NOT NULL DO NOTHING
		RETURNING id`, p.Domain, p.ContentType, p.Body, p.Type, key).Scan(&payloadID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, errKeyRace
	}
	if err != nil {
		return nil, false, err
	}
	if len(targets) == 0 {
		return []RepeatRecord{}, true, nil
	}
	rows, err := tx.Query(ctx, `INSERT INTO repeat_records (domain, repeater_id, payload_id, max_possible_tries)
		SELECT r.domain, r.id, $2, r.max_attempts FROM repeaters r
		WHERE r.id = ANY($1) ORDER BY r.id
		RETURNING `+recordColumns, targets, payloadID)
	if err != nil {
		return nil, false, err
	}
	recs, err := scanRecords(rows)
	if err != nil {
		return nil, false, err
	}
	return recs, true, NotifyRecords(ctx, tx)
}

// subscribers locks the domain's active repeaters (FOR KEY SHARE: a
// concurrent delete waits, then cancels the new records too; the engine's
// batch writes do not wait, see claims.go) and returns the ids of
// those the event goes to.
func subscribers(ctx context.Context, tx pgx.Tx, p EventParams) ([]int64, error) {
	rows, err := tx.Query(ctx, `SELECT id, event_types, event_filter FROM repeaters
		WHERE domain = $1 AND NOT is_deleted ORDER BY id FOR KEY SHARE`, p.Domain)
	if err != nil {
		return nil, err
	}
	type sub struct {
		id     int64
		types  []string
		filter string
	}
	subs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (sub, error) {
		var s sub
		return s, row.Scan(&s.id, &s.types, &s.filter)
	})
	if err != nil {
		return nil, err
	}
	if len(subs) == 0 {
		return nil, Errorf(ENOTFOUND, "domain %q has no active repeaters", p.Domain)
	}
	parsed := map[string]*Filter{}
	ids := []int64{}
	for _, s := range subs {
		r := Repeater{EventTypes: TextArray(s.types)}
		if !r.Subscribed(p.Type) {
			continue
		}
		f, ok := parsed[s.filter]
		if !ok {
			// Saved filters parse (validateSubscription); one that does not
			// (written around the store) receives nothing rather than all.
			if f, err = ParseFilter(s.filter); err != nil {
				f = &Filter{conds: []condition{{op: "in"}}}
			}
			parsed[s.filter] = f
		}
		if f.Match(p.Body) {
			ids = append(ids, s.id)
		}
	}
	return ids, nil
}

// eventByKey returns the records of the domain's event with p's key, or an
// ECONFLICT if that event differs from p.
func (s *Store) eventByKey(ctx context.Context, tx pgx.Tx, p EventParams) ([]RepeatRecord, error) {
	var (
		id        int64
		body      []byte
		ct, etype string
	)
	err := tx.QueryRow(ctx, `SELECT id, body, content_type, coalesce(event_type, '') FROM payloads
		WHERE domain = $1 AND event_key = $2`, p.Domain, p.IdempotencyKey).Scan(&id, &body, &ct, &etype)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, Errorf(ENOTFOUND, "no event with that idempotency key")
	}
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(body, p.Body) || ct != p.ContentType || etype != p.Type {
		return nil, Errorf(ECONFLICT, "idempotency key %q was used for event (payload %d) with a different payload or type", p.IdempotencyKey, id)
	}
	rows, err := tx.Query(ctx, `SELECT `+recordColumns+` FROM repeat_records WHERE payload_id = $1 ORDER BY id`, id)
	if err != nil {
		return nil, err
	}
	return scanRecords(rows)
}
