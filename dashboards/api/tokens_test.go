package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"repeaterd/dashboards/api"
	"repeaterd/store/storetest"
)

type tokenJSON struct {
	ID        int64      `json:"id"`
	Domain    string     `json:"domain"`
	Name      string     `json:"name"`
	Hint      string     `json:"hint"`
	Token     string     `json:"token"`
	RevokedAt *time.Time `json:"revoked_at"`
}

// TestAPITokens: a token is shown once, listed without its value, and
// revoked at once (again is harmless).
func TestAPITokens(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	var made tokenJSON
	e.must(http.StatusCreated, "POST", "/api/v1/tokens", `{"domain":"acme","name":"ci"}`).decode(t, &made)
	if made.Token == "" || !strings.HasPrefix(made.Token, made.Hint) || made.Domain != "acme" || made.Name != "ci" {
		t.Fatalf("created: %+v", made)
	}
	var list struct{ Tokens []tokenJSON }
	r := e.must(http.StatusOK, "GET", "/api/v1/tokens?domain=acme", nil)
	if r.decode(t, &list); len(list.Tokens) != 1 || list.Tokens[0].ID != made.ID || strings.Contains(string(r.Body), made.Token) {
		t.Fatalf("list shows the token or misses it: %s", r.Body)
	}
	path := fmt.Sprintf("/api/v1/tokens/%d", made.ID)
	var revoked tokenJSON
	e.must(http.StatusOK, "DELETE", path, nil).decode(t, &revoked)
	if revoked.RevokedAt == nil {
		t.Fatalf("revoked: %+v", revoked)
	}
	e.must(http.StatusOK, "DELETE", path, nil)
	if e.must(http.StatusOK, "GET", "/api/v1/tokens", nil).decode(t, &list); len(list.Tokens) != 0 {
		t.Fatalf("a revoked token is listed: %+v", list)
	}
	if e.must(http.StatusOK, "GET", "/api/v1/tokens?include_revoked=true", nil).decode(t, &list); len(list.Tokens) != 1 {
		t.Fatalf("include_revoked: %+v", list)
	}
	tokens := func() int {
		return storetest.Count(t, e.st, "SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL")
	}
	before := tokens()
	for _, c := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/api/v1/tokens", `{"name":"no domain"}`, http.StatusUnprocessableEntity},
		{"POST", "/api/v1/tokens", `{"domain":"acme","token":"mine"}`, http.StatusBadRequest},
		{"DELETE", "/api/v1/tokens/999999", "", http.StatusNotFound},
		{"DELETE", "/api/v1/tokens/x", "", http.StatusBadRequest},
	} {
		e.must(c.status, c.method, c.path, c.body)
	}
	if after := tokens(); after != before {
		t.Fatalf("refused token requests changed the live tokens: %d → %d", before, after)
	}
}
