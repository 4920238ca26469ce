package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"repeaterd/dashboards/auth"
	"repeaterd/store"
)

// recordView renders a record with its state by name (the name ?state=
// filters on) and by code.
type recordView struct {
	*store.RepeatRecord
	State     string        `json:"state"`
	StateCode store.State   `json:"state_code"`
	Attempts  []attemptView `json:"attempts,omitempty"`
	// Requested is an operator's "requeue" or "cancel" waiting for the
	// record's send in flight to end.
	Requested string `json:"requested_state,omitempty"`
}

func viewRecord(r *store.RepeatRecord) recordView {
	v := recordView{RepeatRecord: r, State: r.State.String(), StateCode: r.State}
	if r.RequestedState != nil {
		v.Requested = r.RequestedState.Request()
	}
	return v
}

type attemptView struct {
	store.Attempt
	State     string      `json:"state"`
	StateCode store.State `json:"state_code"`
}

func viewRecords(recs []store.RepeatRecord) []recordView {
	out := make([]recordView, len(recs))
	for i := range recs {
		out[i] = viewRecord(&recs[i])
	}
	return out
}

// recordInput is the body of POST /api/v1/records.
type recordInput struct {
	payloadInput
	RepeaterID     int64  `json:"repeater_id"`
	IdempotencyKey string `json:"idempotency_key"`
}

// createRecord is POST /api/v1/records: 201 with a new record, or 200 with
// the record an earlier request with the same idempotency key and payload
// made; the key with another payload is a 409 naming that record.
func (a *API) createRecord(w http.ResponseWriter, r *http.Request) error {
	var in recordInput
	if err := a.decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.RepeaterID < 1 {
		return store.Errorf(store.EINVALID, "repeater_id is required (a positive integer)")
	}
	if err := store.ValidateText("idempotency_key", in.IdempotencyKey, maxKeyLen); err != nil {
		return err
	}
	body, ct, err := in.body(a.cfg.MaxPayloadBytes)
	if err != nil {
		return err
	}
	rec, created, err := a.st.RegisterRecord(r.Context(), store.RegisterParams{
		RepeaterID: in.RepeaterID, ContentType: ct, Body: body, IdempotencyKey: in.IdempotencyKey,
		Sees: auth.PrincipalFrom(r.Context()).Sees,
	})
	if err != nil && rec != nil {
		return &recordError{error: err, id: rec.ID} // the key reused with another payload
	}
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", fmt.Sprintf("/api/v1/records/%d", rec.ID))
	}
	WriteJSON(w, status, viewRecord(rec))
	return nil
}

// eventInput is the body of POST /api/v1/domains/{domain}/events.
type eventInput struct {
	payloadInput
	// EventType is the event's type (e.g. "case.updated"); repeaters
	// subscribed to other types do not receive it. Optional.
	EventType string `json:"event_type"`
	// IdempotencyKey makes a retried publish safe: unique per domain.
	IdempotencyKey string `json:"idempotency_key"`
}

// createEvent is POST /api/v1/domains/{domain}/events: one payload, one
// record per active repeater of the domain subscribed to its type whose
// filter it matches, all in one transaction: 201, or 200 with the records
// of an earlier event with the same idempotency key and payload (409 when
// the payload or type differs).
func (a *API) createEvent(w http.ResponseWriter, r *http.Request) error {
	domain := r.PathValue("domain")
	if err := store.ValidateDomain(domain); err != nil {
		return err
	}
	if _, err := scopedDomain(r, domain); err != nil {
		return err
	}
	var in eventInput
	if err := a.decodeJSON(w, r, &in); err != nil {
		return err
	}
	if err := store.ValidateText("idempotency_key", in.IdempotencyKey, maxKeyLen); err != nil {
		return err
	}
	body, ct, err := in.body(a.cfg.MaxPayloadBytes)
	if err != nil {
		return err
	}
	recs, created, err := a.st.PublishEvent(r.Context(), store.EventParams{
		Domain: domain, ContentType: ct, Body: body, Type: in.EventType, IdempotencyKey: in.IdempotencyKey,
	})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	WriteJSON(w, status, map[string]any{"records": viewRecords(recs), "event_type": in.EventType})
	return nil
}

