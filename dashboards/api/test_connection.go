package api

import (
	"net/http"
	"time"

	"repeaterd/repeaters"
	"repeaterd/store"
)

// testRepeater is POST /api/v1/repeaters/{id}/test: a signed test request
// to the endpoint now, through the sender every delivery uses (connection,
// signature, TLS, proxy, SSRF guard, timeout), answered with what the
// endpoint said (repeaters.ProbeResult: 200 whatever the endpoint
// answered). Nothing is written: no record, no attempt, no backoff. A
// paused repeater may be tested; a deleted one is a 409.
func (a *API) testRepeater(w http.ResponseWriter, r *http.Request) error {
	rep, err := a.liveRepeater(r)
	if err != nil {
		return err
	}
	res := a.cfg.Sender.Probe(r.Context(), rep)
	a.cfg.Logger.Info("repeater tested", "repeater", rep.ID, "domain", rep.Domain, "state", res.State, "status", res.StatusCode)
	WriteJSON(w, http.StatusOK, res)
	return nil
}

// DefaultRotationOverlap is how long the old secret stays valid when a
// rotation names no overlap.
const DefaultRotationOverlap = 24 * time.Hour

// rotateInput is the body of POST /repeaters/{id}/rotate-secret.
type rotateInput struct {
	// Secret is the new signing secret; left out, one is generated
	// ("whsec_" and 32 random bytes in base64) and returned once.
	Secret *string `json:"secret"`
	// OverlapSeconds is how long the old secret stays valid (both
	// signatures are sent until then). Defaults to 86400 (24 h).
	OverlapSeconds *int64 `json:"overlap_seconds"`
}

// rotateSecret is POST /api/v1/repeaters/{id}/rotate-secret.
func (a *API) rotateSecret(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var in rotateInput
	if err := a.decodeJSON(w, r, &in); err != nil {
		return err
	}
	overlap := DefaultRotationOverlap
	if in.OverlapSeconds != nil {
		if *in.OverlapSeconds < 1 || *in.OverlapSeconds > int64(store.MaxRotationOverlap/time.Second) {
			return store.Errorf(store.EINVALID, "overlap_seconds must be from 1 to %d", int64(store.MaxRotationOverlap/time.Second))
		}
		overlap = time.Duration(*in.OverlapSeconds) * time.Second
	}
	if _, err := a.ownRepeater(r, id); err != nil {
		return err
	}
	secret, generated := "", in.Secret == nil
	if generated {
		secret = repeaters.NewSigningSecret()
	} else {
		secret = *in.Secret
	}
	rep, err := a.st.RotateSecret(r.Context(), id, secret, time.Now().Add(overlap))
	if err != nil {
		return err
	}
	a.cfg.Logger.Info("signing secret rotated", "repeater", rep.ID, "domain", rep.Domain, "previous_valid_until", rep.PreviousSecretUntil)
	out := map[string]any{"repeater": viewRepeater(rep)}
	if generated {
		out["signing_secret"] = secret // the only time it is shown
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}
