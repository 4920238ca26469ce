package api

import (
	"fmt"
	"net/http"

	"repeaterd/repeaters"
	"repeaterd/store"
)

// Connections: /api/v1/connections, a domain's endpoint authentication
// shared by its repeaters (store/connections.go). Secrets (password, token,
// api_key, client_secret) are write-only: answers list which are set, never
// their values. A connection with skip_tls_verify answers with a warning
// and is logged at WARN on every save.

// connectionView renders a connection.
type connectionView struct {
	*store.Connection
	// SecretsSet names the secret fields that hold a value.
	SecretsSet []string `json:"secrets_set"`
	// UsedBy lists the ids of the active repeaters that use it.
	UsedBy []int64 `json:"used_by"`
	// Warning is set when TLS verification is off.
	Warning string `json:"warning,omitempty"`
}

// skipTLSWarning marks a connection that does not verify certificates.
const skipTLSWarning = "TLS certificate verification is OFF for this connection (skip_tls_verify): " +
	"anyone on the network path can read and change its requests, credentials included"

func viewConnection(c *store.Connection, usedBy []int64) connectionView {
	v := connectionView{Connection: c, SecretsSet: []string{}, UsedBy: usedBy}
	for _, f := range []struct {
		name, value string
	}{{"password", c.Password}, {"token", c.Token}, {"api_key", c.APIKey}, {"client_secret", c.ClientSecret}} {
		if f.value != "" {
			v.SecretsSet = append(v.SecretsSet, f.name)
		}
	}
	if v.UsedBy == nil {
		v.UsedBy = []int64{}
	}
	if c.SkipTLSVerify {
		v.Warning = skipTLSWarning
	}
	return v
}

// connectionInput is the body of POST and PATCH /connections. On PATCH a
// field left out keeps its value, and a new auth_type clears the old
// type's fields, so the new type's are given whole.
type connectionInput struct {
	Domain        *string `json:"domain"`
	Name          *string `json:"name"`
	AuthType      *string `json:"auth_type"`
	Username      *string `json:"username"`
	Password      *string `json:"password"`
	Token         *string `json:"token"`
	APIKeyHeader  *string `json:"api_key_header"`
	APIKey        *string `json:"api_key"`
	TokenURL      *string `json:"token_url"`
	ClientID      *string `json:"client_id"`
	ClientSecret  *string `json:"client_secret"`
	Scope         *string `json:"scope"`
	CredentialsIn *string `json:"credentials_in"`
	SkipTLSVerify *bool   `json:"skip_tls_verify"`
	CAPEM         *string `json:"ca_pem"`
}

func (in *connectionInput) apply(c *store.Connection) {
	if in.AuthType != nil && *in.AuthType != c.AuthType {
		c.ResetAuth()
		c.AuthType = *in.AuthType
	}
	setIfGiven(&c.Name, in.Name)
	setIfGiven(&c.Username, in.Username)
	setIfGiven(&c.Password, in.Password)
	setIfGiven(&c.Token, in.Token)
	setIfGiven(&c.APIKeyHeader, in.APIKeyHeader)
	setIfGiven(&c.APIKey, in.APIKey)
	setIfGiven(&c.TokenURL, in.TokenURL)
	setIfGiven(&c.ClientID, in.ClientID)
	setIfGiven(&c.ClientSecret, in.ClientSecret)
	setIfGiven(&c.Scope, in.Scope)
	setIfGiven(&c.CredentialsIn, in.CredentialsIn)
	setIfGiven(&c.SkipTLSVerify, in.SkipTLSVerify)
	setIfGiven(&c.CAPEM, in.CAPEM)
}

// checkConnectionPolicy runs what the store's field rules leave to the
// sender: the token URL's target (SSRF; https unless private targets are
// allowed) when it is given (a PATCH leaving it alone is not re-judged
// under a stricter policy than it was saved under), and an API-key header
// the sender does not set itself.
func (a *API) checkConnectionPolicy(in *connectionInput, c *store.Connection) error {
	if in.TokenURL != nil && c.TokenURL != "" {
		if err := repeaters.ValidateTokenURL(c.TokenURL, a.cfg.AllowPrivateTargets); err != nil {
			return err
		}
	}
	if c.APIKeyHeader != "" && repeaters.IsReservedHeader(c.APIKeyHeader) {
		return store.Errorf(store.EINVALID, "api_key_header %s is set by repeaterd and cannot carry a key", c.APIKeyHeader)
	}
	return nil
}

