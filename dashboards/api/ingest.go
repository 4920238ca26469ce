package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"repeaterd/dashboards/auth"
	"repeaterd/store"
)

// Limits of POST /api/v1/records:batch.
const (
	// MaxBatchRecords is the most records one batch may carry (422 beyond).
	MaxBatchRecords = 1000
	// MaxBatchBytes is the largest batch body (413 beyond).
	MaxBatchBytes = 8 << 20
)

// batchInput is the body of POST /api/v1/records:batch: each element is
// what POST /api/v1/records takes, checked by the same rules.
type batchInput struct {
	Records []json.RawMessage `json:"records"`
}

// batchRecordView is one stored record of a batch, in its item's order.
type batchRecordView struct {
	recordView
	// Created is false for an item whose idempotency key an earlier request
	// (or an earlier item of this batch) already stored with this payload.
	Created bool `json:"created"`
}

// batchItemError is one refused item of a batch.
type batchItemError struct {
	Index int `json:"index"`
	errorDetail
}

// batchErrorBody is a refused batch: the usual error, and every refused
// item by its index in "records".
type batchErrorBody struct {
	Error  errorDetail      `json:"error"`
	Errors []batchItemError `json:"errors"`
}

// createRecords is POST /api/v1/records:batch: up to MaxBatchRecords
// records in one transaction, all or nothing. 201 when it created a record,
// 200 when every item was an idempotent replay; a refused item refuses the
// batch, answered with every refused item's index and error (the status is
// theirs when they share one code, else 422), and writes nothing.
func (a *API) createRecords(w http.ResponseWriter, r *http.Request) error {
	raw, err := a.readBatch(w, r)
	if err != nil {
		return err
	}
	items, itemErrs := a.batchItems(raw)
	if len(itemErrs) > 0 {
		return a.refuseBatch(w, len(raw), itemErrs)
	}
	p := auth.PrincipalFrom(r.Context())
	results, err := a.st.RegisterBatch(r.Context(), items, p.Sees)
	if err != nil {
		return err
	}
	for i, res := range results {
		if res.Err != nil {
			itemErrs = append(itemErrs, itemError(i, res))
		}
	}
	if len(itemErrs) > 0 {
		return a.refuseBatch(w, len(raw), itemErrs) // the store wrote nothing
	}
	out := make([]batchRecordView, len(results))
	created := 0
	for i, res := range results {
		out[i] = batchRecordView{recordView: viewRecord(res.Record), Created: res.Created}
		if res.Created {
			created++
		}
	}
	status := http.StatusOK
	if created > 0 {
		status = http.StatusCreated
	}
	WriteJSON(w, status, map[string]any{"records": out, "created": created})
	return nil
}

// readBatch reads the body: one object whose only field is "records", an
// array of 1 to MaxBatchRecords JSON values.
func (a *API) readBatch(w http.ResponseWriter, r *http.Request) ([]json.RawMessage, error) {
	body, err := a.readBody(w, r, MaxBatchBytes)
	if store.ErrorCode(err) == codeTooLarge {
		return nil, store.Errorf(codeTooLarge, "batch body is over %d bytes; send fewer records per batch", MaxBatchBytes)
	}
	if err != nil {
		return nil, err
	}
	raw, err := splitBatch(body)
	if err != nil {
		return nil, err
	}
	switch {
	case len(raw) == 0:
		return nil, store.Errorf(store.EINVALID, "records must hold at least one record")
	case len(raw) > MaxBatchRecords:
		return nil, store.Errorf(store.EINVALID, "records holds %d records; a batch may hold at most %d", len(raw), MaxBatchRecords)
	}
	return raw, nil
}

