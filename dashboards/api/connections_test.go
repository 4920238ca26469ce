package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"repeaterd/dashboards/api"
	"repeaterd/repeaters"
	"repeaterd/store/storetest"
)

type connectionJSON struct {
	ID            int64    `json:"id"`
	Domain        string   `json:"domain"`
	AuthType      string   `json:"auth_type"`
	Username      string   `json:"username"`
	SecretsSet    []string `json:"secrets_set"`
	UsedBy        []int64  `json:"used_by"`
	SkipTLSVerify bool     `json:"skip_tls_verify"`
	Warning       string   `json:"warning"`
}

// assertNeverRendered fails if any response so far carried one of secrets.
func (e *apiEnv) assertNeverRendered(secrets ...string) {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, b := range e.bodies {
		for _, s := range secrets {
			if strings.Contains(b, s) {
				e.t.Fatalf("an API answer carries the secret %q: %s", s, b)
			}
		}
	}
}

func TestConnectionsCRUD(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	var c connectionJSON
	e.must(http.StatusCreated, "POST", "/api/v1/connections", map[string]any{
		"domain": "acme", "name": "partner", "auth_type": "basic", "username": "ada", "password": "basic-pass-123",
	}).decode(t, &c)
	if c.AuthType != "basic" || c.Username != "ada" || len(c.SecretsSet) != 1 || c.SecretsSet[0] != "password" || len(c.UsedBy) != 0 {
		t.Fatalf("created %+v", c)
	}
	var r repeaterJSON
	e.must(http.StatusCreated, "POST", "/api/v1/repeaters", map[string]any{
		"domain": "acme", "url": "https://example.com/hook", "connection_id": c.ID,
	}).decode(t, &r)
	var got connectionJSON
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/connections/%d", c.ID), nil).decode(t, &got)
	if len(got.UsedBy) != 1 || got.UsedBy[0] != r.ID {
		t.Fatalf("used_by %v, want [%d]", got.UsedBy, r.ID)
	}
	var list struct{ Connections []connectionJSON }
	e.must(http.StatusOK, "GET", "/api/v1/connections?domain=acme", nil).decode(t, &list)
	if len(list.Connections) != 1 || len(list.Connections[0].UsedBy) != 1 {
		t.Fatalf("list %+v", list)
	}

	// A new auth type replaces the old one's fields.
	got = connectionJSON{}
	e.must(http.StatusOK, "PATCH", fmt.Sprintf("/api/v1/connections/%d", c.ID), map[string]any{
		"auth_type": "bearer", "token": "bearer-tok-456",
	}).decode(t, &got)
	if got.AuthType != "bearer" || got.Username != "" || len(got.SecretsSet) != 1 || got.SecretsSet[0] != "token" {
		t.Fatalf("after the switch to bearer: %+v", got)
	}
	stored, err := e.st.GetConnection(t.Context(), c.ID)
	if err != nil || stored.Password != "" || stored.Token != "bearer-tok-456" {
		t.Fatalf("stored %+v, %v", stored, err)
	}

	// skip_tls_verify is marked loudly.
	e.must(http.StatusOK, "PATCH", fmt.Sprintf("/api/v1/connections/%d", c.ID), map[string]any{"skip_tls_verify": true}).decode(t, &got)
	if !got.SkipTLSVerify || !strings.Contains(got.Warning, "verification is OFF") {
		t.Fatalf("skip_tls_verify answer %+v, want a warning", got)
	}

	if res := e.must(http.StatusConflict, "DELETE", fmt.Sprintf("/api/v1/connections/%d", c.ID), nil); !strings.Contains(string(res.Body), fmt.Sprint(r.ID)) {
		t.Fatalf("delete of a used connection: %s, want the repeater named", res.Body)
	}
	e.must(http.StatusOK, "PATCH", fmt.Sprintf("/api/v1/repeaters/%d", r.ID), map[string]any{"connection_id": 0})
	e.must(http.StatusNoContent, "DELETE", fmt.Sprintf("/api/v1/connections/%d", c.ID), nil)
	e.must(http.StatusNotFound, "GET", fmt.Sprintf("/api/v1/connections/%d", c.ID), nil)
	e.assertNeverRendered("basic-pass-123", "bearer-tok-456")
}

