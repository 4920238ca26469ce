package api

import (
	"net/http"

	"repeaterd/dashboards/auth"
	"repeaterd/store"
)

// Tenant scope: every route reads and writes only what the request's
// principal (auth.PrincipalFrom, set by the web role) sees. A domain token
// asking for another domain's repeater, record, events, flags or stats gets
// the same 404 as for one that does not exist, so it learns nothing about
// other tenants; routes about every domain (invariants, tokens) are the
// admin's, and answer a domain token with 403.

// adminOnly lets only the admin through to h.
func adminOnly(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if !auth.PrincipalFrom(r.Context()).IsAdmin() {
			return store.Errorf(CodeForbidden, "this route needs the admin token")
		}
		return h(w, r)
	}
}

// scopedDomain returns the domain a request about requested may touch:
// requested itself when the principal sees it, the token's own domain when
// requested is "" (every domain, or "not given"), and a 404 for another
// domain.
func scopedDomain(r *http.Request, requested string) (string, error) {
	p := auth.PrincipalFrom(r.Context())
	switch {
	case requested == "":
		return p.Domain, nil
	case !p.Sees(requested):
		return "", store.Errorf(store.ENOTFOUND, "domain %q not found", requested)
	}
	return requested, nil
}

// ownRepeater returns repeater id if the principal sees its domain, else
// the store's own 404.
func (a *API) ownRepeater(r *http.Request, id int64) (*store.Repeater, error) {
	rep, err := a.st.GetRepeater(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if !auth.PrincipalFrom(r.Context()).Sees(rep.Domain) {
		return nil, store.Errorf(store.ENOTFOUND, "repeater %d not found", id)
	}
	return rep, nil
}

// liveRepeater returns the {id} repeater if the principal sees it and it is
// not deleted (a 409): what an action on a repeater needs.
func (a *API) liveRepeater(r *http.Request) (*store.Repeater, error) {
	id, err := pathID(r)
	if err != nil {
		return nil, err
	}
	rep, err := a.ownRepeater(r, id)
	if err != nil {
		return nil, err
	}
	if rep.IsDeleted {
		return nil, store.Errorf(store.ECONFLICT, "repeater %d is deleted", id)
	}
	return rep, nil
}

// ownRecord returns record id and its attempts if the principal sees its
// domain, else the store's own 404.
func (a *API) ownRecord(r *http.Request, id int64) (*store.RepeatRecord, []store.Attempt, error) {
	rec, attempts, err := a.st.GetRecord(r.Context(), id)
	if err != nil {
		return nil, nil, err
	}
	if !auth.PrincipalFrom(r.Context()).Sees(rec.Domain) {
		return nil, nil, store.Errorf(store.ENOTFOUND, "record %d not found", id)
	}
	return rec, attempts, nil
}