// splitBatch checks the envelope strictly (valid UTF-8, nesting, exactly
// one "records" key) and returns its elements undecoded: each is decoded
// as POST /api/v1/records decodes its body, payload rules included.
func splitBatch(body []byte) ([]json.RawMessage, error) {
	trimmed := bytes.TrimSpace(body)
	switch {
	case len(trimmed) == 0:
		return nil, store.Errorf(codeBadJSON, "request body is empty; send {\"records\": [...]}")
	case trimmed[0] != '{':
		return nil, store.Errorf(codeBadJSON, "request body must be a JSON object: {\"records\": [...]}")
	case !jsonDepthWithin(trimmed, maxJSONDepth+2):
		return nil, store.Errorf(codeBadJSON, "JSON is nested deeper than %d levels", maxJSONDepth)
	}
	if err := checkText(trimmed); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if _, err := dec.Token(); err != nil {
		return nil, jsonError(err)
	}
	var in batchInput
	seen := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonError(err)
		}
		switch key, _ := tok.(string); {
		case key != "records":
			return nil, store.Errorf(codeBadJSON, "unknown field %q (a batch is {\"records\": [...]})", key)
		case seen:
			return nil, store.Errorf(codeBadJSON, "key %q appears twice", key)
		}
		seen = true
		if err := dec.Decode(&in.Records); err != nil {
			return nil, jsonError(err)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, store.Errorf(codeBadJSON, "unexpected data after the JSON object")
	}
	if !seen || in.Records == nil {
		return nil, store.Errorf(store.EINVALID, "records is required: an array of records as POST /api/v1/records takes them")
	}
	return in.Records, nil
}

// batchItems decodes and validates every element as createRecord does,
// collecting every refusal rather than stopping at the first.
func (a *API) batchItems(raw []json.RawMessage) ([]store.BatchItem, []batchItemError) {
	items := make([]store.BatchItem, len(raw))
	var errs []batchItemError
	for i, el := range raw {
		item, err := a.batchItem(el)
		if err != nil {
			errs = append(errs, itemError(i, store.BatchResult{Err: err}))
			continue
		}
		items[i] = item
	}
	return items, errs
}

func (a *API) batchItem(el json.RawMessage) (store.BatchItem, error) {
	var in recordInput
	if err := decodeObject(el, &in); err != nil {
		return store.BatchItem{}, err
	}
	if in.RepeaterID < 1 {
		return store.BatchItem{}, store.Errorf(store.EINVALID, "repeater_id is required (a positive integer)")
	}
	if err := store.ValidateText("idempotency_key", in.IdempotencyKey, maxKeyLen); err != nil {
		return store.BatchItem{}, err
	}
	body, ct, err := in.body(a.cfg.MaxPayloadBytes)
	if err != nil {
		return store.BatchItem{}, err
	}
	return store.BatchItem{RepeaterID: in.RepeaterID, ContentType: ct, Body: body, IdempotencyKey: in.IdempotencyKey}, nil
}

// itemError renders one refused item; codes outside the table are not
// expected here (internal errors fail the whole request).
func itemError(i int, res store.BatchResult) batchItemError {
	d := errorDetail{Code: store.ErrorCode(res.Err), Message: res.Err.Error()}
	if d.Code == store.ECONFLICT && res.Record != nil {
		d.RecordID = res.Record.ID
	}
	return batchItemError{Index: i, errorDetail: d}
}

// refuseBatch answers a refused batch: the items' shared code (422 when
// they differ) and every refused item.
func (a *API) refuseBatch(w http.ResponseWriter, n int, errs []batchItemError) error {
	code := errs[0].Code
	for _, e := range errs[1:] {
		if e.Code != code {
			code = store.EINVALID
		}
	}
	status, ok := statusByCode[code]
	if !ok || status == http.StatusInternalServerError {
		return fmt.Errorf("api: batch item refused with code %q", code)
	}
	WriteJSON(w, status, batchErrorBody{
		Error: errorDetail{Code: code, Message: fmt.Sprintf(
			"%d of %d records refused (see errors, by index in records); nothing was written", len(errs), n)},
		Errors: errs,
	})
	return nil
}
