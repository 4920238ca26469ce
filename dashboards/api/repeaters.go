package api

import (
	"fmt"
	"net/http"

	"repeaterd/repeaters"
	"repeaterd/store"
)

// repeaterView renders a repeater. Its secrets are write-only: the signing
// secret is never marshalled (has_secret says whether one is set), and
// header values, which carry endpoints' credentials, are shown as
// RedactedValue under their names.
type repeaterView struct {
	*store.Repeater
	Headers   map[string]string `json:"headers"`
	HasSecret bool              `json:"has_secret"`
}

// RedactedValue stands for a header value in the API's answers. A PATCH
// sending it back would store it as the value, so it is refused.
const RedactedValue = "[redacted]"

func viewRepeater(r *store.Repeater) repeaterView {
	headers := make(map[string]string, len(r.Headers))
	for k := range r.Headers {
		headers[k] = RedactedValue
	}
	return repeaterView{Repeater: r, Headers: headers, HasSecret: r.HasSecret()}
}

// repeaterInput is the body of POST and PATCH /repeaters. On PATCH a field
// left out keeps its value; "signing_secret": "" removes the secret.
type repeaterInput struct {
	Domain        *string           `json:"domain"`
	Name          *string           `json:"name"`
	URL           *string           `json:"url"`
	RequestMethod *string           `json:"request_method"`
	Headers       map[string]string `json:"headers"`
	SigningSecret *string           `json:"signing_secret"`
	MaxWorkers    *int              `json:"max_workers"`
	RateLimitPerS *float64          `json:"rate_limit_per_s"`
	RateBurst     *int              `json:"rate_burst"`
	BackoffCodes  []int32           `json:"backoff_codes"`
	MaxAttempts   *int              `json:"max_attempts"`
	TimeoutMS     *int              `json:"timeout_ms"`
	// ConnectionID names a connection of the repeater's domain; 0 detaches.
	ConnectionID *int64 `json:"connection_id"`
	// EventTypes are the event types received (empty = all); EventFilter
	// filters their payloads (store/filter.go; "" = none).
	EventTypes  []string `json:"event_types"`
	EventFilter *string  `json:"event_filter"`
}

// apply copies the fields given onto r.
func (in *repeaterInput) apply(r *store.Repeater) {
	setIfGiven(&r.Name, in.Name)
	setIfGiven(&r.URL, in.URL)
	setIfGiven(&r.RequestMethod, in.RequestMethod)
	setIfGiven(&r.SigningSecret, in.SigningSecret)
	setIfGiven(&r.MaxWorkers, in.MaxWorkers)
	setIfGiven(&r.RateLimitPerS, in.RateLimitPerS)
	setIfGiven(&r.RateBurst, in.RateBurst)
	setIfGiven(&r.MaxAttempts, in.MaxAttempts)
	setIfGiven(&r.TimeoutMS, in.TimeoutMS)
	if in.Headers != nil {
		r.Headers = in.Headers
	}
	if in.BackoffCodes != nil {
		r.BackoffCodes = store.Int32Array(in.BackoffCodes)
	}
	in.applySubscription(r)
}

