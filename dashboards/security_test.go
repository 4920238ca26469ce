package dashboards_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"repeaterd/dashboards"
	"repeaterd/store"
	"repeaterd/store/storetest"
)

// The security matrix: every API and asynqmon route × every kind of
// credential × same-origin and cross-site, against a web role with an admin
// token and a domain token of "acme". Each case gets fresh targets of acme
// (a repeater, a record, a token), and a refused request must leave every
// table as it was.

const adminToken = "admin-s3cret"

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// who presents which credential.
type who string

const (
	noToken     who = "no token"
	wrongToken  who = "wrong token"
	otherDomain who = "globex's token"
	ownDomain   who = "acme's token"
	admin       who = "admin token"
)

var everyone = []who{noToken, wrongToken, otherDomain, ownDomain, admin}

// target is what a case acts on, made fresh for it.
type target struct {
	repeater, record, token, connection int64
}

// route is one route of the matrix: its request for a target, and the
// status each credential gets from the same origin.
type route struct {
	method string
	path   func(tg target) string
	body   func(tg target) string
	ok     int // the status of acme's token and of the admin
	// other is globex's token's status: 404 for acme's things, 403 for
	// admin routes; 200 for a list, which must then show nothing of acme.
	other     int
	adminOnly bool
}

func fixed(s string) func(target) string { return func(target) string { return s } }

func repeaterPath(suffix string) func(target) string {
	return func(tg target) string { return fmt.Sprintf("/api/v1/repeaters/%d%s", tg.repeater, suffix) }
}

func connectionPath(tg target) string { return fmt.Sprintf("/api/v1/connections/%d", tg.connection) }

func recordPath(suffix string) func(target) string {
	return func(tg target) string { return fmt.Sprintf("/api/v1/records/%d%s", tg.record, suffix) }
}

var matrixRoutes = []route{
	{method: "GET", path: fixed("/api/v1/repeaters"), ok: 200, other: 200},
	{method: "POST", path: fixed("/api/v1/repeaters"), body: fixed(`{"domain":"acme","url":"https://example.com/new"}`), ok: 201, other: 404},
	{method: "GET", path: repeaterPath(""), ok: 200, other: 404},
	{method: "PATCH", path: repeaterPath(""), body: fixed(`{"name":"renamed"}`), ok: 200, other: 404},
	{method: "DELETE", path: repeaterPath(""), ok: 204, other: 404},
	{method: "POST", path: repeaterPath("/pause"), ok: 200, other: 404},
	{method: "POST", path: repeaterPath("/resume"), ok: 200, other: 404},
	{method: "POST", path: repeaterPath("/test"), ok: 200, other: 404},
	{method: "POST", path: repeaterPath("/retry"), ok: 200, other: 404},
	{method: "POST", path: repeaterPath("/rotate-secret"), body: fixed(`{}`), ok: 200, other: 404},
	{method: "GET", path: fixed("/api/v1/connections"), ok: 200, other: 200},
	{method: "POST", path: fixed("/api/v1/connections"), body: fixed(`{"domain":"acme","auth_type":"bearer","token":"t"}`), ok: 201, other: 404},
	{method: "GET", path: connectionPath, ok: 200, other: 404},
	{method: "PATCH", path: connectionPath, body: fixed(`{"name":"renamed"}`), ok: 200, other: 404},
	{method: "DELETE", path: connectionPath, ok: 204, other: 404},
	{method: "POST", path: fixed("/api/v1/records"), body: func(tg target) string {
		return fmt.Sprintf(`{"repeater_id":%d,"payload":{"n":1}}`, tg.repeater)
	}, ok: 201, other: 404},
	{method: "GET", path: recordPath(""), ok: 200, other: 404},
	{method: "GET", path: fixed("/api/v1/records"), ok: 200, other: 200},
	{method: "GET", path: fixed("/api/v1/records?domain=acme"), ok: 200, other: 404},
	{method: "POST", path: recordPath("/requeue"), ok: 200, other: 404},
	{method: "POST", path: recordPath("/cancel"), ok: 200, other: 404},
	{method: "POST", path: fixed("/api/v1/domains/acme/events"), body: fixed(`{"payload":{"event":"x"}}`), ok: 201, other: 404},
	{method: "GET", path: fixed("/api/v1/domains/acme/flags"), ok: 200, other: 404},
	{method: "PUT", path: fixed("/api/v1/domains/acme/flags/process_repeaters"), body: fixed(`{"enabled":false}`), ok: 200, other: 404},
	{method: "GET", path: fixed("/api/v1/domains"), ok: 200, other: 200},
	{method: "GET", path: fixed("/api/v1/stats"), ok: 200, other: 200},
	{method: "GET", path: fixed("/api/v1/stats?domain=acme"), ok: 200, other: 404},
	{method: "GET", path: fixed("/api/v1/invariants"), ok: 200, other: 403, adminOnly: true},
	{method: "GET", path: fixed("/api/v1/tokens"), ok: 200, other: 403, adminOnly: true},
	{method: "POST", path: fixed("/api/v1/tokens"), body: fixed(`{"domain":"acme","name":"new"}`), ok: 201, other: 403, adminOnly: true},
	{method: "DELETE", path: func(tg target) string { return fmt.Sprintf("/api/v1/tokens/%d", tg.token) }, ok: 200, other: 403, adminOnly: true},
	{method: "GET", path: fixed("/monitor/"), ok: 200, other: 403, adminOnly: true},
	{method: "GET", path: fixed("/monitor/api/queues"), ok: 200, other: 403, adminOnly: true},
}

