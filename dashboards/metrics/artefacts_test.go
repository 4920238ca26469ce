package metrics_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"repeaterd/dashboards/metrics"
)

// The Grafana dashboard and the alert rules sit in dashboards/, beside this
// package: every metric they name must be one a deployment exports.

// knownMetrics is every metric family a full deployment exports, with the
// series names a histogram adds.
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	reg, _ := fullRegistry(t, newMetricsDB(t))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, mf := range mfs {
		known[mf.GetName()] = true
		if mf.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				known[mf.GetName()+s] = true
			}
		}
	}
	return known
}

// ourMetric matches the names repeaterd and asynq export in PromQL text.
var ourMetric = regexp.MustCompile(`\b(?:repeaterd|asynq)_[a-z0-9_]+\b`)

func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile("../grafana/repeaterd.json")
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr string `json:"expr"`
	}
	type panel struct {
		Type    string   `json:"type"`
		Title   string   `json:"title"`
		Targets []target `json:"targets"`
	}
	var dash struct {
		UID    string  `json:"uid"`
		Title  string  `json:"title"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana/repeaterd.json: %v", err)
	}
	if dash.UID != "repeaterd-overview" {
		t.Fatalf("uid = %q, want repeaterd-overview (links depend on it)", dash.UID)
	}
	known := knownMetrics(t)
	seen := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			names := ourMetric.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: %q names no repeaterd or asynq metric", p.Title, tg.Expr)
			}
			for _, n := range names {
				seen[n] = true
				if !known[n] {
					t.Errorf("panel %q: %s is not a metric repeaterd exports", p.Title, n)
				}
			}
		}
	}
	// The panels the overview promises.
	for _, n := range []string{
		"repeaterd_deliveries_total", "repeaterd_delivery_duration_seconds_bucket",
		"repeaterd_dispatcher_pass_duration_seconds_bucket", "repeaterd_dispatcher_ready_repeaters",
		"repeaterd_repeaters_in_backoff", "repeaterd_dispatcher_skips_total", "asynq_queue_latency_seconds",
		"asynq_queue_size", "repeaterd_stats_lag_bytes", "repeaterd_invariant_violations",
		"repeaterd_ready_records", "repeaterd_oldest_ready_age_seconds", "repeaterd_http_request_duration_seconds_bucket",
		"repeaterd_role_up", "repeaterd_stats_heartbeat_timestamp_seconds",
	} {
		if !seen[n] {
			t.Errorf("no panel shows %s", n)
		}
	}
}

// promtool proves alerts.yml is valid PromQL, not that its metric names
// exist: a typo would make an alert silently never fire.
func TestAlertRulesNameExportedMetrics(t *testing.T) {
	known := knownMetrics(t)
	for _, file := range []string{"alerts.yml", "alerts_test.yml"} {
		raw, err := os.ReadFile(filepath.Join("..", file))
		if err != nil {
			t.Fatal(err)
		}
		// Every mention, annotations included: they name metrics to look at.
		names := ourMetric.FindAllString(string(raw), -1)
		if len(names) == 0 {
			t.Fatalf("%s: no metric names found", file)
		}
		for _, n := range slices.Compact(slices.Sorted(slices.Values(names))) {
			if !known[n] {
				t.Errorf("%s: %s is not a metric repeaterd exports", file, n)
			}
		}
	}
}

// promtool check metrics lints a scrape: naming (a gauge named _total, a
// counter without it), units, help. The full registry must pass clean.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (scripts/promtool.sh installs it)")
	}
	reg, _ := fullRegistry(t, newMetricsDB(t))
	srv := httptest.NewServer(metrics.Handler(reg))
	defer srv.Close()
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = res.Body
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
