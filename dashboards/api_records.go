package dashboards

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"repeaterd/store"
)

// recordView renders a record with its state by name (the name ?state=
// filters on) and by code.
type recordView struct {
	*store.RepeatRecord
	State     string        `json:"state"`
	StateCode store.State   `json:"state_code"`
	Attempts  []attemptView `json:"attempts,omitempty"`
}

func viewRecord(r *store.RepeatRecord) recordView {
	return recordView{RepeatRecord: r, State: r.State.String(), StateCode: r.State}
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

// payloadInput is the payload part of a record or event body: exactly one
// of payload (any JSON value, sent as its bytes) and payload_base64 (any
// bytes).
type payloadInput struct {
	Payload       json.RawMessage `json:"payload"`
	PayloadBase64 *string         `json:"payload_base64"`
	ContentType   string          `json:"content_type"`
}

// body validates the payload and returns its bytes and content type.
func (p *payloadInput) body(limit int64) (body []byte, contentType string, err error) {
	hasJSON := len(p.Payload) > 0 && !bytes.Equal(p.Payload, []byte("null"))
	switch {
	case hasJSON && p.PayloadBase64 != nil:
		return nil, "", store.Errorf(store.EINVALID, "send payload or payload_base64, not both")
	case hasJSON:
		body, contentType = p.Payload, "application/json"
	case p.PayloadBase64 != nil:
		if body, err = base64.StdEncoding.DecodeString(*p.PayloadBase64); err != nil {
			return nil, "", store.Errorf(store.EINVALID, "payload_base64 is not valid base64 (standard alphabet, padded)")
		}
		contentType = "application/octet-stream"
	default:
		return nil, "", store.Errorf(store.EINVALID, "payload or payload_base64 is required")
	}
	if int64(len(body)) > limit {
		return nil, "", store.Errorf(codeTooLarge, "payload is %d bytes; the limit is %d", len(body), limit)
	}
	if p.ContentType != "" {
		if err := validateContentType(p.ContentType); err != nil {
			return nil, "", err
		}
		contentType = p.ContentType
	}
	return body, contentType, nil
}

// validateContentType accepts a media type net/http can send as a header.
func validateContentType(ct string) error {
	if err := validateText("content_type", ct, 255); err != nil {
		return err
	}
	if _, _, err := mime.ParseMediaType(ct); err != nil {
		return store.Errorf(store.EINVALID, "content_type %q is not a media type: %v", ct, err)
	}
	return nil
}

// recordInput is the body of POST /api/v1/records.
type recordInput struct {
	payloadInput
	RepeaterID     int64  `json:"repeater_id"`
	IdempotencyKey string `json:"idempotency_key"`
}

// createRecord is POST /api/v1/records: 201 with a new record, or 200 with
// the record an earlier request with the same idempotency key made.
func (a *api) createRecord(w http.ResponseWriter, r *http.Request) error {
	var in recordInput
	if err := a.decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.RepeaterID < 1 {
		return store.Errorf(store.EINVALID, "repeater_id is required (a positive integer)")
	}
	if err := validateText("idempotency_key", in.IdempotencyKey, maxKeyLen); err != nil {
		return err
	}
	body, ct, err := in.body(a.cfg.MaxPayloadBytes)
	if err != nil {
		return err
	}
	rec, created, err := a.st.RegisterRecord(r.Context(), store.RegisterParams{
		RepeaterID: in.RepeaterID, ContentType: ct, Body: body, IdempotencyKey: in.IdempotencyKey,
	})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", fmt.Sprintf("/api/v1/records/%d", rec.ID))
	}
	writeJSON(w, status, viewRecord(rec))
	return nil
}

// createEvent is POST /api/v1/domains/{domain}/events: one payload, one
// record per active repeater of the domain, all in one transaction.
func (a *api) createEvent(w http.ResponseWriter, r *http.Request) error {
	domain := r.PathValue("domain")
	if err := validateDomain(domain); err != nil {
		return err
	}
	var in payloadInput
	if err := a.decodeJSON(w, r, &in); err != nil {
		return err
	}
	body, ct, err := in.body(a.cfg.MaxPayloadBytes)
	if err != nil {
		return err
	}
	recs, err := a.st.FanOut(r.Context(), domain, ct, body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"records": viewRecords(recs)})
	return nil
}

// getRecord is GET /api/v1/records/{id}, with its attempts oldest first.
func (a *api) getRecord(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	rec, attempts, err := a.st.GetRecord(r.Context(), id)
	if err != nil {
		return err
	}
	v := viewRecord(rec)
	v.Attempts = make([]attemptView, len(attempts))
	for i, at := range attempts {
		v.Attempts[i] = attemptView{Attempt: at, State: at.State.String(), StateCode: at.State}
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// listRecords is GET /api/v1/records?repeater_id=&domain=&state=&cursor=&limit=.
func (a *api) listRecords(w http.ResponseWriter, r *http.Request) error {
	p, err := recordsQuery(r)
	if err != nil {
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
	writeJSON(w, http.StatusOK, map[string]any{"records": viewRecords(recs), "next_cursor": nextCursor(len(recs), p.Limit, last)})
	return nil
}

func recordsQuery(r *http.Request) (store.ListRecordsParams, error) {
	q := r.URL.Query()
	var p store.ListRecordsParams
	var err error
	if p.RepeaterID, err = queryID(r, "repeater_id"); err != nil {
		return p, err
	}
	if p.Domain = q.Get("domain"); p.Domain != "" {
		if err := validateDomain(p.Domain); err != nil {
			return p, err
		}
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
// a finished record gets another max_attempts tries.
func (a *api) requeueRecord(w http.ResponseWriter, r *http.Request) error {
	return a.changeRecord(w, r, a.st.RequeueRecord)
}

// cancelRecord is POST /api/v1/records/{id}/cancel; only a ready record can
// be cancelled (409 otherwise).
func (a *api) cancelRecord(w http.ResponseWriter, r *http.Request) error {
	return a.changeRecord(w, r, a.st.CancelRecord)
}

func (a *api) changeRecord(w http.ResponseWriter, r *http.Request,
	change func(ctx context.Context, id int64) (*store.RepeatRecord, error)) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	rec, err := change(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, viewRecord(rec))
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