// want is the status c's credential gets on r.
func (r route) want(c who, crossSite bool) int {
	switch {
	case crossSite:
		return http.StatusForbidden
	case c == noToken || c == wrongToken:
		return http.StatusUnauthorized
	case c == otherDomain:
		return r.other
	case c == ownDomain && r.adminOnly:
		return http.StatusForbidden
	}
	return r.ok
}

func TestSecurityMatrix(t *testing.T) {
	st := storetest.NewStore(t)
	w := startWeb(t, dashboards.WebConfig{APIToken: adminToken}, st, storetest.RedisClient(t), dashboards.WithLogger(quietLog))
	base := "http://" + w.Addr()
	acmeToken, _, err := st.CreateAPIToken(t.Context(), "acme", "matrix")
	if err != nil {
		t.Fatal(err)
	}
	globexToken, _, err := st.CreateAPIToken(t.Context(), "globex", "matrix")
	if err != nil {
		t.Fatal(err)
	}
	storetest.Repeater(t, st, storetest.RepeaterOpts{Domain: "globex", Name: "globex-only"})
	credentials := map[who]string{
		wrongToken: "Bearer rpd_not-a-token", otherDomain: "Bearer " + globexToken,
		ownDomain: "Bearer " + acmeToken, admin: "Bearer " + adminToken,
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, r := range matrixRoutes {
		for _, c := range everyone {
			for _, crossSite := range []bool{false, true} {
				tg := newTarget(t, st)
				path := r.path(tg)
				name := fmt.Sprintf("%s %s, %s, cross-site %v", r.method, path, c, crossSite)
				var body io.Reader
				if r.body != nil {
					body = strings.NewReader(r.body(tg))
				}
				req, err := http.NewRequestWithContext(t.Context(), r.method, base+path, body)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				if cred := credentials[c]; cred != "" {
					req.Header.Set("Authorization", cred)
				}
				if crossSite {
					req.Header.Set("Origin", "http://evil.example")
					req.Header.Set("Sec-Fetch-Site", "cross-site")
				} else {
					req.Header.Set("Sec-Fetch-Site", "same-origin")
				}
				before := fingerprint(t, st)
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				want := r.want(c, crossSite)
				if resp.StatusCode != want {
					t.Errorf("%s: %d, want %d: %.200s", name, resp.StatusCode, want, raw)
				}
				if resp.StatusCode >= 400 {
					if after := fingerprint(t, st); after != before {
						t.Errorf("%s: refused, yet the tables changed", name)
					}
				}
				if c == otherDomain && (strings.Contains(string(raw), "acme-repeater") || strings.Contains(string(raw), `"domain":"acme"`)) {
					t.Errorf("%s: globex's token was shown acme's data: %.300s", name, raw)
				}
			}
		}
	}
}

// newTarget makes a fresh repeater of acme with a ready record, and a
// token of acme to revoke.
func newTarget(t *testing.T, st *store.Store) target {
	t.Helper()
	rep := storetest.Repeater(t, st, storetest.RepeaterOpts{Domain: "acme", Name: "acme-repeater"})
	rec := storetest.Record(t, st, rep, nil)
	_, tok, err := st.CreateAPIToken(t.Context(), "acme", "to-revoke")
	if err != nil {
		t.Fatal(err)
	}
	conn := &store.Connection{Domain: "acme", AuthType: store.AuthNone}
	if err := st.CreateConnection(t.Context(), conn); err != nil {
		t.Fatal(err)
	}
	return target{repeater: rep.ID, record: rec.ID, token: tok.ID, connection: conn.ID}
}

// fingerprint sums every table a request could write (a token's
// last_used_at, the credential's own bookkeeping, left out).
func fingerprint(t *testing.T, st *store.Store) string {
	t.Helper()
	var out []string
	for _, q := range []string{
		`SELECT md5(coalesce(string_agg(r::text, ',' ORDER BY id), '')) FROM repeaters r`,
		`SELECT md5(coalesce(string_agg(p::text, ',' ORDER BY id), '')) FROM payloads p`,
		`SELECT md5(coalesce(string_agg(rr::text, ',' ORDER BY id), '')) FROM repeat_records rr`,
		`SELECT md5(coalesce(string_agg(a::text, ',' ORDER BY id), '')) FROM repeat_record_attempts a`,
		`SELECT md5(coalesce(string_agg(f::text, ',' ORDER BY domain, flag), '')) FROM domain_flags f`,
		`SELECT md5(coalesce(string_agg(c::text, ',' ORDER BY id), '')) FROM connections c`,
		`SELECT md5(coalesce(string_agg(id || domain || name || coalesce(revoked_at::text, ''), ',' ORDER BY id), '')) FROM api_tokens`,
	} {
		var sum string
		if err := st.Pool().QueryRow(context.Background(), q).Scan(&sum); err != nil {
			t.Fatal(err)
		}
		out = append(out, sum)
	}
	return strings.Join(out, " ")
}

// TestDNSRebindingHost: with no token, only loopback Host names are served
// (a rebound name still sends its own Host); health checks answer any.
func TestDNSRebindingHost(t *testing.T) {
	_, st, base := webServer(t, dashboards.WebConfig{}, dashboards.WithLogger(quietLog))
	storetest.Repeater(t, st, storetest.RepeaterOpts{Domain: "acme"})
	for _, c := range []struct {
		host, path string
		status     int
	}{
		{"evil.example:8080", "/api/v1/repeaters", http.StatusForbidden},
		{"evil.example", "/monitor/", http.StatusForbidden},
		{"127.0.0.1.nip.io", "/", http.StatusForbidden},
		{"evil.example", "/metrics", http.StatusForbidden},
		{"10.0.0.1:8080", "/api/v1/stats", http.StatusForbidden},
		{"evil.example", "/healthz", http.StatusOK},
		{"evil.example", "/readyz", http.StatusOK},
		{"localhost:8080", "/api/v1/repeaters", http.StatusOK},
		{"127.0.0.1", "/api/v1/repeaters", http.StatusOK},
		{"[::1]:8080", "/monitor/", http.StatusOK},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+c.path, nil)
		req.Host = c.host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("GET %s with Host %s: %d, want %d: %.200s", c.path, c.host, resp.StatusCode, c.status, raw)
		}
		if c.status == http.StatusForbidden && strings.Contains(string(raw), "acme") {
			t.Errorf("GET %s with Host %s leaked data: %s", c.path, c.host, raw)
		}
	}
	// A rebound page's write: refused, nothing written.
	before := fingerprint(t, st)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/api/v1/repeaters",
		strings.NewReader(`{"domain":"acme","url":"https://example.com/planted"}`))
	req.Host, req.Header["Content-Type"] = "evil.example", []string{"application/json"}
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("rebound POST: %v %v", resp, err)
	}
	if fingerprint(t, st) != before {
		t.Error("a rebound POST wrote")
	}
}