// TestConnectionBadInput: each is a clear 422 and writes nothing.
func TestConnectionBadInput(t *testing.T) {
	e := newAPIEnv(t, api.Config{}) // private targets off
	rep := e.repeater("acme")
	tests := []struct {
		name, method, path string
		body               map[string]any
		msg                string
	}{
		{"unknown auth type", "POST", "/api/v1/connections", map[string]any{"domain": "acme", "auth_type": "digest"}, "auth_type \"digest\" is unknown"},
		{"basic without password", "POST", "/api/v1/connections", map[string]any{"domain": "acme", "auth_type": "basic", "username": "u"}, "needs password"},
		{"api_key without header", "POST", "/api/v1/connections", map[string]any{"domain": "acme", "auth_type": "api_key", "api_key": "k"}, "needs api_key_header"},
		{"api_key in a reserved header", "POST", "/api/v1/connections", map[string]any{"domain": "acme", "auth_type": "api_key", "api_key_header": "webhook-signature", "api_key": "k"}, "set by repeaterd"},
		{"oauth2 without client_secret", "POST", "/api/v1/connections", map[string]any{"domain": "acme", "auth_type": "oauth2_client_credentials", "token_url": "https://auth.example.com/t", "client_id": "c"}, "needs client_secret"},
		{"oauth2 http token URL", "POST", "/api/v1/connections", map[string]any{"domain": "acme", "auth_type": "oauth2_client_credentials", "token_url": "http://auth.example.com/t", "client_id": "c", "client_secret": "s"}, "token_url must be https"},
		{"oauth2 token URL on loopback", "POST", "/api/v1/connections", map[string]any{"domain": "acme", "auth_type": "oauth2_client_credentials", "token_url": "https://127.0.0.1/t", "client_id": "c", "client_secret": "s"}, "token_url host 127.0.0.1 is refused"},
		{"a field of another type", "POST", "/api/v1/connections", map[string]any{"domain": "acme", "auth_type": "bearer", "token": "t", "username": "u"}, "username is a setting of auth_type basic"},
		{"a CA that is not PEM", "POST", "/api/v1/connections", map[string]any{"domain": "acme", "ca_pem": "hello"}, "ca_pem"},
		{"a filter that does not parse", "POST", "/api/v1/repeaters", map[string]any{"domain": "acme", "url": "https://example.com/", "event_filter": `status = "open"`}, "event_filter does not parse"},
		{"an event type with a space", "POST", "/api/v1/repeaters", map[string]any{"domain": "acme", "url": "https://example.com/", "event_types": []string{"case updated"}}, "not an event type"},
		{"an unknown connection", "POST", "/api/v1/repeaters", map[string]any{"domain": "acme", "url": "https://example.com/", "connection_id": 424242}, "not a connection of domain acme"},
		{"a filter that does not parse, on PATCH", "PATCH", fmt.Sprintf("/api/v1/repeaters/%d", rep.ID), map[string]any{"event_filter": `a in [1,`}, "event_filter does not parse"},
		{"an event with a bad type", "POST", "/api/v1/domains/acme/events", map[string]any{"payload": map[string]any{}, "event_type": "bad type"}, "not an event type"},
		{"rotate with a zero overlap", "POST", fmt.Sprintf("/api/v1/repeaters/%d/rotate-secret", rep.ID), map[string]any{"overlap_seconds": 0}, "overlap_seconds"},
		{"rotate to an empty secret", "POST", fmt.Sprintf("/api/v1/repeaters/%d/rotate-secret", rep.ID), map[string]any{"secret": ""}, "empty"},
	}
	before := e.rowCounts()
	before["connections"] = storetest.Count(t, e.st, "SELECT count(*) FROM connections")
	for _, tt := range tests {
		res := e.do(tt.method, tt.path, tt.body)
		var msg struct{ Error struct{ Message string } }
		res.decode(t, &msg)
		if res.Status != http.StatusUnprocessableEntity || res.errorCode() != "invalid" || !strings.Contains(msg.Error.Message, tt.msg) {
			t.Errorf("%s: %d %s; want 422 with %q", tt.name, res.Status, res.Body, tt.msg)
		}
	}
	after := e.rowCounts()
	after["connections"] = storetest.Count(t, e.st, "SELECT count(*) FROM connections")
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s: %d rows before, %d after refused requests", k, v, after[k])
		}
	}
}

