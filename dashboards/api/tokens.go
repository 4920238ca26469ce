package api

import (
	"fmt"
	"net/http"

	"repeaterd/store"
)

// Domain tokens, the admin's to manage: POST /api/v1/tokens makes one (the
// token is in that answer only), GET lists them (never the tokens), DELETE
// /api/v1/tokens/{id} revokes one at once.

// tokenInput is the body of POST /api/v1/tokens.
type tokenInput struct {
	Domain string `json:"domain"`
	Name   string `json:"name"`
}

// createdToken is the answer to POST /api/v1/tokens.
type createdToken struct {
	*store.APIToken
	Token string `json:"token"`
}

// createToken is POST /api/v1/tokens {"domain": "...", "name": "..."}.
func (a *API) createToken(w http.ResponseWriter, r *http.Request) error {
	var in tokenInput
	if err := a.decodeJSON(w, r, &in); err != nil {
		return err
	}
	token, t, err := a.st.CreateAPIToken(r.Context(), in.Domain, in.Name)
	if err != nil {
		return err
	}
	a.cfg.Logger.Info("api: domain token created", "id", t.ID, "domain", t.Domain, "name", t.Name, "remote", r.RemoteAddr)
	w.Header().Set("Location", fmt.Sprintf("/api/v1/tokens/%d", t.ID))
	WriteJSON(w, http.StatusCreated, createdToken{APIToken: t, Token: token})
	return nil
}

// listTokens is GET /api/v1/tokens?domain=&include_revoked=.
func (a *API) listTokens(w http.ResponseWriter, r *http.Request) error {
	domain, err := queryDomain(r)
	if err != nil {
		return err
	}
	tokens, err := a.st.ListAPITokens(r.Context(), store.ListAPITokensParams{
		Domain: domain, IncludeRevoked: r.URL.Query().Get("include_revoked") == "true",
	})
	if err != nil {
		return err
	}
	if tokens == nil {
		tokens = []store.APIToken{}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"tokens": tokens})
	return nil
}

// revokeToken is DELETE /api/v1/tokens/{id}: the token stops working at
// once; revoking it again is harmless.
func (a *API) revokeToken(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	t, err := a.st.RevokeAPIToken(r.Context(), id)
	if err != nil {
		return err
	}
	a.cfg.Logger.Info("api: domain token revoked", "id", t.ID, "domain", t.Domain, "remote", r.RemoteAddr)
	WriteJSON(w, http.StatusOK, t)
	return nil
}