// TestUnauthenticatedBodyAnsweredAtOnce: a request declaring a body it
// never sends gets its 401 at once, not after the server's read timeout.
func TestUnauthenticatedBodyAnsweredAtOnce(t *testing.T) {
	w := startWeb(t, dashboards.WebConfig{APIToken: adminToken}, storetest.NewStore(t), storetest.RedisClient(t),
		dashboards.WithLogger(quietLog))
	for _, path := range []string{"/api/v1/repeaters", "/monitor/api/queues"} {
		conn, err := net.Dial("tcp", w.Addr())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", path, w.Addr())
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		began := time.Now()
		line := make([]byte, 12)
		_, err = io.ReadFull(conn, line)
		conn.Close()
		if err != nil || string(line) != "HTTP/1.1 401" {
			t.Errorf("POST %s with a stalled body: %q, %v after %v; want a 401 at once", path, line, err, time.Since(began))
		}
	}
}

// TestMetricsAuth: loopback requests read /metrics freely by default; a
// token is needed with "token", and nothing with "open".
func TestMetricsAuth(t *testing.T) {
	st, rdb := storetest.NewStore(t), storetest.RedisClient(t)
	for _, c := range []struct {
		mode, host, auth string
		status           int
	}{
		{"", "", "", 200},
		{"", "evil.example", "", 401}, // rebinding to a token-protected server
		{"", "evil.example", "Bearer " + adminToken, 200},
		{dashboards.MetricsToken, "", "", 401},
		{dashboards.MetricsToken, "", "Bearer " + adminToken, 200},
		{dashboards.MetricsToken, "", "Bearer " + "wrong", 401},
		{dashboards.MetricsOpen, "evil.example", "", 200},
	} {
		w := startWeb(t, dashboards.WebConfig{APIToken: adminToken, MetricsAuth: c.mode}, st, rdb, dashboards.WithLogger(quietLog))
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+w.Addr()+"/metrics", nil)
		if c.host != "" {
			req.Host = c.host
		}
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("metrics auth %q, Host %q, %q: %d, want %d", c.mode, c.host, c.auth, resp.StatusCode, c.status)
		}
		_ = w.Stop(context.Background())
	}
	if _, err := dashboards.NewWeb(dashboards.WebConfig{MetricsAuth: "sometimes"}, st, rdb); err == nil {
		t.Error("an unknown metrics auth mode was accepted")
	}
}