// TestTestConnection: the endpoint's answer comes back, signed and
// authenticated as a delivery would be, and nothing is written.
func TestTestConnection(t *testing.T) {
	var mu sync.Mutex
	var gotAuth, gotSig, gotID, gotBody string
	var gotTS int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		gotAuth, gotSig, gotID, gotBody = r.Header.Get("Authorization"), r.Header.Get("webhook-signature"), r.Header.Get("webhook-id"), string(b)
		fmt.Sscan(r.Header.Get("webhook-timestamp"), &gotTS)
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "hello from the sink; echo: "+r.Header.Get("Authorization"))
	}))
	t.Cleanup(sink.Close)
	e := newAPIEnv(t, api.Config{AllowPrivateTargets: true})
	var c connectionJSON
	e.must(http.StatusCreated, "POST", "/api/v1/connections", map[string]any{
		"domain": "acme", "auth_type": "bearer", "token": "test-bearer-789",
	}).decode(t, &c)
	var r repeaterJSON
	e.must(http.StatusCreated, "POST", "/api/v1/repeaters", map[string]any{
		"domain": "acme", "url": sink.URL + "/hook", "connection_id": c.ID, "signing_secret": "sign-me-please",
	}).decode(t, &r)
	before := e.rowCounts()

	var res repeaters.ProbeResult
	e.must(http.StatusOK, "POST", fmt.Sprintf("/api/v1/repeaters/%d/test", r.ID), nil).decode(t, &res)
	if !res.OK || res.StatusCode != http.StatusCreated || !strings.HasPrefix(res.Excerpt, "hello from the sink") || res.State != "success" {
		t.Fatalf("test result %+v", res)
	}
	mu.Lock()
	defer mu.Unlock()
	if gotAuth != "Bearer test-bearer-789" || gotID != res.WebhookID ||
		!repeaters.Verify("sign-me-please", gotID, time.Unix(gotTS, 0), []byte(gotBody), gotSig) {
		t.Fatalf("the sink got auth %q id %q (want %q) and a signature that verifies: %v", gotAuth, gotID, res.WebhookID,
			repeaters.Verify("sign-me-please", gotID, time.Unix(gotTS, 0), []byte(gotBody), gotSig))
	}
	if after := e.rowCounts(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("a test request wrote rows: %v -> %v", before, after)
	}
	e.assertNeverRendered("test-bearer-789", "sign-me-please")

	e.must(http.StatusNoContent, "DELETE", fmt.Sprintf("/api/v1/repeaters/%d", r.ID), nil)
	e.must(http.StatusConflict, "POST", fmt.Sprintf("/api/v1/repeaters/%d/test", r.ID), nil)
}