// getRecord is GET /api/v1/records/{id}, with its attempts oldest first.
func (a *API) getRecord(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	rec, attempts, err := a.ownRecord(r, id)
	if err != nil {
		return err
	}
	v := viewRecord(rec)
	v.Attempts = make([]attemptView, len(attempts))
	for i, at := range attempts {
		v.Attempts[i] = attemptView{Attempt: at, State: at.State.String(), StateCode: at.State}
	}
	WriteJSON(w, http.StatusOK, v)
	return nil
}

// listRecords is GET /api/v1/records?repeater_id=&domain=&state=&cursor=&limit=.
func (a *API) listRecords(w http.ResponseWriter, r *http.Request) error {
	p, err := recordsQuery(r)
	if err != nil {
		return err
	}
	if p.Domain, err = scopedDomain(r, p.Domain); err != nil {
		return err
	}
	recs, err := a.st.ListRecords(r.Context(), p)
	if err != nil {
		return err
	}
	var last int64
	if len(recs) > 0 {
		last = recs[len(recs)-1].ID
	}
	WriteJSON(w, http.StatusOK, map[string]any{"records": viewRecords(recs), "next_cursor": nextCursor(len(recs), p.Limit, last)})
	return nil
}

func recordsQuery(r *http.Request) (store.ListRecordsParams, error) {
	q := r.URL.Query()
	var p store.ListRecordsParams
	var err error
	if p.RepeaterID, err = queryID(r, "repeater_id"); err != nil {
		return p, err
	}
	if p.Domain, err = queryDomain(r); err != nil {
		return p, err
	}
	if s := q.Get("state"); s != "" {
		if p.State, err = store.ParseState(s); err != nil {
			return p, store.Errorf(store.EINVALID, "%v (states: %s)", err, stateNames())
		}
	}
	if p.AfterID, err = decodeCursor(q.Get("cursor")); err != nil {
		return p, err
	}
	p.Limit, err = queryLimit(r)
	return p, err
}

// requeueRecord is POST /api/v1/records/{id}/requeue: ready again now, and
// a finished record gets another max_attempts tries. A record being sent
// answers 202: the requeue applies when the send ends.
func (a *API) requeueRecord(w http.ResponseWriter, r *http.Request) error {
	return a.changeRecord(w, r, "requeue", a.st.RequeueRecord)
}

// cancelRecord is POST /api/v1/records/{id}/cancel; only a ready record can
// be cancelled (409 otherwise). A record being sent answers 202: the cancel
// applies when the send ends (a delivery that succeeded stays Success).
func (a *API) cancelRecord(w http.ResponseWriter, r *http.Request) error {
	return a.changeRecord(w, r, "cancel", a.st.CancelRecord)
}

// changeRecord runs an operator's action on one record and logs it at
// INFO: an operator follows cancels and requeues in the log.
func (a *API) changeRecord(w http.ResponseWriter, r *http.Request, action string,
	change func(ctx context.Context, id int64) (*store.RepeatRecord, error)) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if _, _, err := a.ownRecord(r, id); err != nil {
		return err
	}
	rec, err := change(r.Context(), id)
	if err != nil {
		return err
	}
	status, msg := http.StatusOK, "record "+action+" by an operator"
	if rec.RequestedState != nil {
		status = http.StatusAccepted // it takes effect when the send in flight ends
		msg = "record " + action + " by an operator waits for the send in flight"
	}
	a.cfg.Logger.Info(msg, "record", rec.ID, "repeater", rec.RepeaterID, "domain", rec.Domain, "state", rec.State.String())
	WriteJSON(w, status, viewRecord(rec))
	return nil
}

// stateNames lists the names ?state= takes.
func stateNames() string {
	names := make([]string, len(store.AllStates))
	for i, s := range store.AllStates {
		names[i] = s.String()
	}
	return strings.Join(names, ", ")
}
