package dashboards_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"repeaterd/dashboards"
)

// A stats role that cannot consume its slot leaves the process ready (its
// other roles serve) but degraded, and says which role and why.
func TestReadyzDetailsRoles(t *testing.T) {
	w, _, base := webServer(t, dashboards.WebConfig{})
	_, body := webGet(t, base+"/readyz", "")
	if strings.Contains(body, `"roles"`) || !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("readyz before roles are known: %s", body)
	}
	w.SetRoleHealth(func() map[string]error {
		return map[string]error{"web": nil, "stats": errors.New("slot belongs to database other")}
	})
	resp, body := webGet(t, base+"/readyz", "")
	var got struct {
		Status string            `json:"status"`
		Roles  map[string]string `json:"roles"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || got.Status != dashboards.ReadyDegraded || got.Roles["web"] != "ok" ||
		got.Roles["stats"] != "degraded: slot belongs to database other" {
		t.Fatalf("readyz with the stats role degraded: %d %s", resp.StatusCode, body)
	}
}

// The access log has every request but no token, wherever the client put it.
func TestAccessLogAndRequestMetric(t *testing.T) {
	var buf lockedBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	const secret = "s3cr3t-token-value"
	w, _, base := webServer(t, dashboards.WebConfig{APIToken: secret}, dashboards.WithLogger(logger))
	webGet(t, base+"/api/v1/records/12345?token="+secret, "Bearer "+secret)
	webGet(t, base+"/api/v1/records/1", "Bearer wrong-"+secret)
	webGet(t, base+"/healthz", "")

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err == nil && m["msg"] == "http request" {
			lines = append(lines, m)
		}
	}
	if strings.Contains(buf.String(), secret) {
		t.Fatalf("a token reached the log:\n%s", buf.String())
	}
	if len(lines) != 3 {
		t.Fatalf("access log has %d requests, want 3:\n%s", len(lines), buf.String())
	}
	first := lines[0]
	if first["path"] != "/api/v1/records/12345" || first["status"] != float64(404) || first["level"] != "INFO" ||
		first["route"] != "GET /api/v1/records/{id}" {
		t.Errorf("first request logged as %v", first)
	}
	if lines[1]["status"] != float64(http.StatusUnauthorized) {
		t.Errorf("unauthorized request logged as %v", lines[1])
	}
	if lines[2]["level"] != "DEBUG" {
		t.Errorf("the probe is logged at %v, want DEBUG", lines[2]["level"])
	}

	// The metric's route is the pattern: one series for every record id.
	var hist prometheus.Collector
	for _, c := range w.Collectors() {
		hist = c
	}
	text := gatherText(t, hist)
	if !strings.Contains(text, `value:"GET /api/v1/records/{id}"`) || strings.Contains(text, "12345") {
		t.Errorf("want one series for the API route pattern, none naming the id:\n%s", text)
	}
}

func gatherText(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			b.WriteString(m.String() + "\n")
		}
	}
	return b.String()
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
