package dashboards_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"repeaterd/dashboards"
	"repeaterd/dashboards/api"
	"repeaterd/store"
	"repeaterd/store/storetest"
)

// webServer starts a Web on 127.0.0.1:0 over a fresh database and this
// package's Redis DB, and returns it with its base URL.
func webServer(t *testing.T, cfg dashboards.WebConfig, opts ...dashboards.WebOption) (*dashboards.Web, *store.Store, string) {
	t.Helper()
	st := storetest.NewStore(t)
	w := startWeb(t, cfg, st, storetest.RedisClient(t), opts...)
	return w, st, "http://" + w.Addr()
}

func startWeb(t *testing.T, cfg dashboards.WebConfig, st *store.Store, rdb redis.UniversalClient,
	opts ...dashboards.WebOption) *dashboards.Web {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	w, err := dashboards.NewWeb(cfg, st, rdb, opts...)
	if err != nil {
		t.Fatalf("NewWeb: %v", err)
	}
	if err := w.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	return w
}

// webGet sends a GET with an optional Authorization header.
func webGet(t *testing.T, url, auth string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestWebRefusesOpenListenWithoutToken(t *testing.T) {
	st := storetest.NewStore(t)
	rdb := storetest.RedisClient(t)
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:8080", "example.com:8080"} {
		_, err := dashboards.NewWeb(dashboards.WebConfig{Addr: addr}, st, rdb)
		want := "refusing to listen on " + addr + " without REPEATERD_API_TOKEN; set it or listen on 127.0.0.1"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewWeb(%q) without a token: err = %v, want %q", addr, err, want)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0", "localhost:0", "127.0.0.2:0"} {
		w, err := dashboards.NewWeb(dashboards.WebConfig{Addr: addr}, st, rdb)
		if err != nil {
			t.Errorf("NewWeb(%q) on loopback without a token: %v", addr, err)
			continue
		}
		_ = w.Stop(context.Background())
	}
	// With a token, any address is allowed; it is built, never started.
	w, err := dashboards.NewWeb(dashboards.WebConfig{Addr: "0.0.0.0:0", APIToken: "t"}, st, rdb)
	if err != nil {
		t.Fatalf("NewWeb(0.0.0.0:0) with a token: %v", err)
	}
	_ = w.Stop(context.Background())
	if _, err := dashboards.NewWeb(dashboards.WebConfig{Addr: "no-port"}, st, rdb); err == nil {
		t.Error("NewWeb accepted an address without a port")
	}
}

func TestWebAuth(t *testing.T) {
	const token = "s3cret-token"
	_, _, base := webServer(t, dashboards.WebConfig{APIToken: token})
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:"+token))
	for _, path := range []string{"/api/v1/repeaters", "/monitor/", "/monitor/api/queues"} {
		// Basic auth is refused: browsers attach it to cross-site requests on their own.
		for _, auth := range []string{"", "Bearer wrong", "Bearer " + token + "x", "Bearer", token, "Basic Og==", basic} {
			resp, body := webGet(t, base+path, auth)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("GET %s with %q: status %d, want 401", path, auth, resp.StatusCode)
				continue
			}
			var e struct{ Error struct{ Code string } }
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code != "unauthorized" {
				t.Errorf("GET %s with %q: body %s, want a JSON unauthorized error", path, auth, body)
			}
			if resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("GET %s: 401 without WWW-Authenticate", path)
			}
		}
		if resp, body := webGet(t, base+path, "Bearer "+token); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s with the token: status %d: %s", path, resp.StatusCode, body)
		}
	}
	// Health stays open, and /metrics from this machine (MetricsLoopback).
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if resp, body := webGet(t, base+path, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s without a token: status %d: %s", path, resp.StatusCode, body)
		}
	}
}

func TestWebMonitorServesAsynqmon(t *testing.T) {
	_, _, base := webServer(t, dashboards.WebConfig{})
	resp, body := webGet(t, base+"/monitor/", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /monitor/: status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(body, "Asynq monitoring") || !strings.Contains(body, "/monitor/") {
		t.Errorf("GET /monitor/ is not asynqmon's UI rooted at /monitor: %.300s", body)
	}
	if resp, body := webGet(t, base+"/monitor/api/queues", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /monitor/api/queues: status %d: %s", resp.StatusCode, body)
	}
	// Read-only by default: asynqmon's mutating API is refused.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodDelete, base+"/monitor/api/queues/default", nil)
	dresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	dresp.Body.Close()
	if dresp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("DELETE through a read-only asynqmon: status %d, want 405", dresp.StatusCode)
	}
}

