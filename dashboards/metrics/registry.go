// Package metrics builds a process's Prometheus registry and its /metrics
// handler: the Go and process collectors, the collectors the roles bring
// (the engine's, the WAL stats consumer's), and the gauges read from the
// database and Redis at scrape time (the invariants, repeaters in backoff,
// asynq's queues). Labels never name a domain or a repeater (cardinality):
// per-tenant numbers live on the web console, not in Prometheus.
package metrics

import (
	"fmt"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"repeaterd/store"
)

// scrapeTimeout bounds each database read a collector makes during a scrape,
// so a stuck database cannot hold a scrape past Prometheus's own timeout.
const scrapeTimeout = 5 * time.Second

// Config says what a process's /metrics exports.
type Config struct {
	// Store, when set, adds the metrics read from Postgres at scrape time:
	// the invariants (InvariantsCollector), repeaterd_repeaters_in_backoff
	// and the backlog (repeaterd_ready_records, repeaterd_oldest_ready_age_seconds).
	// They describe the database, not the process, so one role per
	// deployment (the web role) should export them; alert rules take max()
	// across instances all the same. Defaults to none.
	Store *store.Store
	// Inspector, when set, adds the queue collector (asynq_queue_size,
	// asynq_queue_latency_seconds, asynq_tasks{queue,state}, ...; see
	// queues.go), read from Redis at scrape time; like Store, one role
	// should set it. Defaults to none.
	Inspector *asynq.Inspector
	// Collectors are registered as they are: the engine's
	// (repeaters.Collectors()) in the dispatcher and worker roles, the stats
	// consumer's (walstats.Consumer.Collectors()) in the stats role.
	// Defaults to none.
	Collectors []prometheus.Collector
	// Version, when set, adds repeaterd_build_info{version, revision,
	// goversion}. Defaults to none.
	Version string
	// LockTTL, when set, adds repeaterd_lock_ttl_seconds. Defaults to none.
	LockTTL time.Duration
	// Roles, when set, adds repeaterd_role_up{role} from its answer: the
	// roles this process runs, each with nil or why it is degraded.
	// Defaults to none.
	Roles func() map[string]error
}

// NewRegistry returns a registry holding the Go runtime and process
// collectors and everything cfg names. Registering two collectors that export
// the same metric is an error.
func NewRegistry(cfg Config) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
	if cfg.Store != nil {
		cs = append(cs, NewInvariantsCollector(cfg.Store), newHeldBackCollector(cfg.Store),
			newBacklogCollector(cfg.Store))
	}
	if cfg.Inspector != nil {
		cs = append(cs, newQueuesCollector(cfg.Inspector))
	}
	if cfg.Version != "" {
		cs = append(cs, newBuildInfo(cfg.Version))
	}
	if cfg.LockTTL > 0 {
		cs = append(cs, newLockTTL(cfg.LockTTL.Seconds()))
	}
	if cfg.Roles != nil {
		cs = append(cs, newRolesCollector(cfg.Roles))
	}
	cs = append(cs, cfg.Collectors...)
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register %T: %w", c, err)
		}
	}
	return reg, nil
}

// Handler serves g in the Prometheus exposition format, for /metrics. A
// collector that fails (the database or Redis is down) is left out of the
// scrape and logged in promhttp_metric_handler_errors_total; the rest is
// still served.
func Handler(g prometheus.Gatherer) http.Handler {
	opts := promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}
	if reg, ok := g.(prometheus.Registerer); ok {
		opts.Registry = reg
	}
	return promhttp.HandlerFor(g, opts)
}
