package dashboards_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"repeaterd/dashboards"
	"repeaterd/dashboards/api"
	"repeaterd/dashboards/api/apitest"
	"repeaterd/store/storetest"
)

// TestOpenAPIIsPublic: the API's description is served without
// credentials (it is the repository's document, nothing of any tenant);
// only its GET is, and every other API route still needs a token.
func TestOpenAPIIsPublic(t *testing.T) {
	_, _, base := webServer(t, dashboards.WebConfig{APIToken: "s3cret-token"})
	resp, body := webGet(t, base+"/api/v1/openapi.json", "")
	if resp.StatusCode != http.StatusOK || body != string(api.OpenAPI) {
		t.Fatalf("GET openapi.json without a token: %d, %d bytes", resp.StatusCode, len(body))
	}
	if resp, _ := webGet(t, base+"/api/v1/repeaters", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/repeaters without a token: %d, want 401", resp.StatusCode)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/api/v1/openapi.json", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	post, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST openapi.json without a token: %d, want 401", post.StatusCode)
	}
}

// TestWebRefusalsFollowTheContract: the web role's own answers in front of
// the API (401, 403, a tenant's 404) are the ones openapi.json documents;
// apitest checks every exchange.
func TestWebRefusalsFollowTheContract(t *testing.T) {
	const admin = "s3cret-token"
	st := storetest.NewStore(t)
	w, err := dashboards.NewWeb(dashboards.WebConfig{APIToken: admin}, st, storetest.RedisClient(t), dashboards.WithLogger(quietLog))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(apitest.Load(t).Handler(t, w.Handler()))
	t.Cleanup(srv.Close)
	acme, _, err := st.CreateAPIToken(t.Context(), "acme", "contract")
	if err != nil {
		t.Fatal(err)
	}
	globex := storetest.Repeater(t, st, storetest.RepeaterOpts{Domain: "globex"})
	for _, c := range []struct {
		method, path, auth string
		crossSite          bool
		want               int
	}{
		{"GET", "/api/v1/repeaters", "", false, 401},
		{"GET", "/api/v1/repeaters", "Basic b3BzOnMzY3JldC10b2tlbg==", false, 401},
		{"POST", "/api/v1/repeaters", "Bearer wrong", false, 401},
		{"GET", "/api/v1/nowhere", "", false, 401},
		{"POST", "/api/v1/openapi.json", "", false, 401},
		{"GET", "/api/v1/invariants", "Bearer " + acme, false, 403},
		{"GET", "/api/v1/tokens", "Bearer " + acme, false, 403},
		{"POST", "/api/v1/repeaters", "Bearer " + admin, true, 403},
		{"GET", fmt.Sprintf("/api/v1/repeaters/%d", globex.ID), "Bearer " + acme, false, 404},
		{"GET", "/api/v1/repeaters", "Bearer " + acme, false, 200},
		{"GET", "/api/v1/openapi.json", "", false, 200},
		{"PUT", "/api/v1/openapi.json", "Bearer " + admin, false, 405},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), c.method, srv.URL+c.path, strings.NewReader(`{"domain":"acme","url":"https://example.com/"}`))
		req.Header.Set("Content-Type", "application/json")
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		if c.crossSite {
			req.Header.Set("Sec-Fetch-Site", "cross-site")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s (%q, cross-site %v): %d, want %d: %s", c.method, c.path, c.auth, c.crossSite, resp.StatusCode, c.want, body)
		}
	}
}