// TestMonitorHeaders: asynqmon is served under a CSP of its own (its inline
// scripts by hash, no framing) and the page's other headers.
func TestMonitorHeaders(t *testing.T) {
	_, _, base := webServer(t, dashboards.WebConfig{}, dashboards.WithLogger(quietLog))
	resp, body := webGet(t, base+"/monitor/", "")
	csp := resp.Header.Get("Content-Security-Policy")
	if resp.StatusCode != 200 || !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "'sha256-") ||
		strings.Contains(csp, "script-src 'self' 'unsafe-inline'") || resp.Header.Get("X-Frame-Options") != "DENY" ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("GET /monitor/: %d, headers %v", resp.StatusCode, resp.Header)
	}
	if !strings.Contains(body, "<script>") {
		t.Error("asynqmon's index has no inline script: the hashes would allow nothing")
	}
	resp, _ = webGet(t, base+"/api/v1/stats", "")
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("API answers without the base CSP: %q", csp)
	}
}

// TestReadyzSaysWhetherSecretsAreEncrypted: without REPEATERD_SECRET_KEY
// /readyz says so; with one it names the key.
func TestReadyzSaysWhetherSecretsAreEncrypted(t *testing.T) {
	_, _, base := webServer(t, dashboards.WebConfig{}, dashboards.WithLogger(quietLog))
	if resp, body := webGet(t, base+"/readyz", ""); resp.StatusCode != http.StatusOK || !strings.Contains(body, "NOT ENCRYPTED") {
		t.Errorf("readyz without a key: %d %s", resp.StatusCode, body)
	}
	k, err := store.ParseKeyring(store.NewSecretKey())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenWith(t.Context(), storetest.NewDB(t), store.Options{Secrets: k})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	w := startWeb(t, dashboards.WebConfig{}, st, storetest.RedisClient(t), dashboards.WithLogger(quietLog))
	if _, body := webGet(t, "http://"+w.Addr()+"/readyz", ""); !strings.Contains(body, "encrypted (AES-256-GCM, key "+k.CurrentKeyID()+")") {
		t.Errorf("readyz with a key: %s", body)
	}
}