func TestWebHealthReadyMetricsAndPage(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "wired_metric 1\n") })
	w, _, base := webServer(t, dashboards.WebConfig{}, dashboards.WithMetricsHandler(metrics))
	for path, want := range map[string]string{
		"/healthz":        `"status":"ok"`,
		"/readyz":         `"postgres":"ok"`,
		"/metrics":        "wired_metric 1",
		"/api/v1/stats":   `"source":"live"`,
		"/api/v1/nowhere": `"code":"not_found"`,
	} {
		resp, body := webGet(t, base+path, "")
		wantStatus := http.StatusOK
		if strings.Contains(want, "not_found") {
			wantStatus = http.StatusNotFound
		}
		if resp.StatusCode != wantStatus || !strings.Contains(body, want) {
			t.Errorf("GET %s: status %d, body %q, want %d containing %q", path, resp.StatusCode, body, wantStatus, want)
		}
	}
	// Without WithPage there is no console: / and unclaimed paths are 404.
	for _, path := range []string{"/", "/no-such-page"} {
		if resp, _ := webGet(t, base+path, ""); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s without a page: status %d, want 404", path, resp.StatusCode)
		}
	}
	// The registry of a whole process is built after the roles: set late.
	w.SetMetricsHandler(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { io.WriteString(rw, "late 1\n") }))
	if _, body := webGet(t, base+"/metrics", ""); body != "late 1\n" {
		t.Errorf("/metrics after SetMetricsHandler: %q", body)
	}
}

func TestWebDefaultMetricsAndPageOption(t *testing.T) {
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "dashboard at "+r.URL.Path) })
	_, _, base := webServer(t, dashboards.WebConfig{}, dashboards.WithPage(page))
	if resp, body := webGet(t, base+"/metrics", ""); resp.StatusCode != http.StatusOK || !strings.Contains(body, "go_goroutines") {
		t.Errorf("default /metrics: status %d, body %.200q", resp.StatusCode, body)
	}
	for _, path := range []string{"/", "/static/app.js"} {
		if _, body := webGet(t, base+path, ""); body != "dashboard at "+path {
			t.Errorf("WithPage does not serve %s: %q", path, body)
		}
	}
}

func TestWebRefusesBadConfig(t *testing.T) {
	st := storetest.NewStore(t)
	rdb := storetest.RedisClient(t)
	for name, cfg := range map[string]dashboards.WebConfig{
		"negative payload limit":    {API: api.Config{MaxPayloadBytes: -1}},
		"negative shutdown timeout": {ShutdownTimeout: -time.Second},
	} {
		if _, err := dashboards.NewWeb(cfg, st, rdb); err == nil {
			t.Errorf("NewWeb with a %s: no error", name)
		}
	}
}

func TestWebReadyzReportsRedisDown(t *testing.T) {
	st := storetest.NewStore(t)
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { dead.Close() })
	w := startWeb(t, dashboards.WebConfig{}, st, dead)
	resp, body := webGet(t, "http://"+w.Addr()+"/readyz", "")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, `"redis":"unavailable"`) ||
		!strings.Contains(body, `"postgres":"ok"`) {
		t.Errorf("readyz with Redis down: status %d, body %s", resp.StatusCode, body)
	}
	if resp, _ := webGet(t, "http://"+w.Addr()+"/healthz", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("healthz with Redis down: status %d, want 200 (the process is up)", resp.StatusCode)
	}
}

func TestWebStopClosesListener(t *testing.T) {
	w, _, base := webServer(t, dashboards.WebConfig{})
	if resp, _ := webGet(t, base+"/healthz", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
	_ = w.Stop(context.Background())
	_ = w.Stop(context.Background()) // idempotent
	http.DefaultClient.CloseIdleConnections()
	if resp, err := http.Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("server still answers after Stop")
	}
}

func TestWebMountsAPIWithItsConfig(t *testing.T) {
	_, _, base := webServer(t, dashboards.WebConfig{API: api.Config{MaxPayloadBytes: 10, AllowPrivateTargets: true}})
	post := func(path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	status, body := post("/api/v1/repeaters", `{"domain":"acme","url":"http://127.0.0.1:1/hook"}`)
	if status != http.StatusCreated {
		t.Fatalf("a private target with AllowPrivateTargets: %d %s", status, body)
	}
	var rep struct{ ID int64 }
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatal(err)
	}
	status, body = post("/api/v1/records", fmt.Sprintf(`{"repeater_id":%d,"payload":"eleven bytes"}`, rep.ID))
	if status != http.StatusRequestEntityTooLarge {
		t.Errorf("a payload over MaxPayloadBytes 10: %d %s, want 413", status, body)
	}
}
