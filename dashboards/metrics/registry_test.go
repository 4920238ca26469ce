package metrics_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"repeaterd/dashboards"
	"repeaterd/dashboards/metrics"
	"repeaterd/dashboards/walstats"
	"repeaterd/repeaters"
	"repeaterd/store"
	"repeaterd/store/storetest"
)

// fullRegistry builds the registry a process running every role would: the
// store and asynq collectors, the engine's and the stats consumer's.
func fullRegistry(t *testing.T, db *metricsDB, extra ...prometheus.Collector) (*prometheus.Registry, *asynq.Client) {
	t.Helper()
	// The web role's request metric has series once it served a request.
	// (RedisClient empties the test binary's Redis DB: before any enqueue.)
	web, err := dashboards.NewWeb(dashboards.WebConfig{}, db.s, storetest.RedisClient(t))
	if err != nil {
		t.Fatal(err)
	}
	web.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/healthz", nil))
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
	cs = append(cs, web.Collectors()...)
	reg, err := metrics.NewRegistry(metrics.Config{
		Store:      db.s,
		Inspector:  inspector,
		Collectors: append(cs, extra...),
		Version:    "test",
		LockTTL:    30 * time.Second,
		Roles: func() map[string]error {
			return map[string]error{"web": nil, "stats": errors.New("degraded: no slot")}
		},
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
		metrics.InvariantsLastRefresh,
		metrics.RepeatersInBackoff,
		metrics.RepeatersPaced,
		`asynq_queue_size{queue="repeaters"}`,
		`asynq_queue_latency_seconds{queue="repeaters"}`,
		`repeaterd_deliveries_total{outcome="success"}`,
		"repeaterd_dispatcher_leader",
		"repeaterd_stats_lag_bytes",
		"repeaterd_test_extra_total",
		`repeaterd_ready_records{state="pending"}`,
		metrics.OldestReadyAge,
		metrics.LockTTL,
		`repeaterd_role_up{role="web"}`,
		`repeaterd_http_request_duration_seconds{code="200",method="GET",route="GET /healthz"}_count`,
	} {
		if _, ok := got[key]; !ok {
			t.Errorf("%s missing from the scrape", key)
		}
	}
	for _, c := range store.InvariantChecks {
		if v, ok := got[metrics.InvariantViolations+`{check="`+c+`"}`]; !ok || v != 0 {
			t.Errorf("invariant %s: %v (present %v), want 0", c, v, ok)
		}
	}
	if got[`repeaterd_role_up{role="web"}`] != 1 || got[`repeaterd_role_up{role="stats"}`] != 0 || got[metrics.LockTTL] != 30 {
		t.Errorf("role_up web %v, stats %v, lock TTL %v; want 1, 0 (degraded), 30", got[`repeaterd_role_up{role="web"}`],
			got[`repeaterd_role_up{role="stats"}`], got[metrics.LockTTL])
	}
	var build bool
	for k, v := range got {
		build = build || strings.HasPrefix(k, metrics.BuildInfo+`{goversion="go`) && strings.Contains(k, `version="test"`) && v == 1
	}
	if !build {
		t.Errorf("no %s{version=\"test\",goversion=...} 1 in the scrape", metrics.BuildInfo)
	}
	if got[`asynq_queue_size{queue="repeaters"}`] != 1 || got["repeaterd_test_extra_total"] != 3 ||
		got[metrics.RepeatersInBackoff] != 0 {
		t.Fatalf("queue size %v, extra %v, in backoff %v; want 1, 3, 0", got[`asynq_queue_size{queue="repeaters"}`],
			got["repeaterd_test_extra_total"], got[metrics.RepeatersInBackoff])
	}

	// Computed at scrape time: a backoff and a task show on the next scrape.
	r := storetest.Repeater(t, db.s, storetest.RepeaterOpts{Domain: "dash"})
	if err := db.s.SetBackoff(bg, r.ID, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Enqueue(asynq.NewTask("test:noop", nil), asynq.Queue("repeaters"), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	db.exec(`UPDATE repeaters SET pace_per_s = 2.5 WHERE id = $1`, r.ID)
	got = scrape(t, reg)
	if got[metrics.RepeatersPaced] != 1 {
		t.Errorf("paced = %v after one repeater was paced; want 1", got[metrics.RepeatersPaced])
	}
	if got[metrics.RepeatersInBackoff] != 1 || got[`asynq_queue_size{queue="repeaters"}`] != 2 {
		t.Fatalf("after a backoff and an enqueue: in backoff %v, queue size %v; want 1, 2",
			got[metrics.RepeatersInBackoff], got[`asynq_queue_size{queue="repeaters"}`])
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

	srv := httptest.NewServer(metrics.Handler(reg))
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
	reg, err := metrics.NewRegistry(metrics.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for name := range scrape(t, reg) {
		if !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("a bare registry exports %s", name)
		}
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "repeaterd_test_twice_total", Help: "x"})
	if _, err := metrics.NewRegistry(metrics.Config{Collectors: []prometheus.Collector{c, c}}); err == nil {
		t.Fatal("registering a collector twice: no error")
	}
}

func TestHandlerServesWhatItCanWhenACollectorFails(t *testing.T) {
	reg, err := metrics.NewRegistry(metrics.Config{
		Collectors: []prometheus.Collector{metrics.NewInvariantsCollector(downReader{})},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(metrics.Handler(reg))
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
		if strings.Contains(string(body), metrics.InvariantViolations) {
			t.Fatalf("a failed read was served as a value:\n%s", body)
		}
	}
}