// createConnection is POST /api/v1/connections.
func (a *API) createConnection(w http.ResponseWriter, r *http.Request) error {
	var in connectionInput
	if err := a.decodeJSON(w, r, &in); err != nil {
		return err
	}
	c := &store.Connection{}
	var err error
	setIfGiven(&c.Domain, in.Domain)
	if c.Domain, err = scopedDomain(r, c.Domain); err != nil {
		return err
	}
	in.apply(c)
	if err := a.checkConnectionPolicy(&in, c); err != nil {
		return err
	}
	if err := a.st.CreateConnection(r.Context(), c); err != nil {
		return err
	}
	a.logSaved(c, "connection created")
	w.Header().Set("Location", fmt.Sprintf("/api/v1/connections/%d", c.ID))
	WriteJSON(w, http.StatusCreated, viewConnection(c, nil))
	return nil
}

// logSaved logs a save at INFO, or WARN when TLS verification is off.
func (a *API) logSaved(c *store.Connection, msg string) {
	if c.SkipTLSVerify {
		a.cfg.Logger.Warn(msg+" with TLS verification OFF", "connection", c.ID, "domain", c.Domain)
		return
	}
	a.cfg.Logger.Info(msg, "connection", c.ID, "domain", c.Domain, "auth_type", c.AuthType)
}

// listConnections is GET /api/v1/connections?domain=&cursor=&limit=.
func (a *API) listConnections(w http.ResponseWriter, r *http.Request) error {
	page, err := queryDomainPage(r)
	if err != nil {
		return err
	}
	p := store.ListConnectionsParams{Domain: page.domain, AfterID: page.afterID, Limit: page.limit}
	conns, err := a.st.ListConnections(r.Context(), p)
	if err != nil {
		return err
	}
	ids := make([]int64, len(conns))
	for i := range conns {
		ids[i] = conns[i].ID
	}
	used, err := a.st.ConnectionsUsedBy(r.Context(), ids)
	if err != nil {
		return err
	}
	views := make([]connectionView, len(conns))
	var last int64
	for i := range conns {
		views[i], last = viewConnection(&conns[i], used[conns[i].ID]), conns[i].ID
	}
	WriteJSON(w, http.StatusOK, map[string]any{"connections": views, "next_cursor": nextCursor(len(conns), p.Limit, last)})
	return nil
}

// ownConnection returns connection id if the principal sees its domain,
// else a 404.
func (a *API) ownConnection(r *http.Request, id int64) (*store.Connection, error) {
	c, err := a.st.GetConnection(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if _, err := scopedDomain(r, c.Domain); err != nil {
		return nil, store.Errorf(store.ENOTFOUND, "connection %d not found", id)
	}
	return c, nil
}

// writeConnection answers with connection c and who uses it.
func (a *API) writeConnection(w http.ResponseWriter, r *http.Request, c *store.Connection) error {
	used, err := a.st.ConnectionsUsedBy(r.Context(), []int64{c.ID})
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, viewConnection(c, used[c.ID]))
	return nil
}

// getConnection is GET /api/v1/connections/{id}.
func (a *API) getConnection(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	c, err := a.ownConnection(r, id)
	if err != nil {
		return err
	}
	return a.writeConnection(w, r, c)
}

// patchConnection is PATCH /api/v1/connections/{id}.
func (a *API) patchConnection(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var in connectionInput
	if err := a.decodeJSON(w, r, &in); err != nil {
		return err
	}
	c, err := a.ownConnection(r, id)
	if err != nil {
		return err
	}
	if in.Domain != nil && *in.Domain != c.Domain {
		return store.Errorf(store.EINVALID, "a connection's domain cannot be changed")
	}
	in.apply(c)
	if err := a.checkConnectionPolicy(&in, c); err != nil {
		return err
	}
	if err := a.st.UpdateConnection(r.Context(), c); err != nil {
		return err
	}
	a.logSaved(c, "connection changed")
	return a.writeConnection(w, r, c)
}

// deleteConnection is DELETE /api/v1/connections/{id}: 409 naming the
// repeaters that still use it.
func (a *API) deleteConnection(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if _, err := a.ownConnection(r, id); err != nil {
		return err
	}
	if err := a.st.DeleteConnection(r.Context(), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// applySubscription copies a repeater input's connection and subscription
// fields onto r.
func (in *repeaterInput) applySubscription(r *store.Repeater) {
	if in.ConnectionID != nil {
		r.ConnectionID = in.ConnectionID
		if *in.ConnectionID == 0 {
			r.ConnectionID = nil
		}
	}
	if in.EventTypes != nil {
		r.EventTypes = store.TextArray(in.EventTypes)
	}
	setIfGiven(&r.EventFilter, in.EventFilter)
}
