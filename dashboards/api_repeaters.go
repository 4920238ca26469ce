package dashboards

import (
	"fmt"
	"math"
	"net/http"
	"strings"

	"repeaterd/repeaters"
	"repeaterd/store"
)

// repeaterView renders a repeater. The signing secret is write-only:
// store.Repeater never marshals it, and has_secret says whether one is set.
type repeaterView struct {
	*store.Repeater
	HasSecret bool `json:"has_secret"`
}

func viewRepeater(r *store.Repeater) repeaterView {
	return repeaterView{Repeater: r, HasSecret: r.HasSecret()}
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
}

func setIfGiven[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// validate checks what the store does not: text the database cannot hold,
// numbers its integer columns cannot hold, header names and values net/http
// would refuse to send, and the URL against the SSRF policy (when given:
// a PATCH that leaves the URL alone is not re-judged under a stricter
// policy than the one it was saved under).
func (in *repeaterInput) validate(allowPrivate bool) error {
	if in.URL != nil {
		if err := validateURL(*in.URL, allowPrivate); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		name string
		v    *string
		max  int
	}{{"name", in.Name, maxNameLen}, {"request_method", in.RequestMethod, 16}} {
		if f.v != nil {
			if err := validateText(f.name, *f.v, f.max); err != nil {
				return err
			}
		}
	}
	if in.SigningSecret != nil {
		if err := validateText("signing_secret", *in.SigningSecret, maxSecretLen); err != nil {
			return err
		}
	}
	for name, v := range map[string]*int{
		"max_workers": in.MaxWorkers, "rate_burst": in.RateBurst, "max_attempts": in.MaxAttempts, "timeout_ms": in.TimeoutMS,
	} {
		if v != nil && (*v > math.MaxInt32 || *v < math.MinInt32) {
			return store.Errorf(store.EINVALID, "%s is out of range", name)
		}
	}
	if err := validateHeaders(in.Headers); err != nil {
		return err
	}
	return validateBackoffCodes(in.BackoffCodes)
}

func validateURL(u string, allowPrivate bool) error {
	if u == "" {
		return store.Errorf(store.EINVALID, "url is required")
	}
	if len(u) > maxURLLen {
		return store.Errorf(store.EINVALID, "url is longer than %d bytes", maxURLLen)
	}
	return repeaters.ValidateURL(u, allowPrivate)
}

// forbiddenHeaders are set by the sender (signature, id, content type) or
// by net/http from the request itself (framing, host); a repeater cannot
// set them.
var forbiddenHeaders = map[string]bool{
	"webhook-id": true, "webhook-timestamp": true, "webhook-signature": true,
	"content-type": true, "user-agent": true, "content-length": true, "transfer-encoding": true,
	"host": true, "connection": true, "te": true, "trailer": true, "upgrade": true,
}

const maxHeaders = 50

func validateHeaders(h map[string]string) error {
	if len(h) > maxHeaders {
		return store.Errorf(store.EINVALID, "at most %d headers", maxHeaders)
	}
	for k, v := range h {
		switch {
		case !isHeaderToken(k):
			return store.Errorf(store.EINVALID, "header name %q is not a valid HTTP token", k)
		case forbiddenHeaders[strings.ToLower(k)]:
			return store.Errorf(store.EINVALID, "header %s is set by repeaterd and cannot be configured", k)
		case len(v) > 8192 || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }):
			return store.Errorf(store.EINVALID, "header %s has an invalid value (control characters or over 8 KiB)", k)
		}
	}
	return nil
}

// isHeaderToken reports whether s is an RFC 9110 token.
func isHeaderToken(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

func validateBackoffCodes(codes []int32) error {
	if len(codes) > 100 {
		return store.Errorf(store.EINVALID, "at most 100 backoff_codes")
	}
	for _, c := range codes {
		if c < 100 || c > 599 {
			return store.Errorf(store.EINVALID, "backoff_codes must be HTTP status codes (100-599), not %d", c)
		}
	}
	return nil
}

// createRepeater is POST /api/v1/repeaters.
func (a *api) createRepeater(w http.ResponseWriter, r *http.Request) error {
	var in repeaterInput
	if err := a.decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.URL == nil {
		return store.Errorf(store.EINVALID, "url is required")
	}
	var domain string
	setIfGiven(&domain, in.Domain)
	if err := validateDomain(domain); err != nil {
		return err
	}
	if err := in.validate(a.cfg.AllowPrivateTargets); err != nil {
		return err
	}
	rep := &store.Repeater{Domain: domain}
	in.apply(rep)
	if err := a.st.CreateRepeater(r.Context(), rep); err != nil {
		return err
	}
	w.Header().Set("Location", fmt.Sprintf("/api/v1/repeaters/%d", rep.ID))
	writeJSON(w, http.StatusCreated, viewRepeater(rep))
	return nil
}

// listRepeaters is GET /api/v1/repeaters?domain=&include_deleted=&cursor=&limit=.
func (a *api) listRepeaters(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	p := store.ListRepeatersParams{Domain: q.Get("domain"), IncludeDeleted: q.Get("include_deleted") == "true"}
	if p.Domain != "" {
		if err := validateDomain(p.Domain); err != nil {
			return err
		}
	}
	var err error
	if p.AfterID, err = decodeCursor(q.Get("cursor")); err != nil {
		return err
	}
	if p.Limit, err = queryLimit(r); err != nil {
		return err
	}
	reps, err := a.st.ListRepeaters(r.Context(), p)
	if err != nil {
		return err
	}
	views := make([]repeaterView, len(reps))
	var last int64
	for i := range reps {
		views[i], last = viewRepeater(&reps[i]), reps[i].ID
	}
	writeJSON(w, http.StatusOK, map[string]any{"repeaters": views, "next_cursor": nextCursor(len(reps), p.Limit, last)})
	return nil
}

// getRepeater is GET /api/v1/repeaters/{id}; deleted repeaters are shown
// with is_deleted true.
func (a *api) getRepeater(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	rep, err := a.st.GetRepeater(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, viewRepeater(rep))
	return nil
}

// patchRepeater is PATCH /api/v1/repeaters/{id}.
func (a *api) patchRepeater(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var in repeaterInput
	if err := a.decodeJSON(w, r, &in); err != nil {
		return err
	}
	if err := in.validate(a.cfg.AllowPrivateTargets); err != nil {
		return err
	}
	rep, err := a.st.GetRepeater(r.Context(), id)
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
	writeJSON(w, http.StatusOK, viewRepeater(rep))
	return nil
}

// deleteRepeater is DELETE /api/v1/repeaters/{id}: the repeater is marked
// deleted and its ready records cancelled.
func (a *api) deleteRepeater(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := a.st.DeleteRepeater(r.Context(), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// pauseRepeater is POST /api/v1/repeaters/{id}/pause and /resume.
func (a *api) pauseRepeater(paused bool) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := pathID(r)
		if err != nil {
			return err
		}
		if err := a.st.SetPaused(r.Context(), id, paused); err != nil {
			return err
		}
		rep, err := a.st.GetRepeater(r.Context(), id)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, viewRepeater(rep))
		return nil
	}
}