func TestRotateSecretAPI(t *testing.T) {
	var mu sync.Mutex
	var sigs []string
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sigs = append(sigs, r.Header.Get("webhook-signature"))
		mu.Unlock()
	}))
	t.Cleanup(sink.Close)
	e := newAPIEnv(t, api.Config{AllowPrivateTargets: true})
	var r repeaterJSON
	e.must(http.StatusCreated, "POST", "/api/v1/repeaters", map[string]any{
		"domain": "acme", "url": sink.URL, "signing_secret": "first-secret",
	}).decode(t, &r)
	var out struct {
		Repeater      map[string]any `json:"repeater"`
		SigningSecret string         `json:"signing_secret"`
	}
	e.must(http.StatusOK, "POST", fmt.Sprintf("/api/v1/repeaters/%d/rotate-secret", r.ID), map[string]any{"overlap_seconds": 3600}).decode(t, &out)
	if !strings.HasPrefix(out.SigningSecret, "whsec_") || out.Repeater["previous_secret_until"] == nil {
		t.Fatalf("rotation answer %+v", out)
	}
	stored, err := e.st.GetRepeater(t.Context(), r.ID)
	if err != nil || stored.SigningSecret != out.SigningSecret || stored.PreviousSigningSecret != "first-secret" {
		t.Fatalf("stored %q / %q, %v", stored.SigningSecret, stored.PreviousSigningSecret, err)
	}
	e.must(http.StatusOK, "POST", fmt.Sprintf("/api/v1/repeaters/%d/test", r.ID), nil)
	mu.Lock()
	if len(sigs) != 1 || len(strings.Fields(sigs[0])) != 2 {
		t.Fatalf("signatures during the overlap: %q, want two", sigs)
	}
	mu.Unlock()
	// A given secret is not echoed.
	res := e.must(http.StatusOK, "POST", fmt.Sprintf("/api/v1/repeaters/%d/rotate-secret", r.ID), map[string]any{"secret": "third-secret"})
	var again map[string]any
	res.decode(t, &again)
	if _, ok := again["signing_secret"]; ok {
		t.Fatal("a secret the caller chose was echoed")
	}
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/repeaters/%d", r.ID), nil)
	e.assertNeverRendered("first-secret", "third-secret")
	e.mu.Lock()
	n := 0
	for _, b := range e.bodies {
		n += strings.Count(b, out.SigningSecret)
	}
	e.mu.Unlock()
	if n != 1 {
		t.Fatalf("the generated secret was shown %d times, want once", n)
	}
}

func TestEventsWithTypesAndKeys(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	var all, cases, open repeaterJSON
	e.must(http.StatusCreated, "POST", "/api/v1/repeaters", map[string]any{"domain": "acme", "url": "https://example.com/a"}).decode(t, &all)
	e.must(http.StatusCreated, "POST", "/api/v1/repeaters", map[string]any{"domain": "acme", "url": "https://example.com/b", "event_types": []string{"case.updated"}}).decode(t, &cases)
	e.must(http.StatusCreated, "POST", "/api/v1/repeaters", map[string]any{"domain": "acme", "url": "https://example.com/c", "event_types": []string{"case.updated"}, "event_filter": `status == "open"`}).decode(t, &open)
	publish := func(want int, body map[string]any) []int64 {
		t.Helper()
		var out struct{ Records []recordJSON }
		e.must(want, "POST", "/api/v1/domains/acme/events", body).decode(t, &out)
		ids := []int64{}
		for _, r := range out.Records {
			ids = append(ids, r.RepeaterID)
		}
		return ids
	}
	if got := publish(http.StatusCreated, map[string]any{"payload": map[string]any{"status": "open"}, "event_type": "case.updated", "idempotency_key": "e1"}); fmt.Sprint(got) != fmt.Sprint([]int64{all.ID, cases.ID, open.ID}) {
		t.Fatalf("case.updated open went to %v", got)
	}
	if got := publish(http.StatusOK, map[string]any{"payload": map[string]any{"status": "open"}, "event_type": "case.updated", "idempotency_key": "e1"}); len(got) != 3 {
		t.Fatalf("the retried event answered %v", got)
	}
	e.must(http.StatusConflict, "POST", "/api/v1/domains/acme/events", map[string]any{"payload": map[string]any{"status": "closed"}, "event_type": "case.updated", "idempotency_key": "e1"})
	if got := publish(http.StatusCreated, map[string]any{"payload": map[string]any{"status": "closed"}, "event_type": "case.updated"}); fmt.Sprint(got) != fmt.Sprint([]int64{all.ID, cases.ID}) {
		t.Fatalf("case.updated closed went to %v", got)
	}
	if got := publish(http.StatusCreated, map[string]any{"payload": map[string]any{"x": 1}}); fmt.Sprint(got) != fmt.Sprint([]int64{all.ID}) {
		t.Fatalf("an untyped event went to %v", got)
	}
	var view map[string]any
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/repeaters/%d", open.ID), nil).decode(t, &view)
	if raw, _ := json.Marshal(view["event_types"]); string(raw) != `["case.updated"]` || view["event_filter"] != `status == "open"` {
		t.Fatalf("repeater view %v", view)
	}
}
