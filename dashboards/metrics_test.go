package dashboards_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"repeaterd/dashboards"
	"repeaterd/dashboards/walstats"
	"repeaterd/repeaters"
	"repeaterd/store"
	"repeaterd/store/storetest"
)

// fullRegistry builds the registry a process running every role would: the
// store and asynq collectors, the engine's and the stats consumer's.
func fullRegistry(t *testing.T, db *metricsDB, extra ...prometheus.Collector) (*prometheus.Registry, *asynq.Client) {
	t.Helper()
	opt, err := asynq.ParseRedisURI(storetest.RedisDB(t))
	if err != nil {
		t.Fatal(err)
	}
	inspector := asynq.NewInspector(opt)
	t.Cleanup(func() { inspector.Close() })
	client := asynq.NewClient(opt)
	t.Cleanup(func() { client.Close() })
	// Queues exist once a task was enqueued; the collector reports those.
	if _, err := client.Enqueue(asynq.NewTask("test:noop", nil), asynq.Queue("repeaters"), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	stats, err := walstats.New(db.s, walstats.Config{DatabaseURL: db.url})
	if err != nil {
		t.Fatal(err)
	}
	cs := append(repeaters.Collectors(), stats.Collectors()...)
	reg, err := dashboards.NewRegistry(dashboards.MetricsConfig{
		Store:      db.s,
		Inspector:  inspector,
		Collectors: append(cs, extra...),
	})
	if err != nil {
		t.Fatal(err)
	}
	return reg, client
}

func TestRegistryExportsEveryRole(t *testing.T) {
	db := newMetricsDB(t)
	extra := prometheus.NewCounter(prometheus.CounterOpts{Name: "repeaterd_test_extra_total", Help: "A caller's own."})
	extra.Add(3)
	reg, client := fullRegistry(t, db, extra)

	got := scrape(t, reg)
	for _, key := range []string{
		"go_goroutines", // Go runtime
		"process_start_time_seconds",
		dashboards.MetricInvariantsLastRefresh,
		dashboards.MetricRepeatersInBackoff,
		`asynq_queue_size{queue="repeaters"}`,
		`asynq_queue_latency_seconds{queue="repeaters"}`,
		`repeaterd_deliveries_total{outcome="success"}`,
		"repeaterd_dispatcher_leader",
		"repeaterd_stats_lag_bytes",
		"repeaterd_test_extra_total",
	} {
		if _, ok := got[key]; !ok {
			t.Errorf("%s missing from the scrape", key)
		}
	}
	for _, c := range store.InvariantChecks {
		if v, ok := got[dashboards.MetricInvariantViolations+`{check="`+c+`"}`]; !ok || v != 0 {
			t.Errorf("invariant %s: %v (present %v), want 0", c, v, ok)
		}
	}
	if got[`asynq_queue_size{queue="repeaters"}`] != 1 || got["repeaterd_test_extra_total"] != 3 ||
		got[dashboards.MetricRepeatersInBackoff] != 0 {
		t.Fatalf("queue size %v, extra %v, in backoff %v; want 1, 3, 0", got[`asynq_queue_size{queue="repeaters"}`],
			got["repeaterd_test_extra_total"], got[dashboards.MetricRepeatersInBackoff])
	}

	// Computed at scrape time: a backoff and a task show on the next scrape.
	id := db.repeater("dash")
	if err := db.s.SetBackoff(bg, id, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Enqueue(asynq.NewTask("test:noop", nil), asynq.Queue("repeaters"), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got = scrape(t, reg)
	if got[dashboards.MetricRepeatersInBackoff] != 1 || got[`asynq_queue_size{queue="repeaters"}`] != 2 {
		t.Fatalf("after a backoff and an enqueue: in backoff %v, queue size %v; want 1, 2",
			got[dashboards.MetricRepeatersInBackoff], got[`asynq_queue_size{queue="repeaters"}`])
	}

	// No series may name a tenant or an endpoint (cardinality).
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if n := l.GetName(); strings.Contains(n, "domain") || strings.Contains(n, "repeater") {
					t.Errorf("%s has a per-tenant label %q", mf.GetName(), n)
				}
			}
		}
	}

	srv := httptest.NewServer(dashboards.Handler(reg))
	defer srv.Close()
	res, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", res.Status)
	}
	for _, line := range []string{
		"repeaterd_repeaters_in_backoff 1",
		`repeaterd_invariant_violations{check="stats_drift"} 0`,
		`asynq_queue_size{queue="repeaters"} 2`,
	} {
		if !strings.Contains(string(body), line+"\n") {
			t.Errorf("GET /metrics lacks %q", line)
		}
	}
}

func TestRegistryOnlyWhatIsGiven(t *testing.T) {
	reg, err := dashboards.NewRegistry(dashboards.MetricsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for name := range scrape(t, reg) {
		if !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("a bare registry exports %s", name)
		}
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "repeaterd_test_twice_total", Help: "x"})
	if _, err := dashboards.NewRegistry(dashboards.MetricsConfig{Collectors: []prometheus.Collector{c, c}}); err == nil {
		t.Fatal("registering a collector twice: no error")
	}
}

func TestHandlerServesWhatItCanWhenACollectorFails(t *testing.T) {
	reg, err := dashboards.NewRegistry(dashboards.MetricsConfig{
		Collectors: []prometheus.Collector{dashboards.NewInvariantsCollector(downReader{})},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(dashboards.Handler(reg))
	defer srv.Close()
	for range 2 { // the error counter counts the first failure on the second scrape
		res, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "go_goroutines") {
			t.Fatalf("GET /metrics with a failing collector: %s\n%.300s", res.Status, body)
		}
		if strings.Contains(string(body), dashboards.MetricInvariantViolations) {
			t.Fatalf("a failed read was served as a value:\n%s", body)
		}
	}
}

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
	raw, err := os.ReadFile("grafana/repeaterd.json")
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
		raw, err := os.ReadFile(file)
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