func setIfGiven[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// checkSenderPolicy runs what the store's field rules (store.Repeater.Validate,
// run on save) leave to the sender's policy: the URL's target against the
// SSRF guard, when a URL is given (a PATCH that leaves the URL alone is not
// re-judged under a stricter policy than the one it was saved under; an
// empty one is the store's "url is required"), and no header the sender
// sets itself.
func (in *repeaterInput) checkSenderPolicy(allowPrivate bool) error {
	if in.URL != nil && *in.URL != "" {
		if err := repeaters.ValidateURL(*in.URL, allowPrivate); err != nil {
			return err
		}
	}
	for k, v := range in.Headers {
		if repeaters.IsReservedHeader(k) {
			return store.Errorf(store.EINVALID, "header %s is set by repeaterd and cannot be configured", k)
		}
		if v == RedactedValue {
			return store.Errorf(store.EINVALID, "header %s is %q, the API's placeholder for a value it does not show; "+
				"send the real value (headers replace the repeater's headers whole)", k, RedactedValue)
		}
	}
	return nil
}

// createRepeater is POST /api/v1/repeaters.
func (a *API) createRepeater(w http.ResponseWriter, r *http.Request) error {
	var in repeaterInput
	err := a.decodeJSON(w, r, &in)
	if err != nil {
		return err
	}
	if err := in.checkSenderPolicy(a.cfg.AllowPrivateTargets); err != nil {
		return err
	}
	rep := &store.Repeater{}
	setIfGiven(&rep.Domain, in.Domain)
	if rep.Domain, err = scopedDomain(r, rep.Domain); err != nil {
		return err
	}
	in.apply(rep)
	if err := a.st.CreateRepeater(r.Context(), rep); err != nil {
		return err
	}
	w.Header().Set("Location", fmt.Sprintf("/api/v1/repeaters/%d", rep.ID))
	WriteJSON(w, http.StatusCreated, viewRepeater(rep))
	return nil
}

// listRepeaters is GET /api/v1/repeaters?domain=&include_deleted=&cursor=&limit=.
func (a *API) listRepeaters(w http.ResponseWriter, r *http.Request) error {
	page, err := queryDomainPage(r)
	if err != nil {
		return err
	}
	p := store.ListRepeatersParams{Domain: page.domain, AfterID: page.afterID, Limit: page.limit,
		IncludeDeleted: r.URL.Query().Get("include_deleted") == "true"}
	reps, err := a.st.ListRepeaters(r.Context(), p)
	if err != nil {
		return err
	}
	views := make([]repeaterView, len(reps))
	var last int64
	for i := range reps {
		views[i], last = viewRepeater(&reps[i]), reps[i].ID
	}
	WriteJSON(w, http.StatusOK, map[string]any{"repeaters": views, "next_cursor": nextCursor(len(reps), p.Limit, last)})
	return nil
}

// getRepeater is GET /api/v1/repeaters/{id}; deleted repeaters are shown
// with is_deleted true.
func (a *API) getRepeater(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	return a.writeRepeater(w, r, id)
}

// writeRepeater answers with repeater id as it is stored now.
func (a *API) writeRepeater(w http.ResponseWriter, r *http.Request, id int64) error {
	rep, err := a.ownRepeater(r, id)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, viewRepeater(rep))
	return nil
}

// patchRepeater is PATCH /api/v1/repeaters/{id}.
func (a *API) patchRepeater(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var in repeaterInput
	if err := a.decodeJSON(w, r, &in); err != nil {
		return err
	}
	if err := in.checkSenderPolicy(a.cfg.AllowPrivateTargets); err != nil {
		return err
	}
	rep, err := a.ownRepeater(r, id)
	switch {
	case err != nil:
		return err
	case rep.IsDeleted:
		return store.Errorf(store.ECONFLICT, "repeater %d is deleted", id)
	case in.Domain != nil && *in.Domain != rep.Domain:
		return store.Errorf(store.EINVALID, "a repeater's domain cannot be changed")
	}
	in.apply(rep)
	if err := a.st.UpdateRepeater(r.Context(), rep); err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, viewRepeater(rep))
	return nil
}

// deleteRepeater is DELETE /api/v1/repeaters/{id}: the repeater is marked
// deleted and its ready records cancelled.
func (a *API) deleteRepeater(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if _, err := a.ownRepeater(r, id); err != nil {
		return err
	}
	if err := a.st.DeleteRepeater(r.Context(), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// pauseRepeater is POST /api/v1/repeaters/{id}/pause and /resume.
func (a *API) pauseRepeater(paused bool) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := pathID(r)
		if err != nil {
			return err
		}
		if _, err := a.ownRepeater(r, id); err != nil {
			return err
		}
		if err := a.st.SetPaused(r.Context(), id, paused); err != nil {
			return err
		}
		return a.writeRepeater(w, r, id)
	}
}
