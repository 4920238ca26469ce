package main

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"repeaterd/dashboards"
	"repeaterd/dashboards/metrics"
	"repeaterd/repeaters"
	"repeaterd/repeaters/lifecycle"
	"repeaterd/tasks"
)

// collectorsOf gathers the engine's and the maintenance metrics and those
// of every role that exports its own (the stats consumer, the web role).
func collectorsOf(services []lifecycle.Service) []prometheus.Collector {
	out := append(repeaters.Collectors(), tasks.Collectors()...)
	for _, s := range services {
		if c, ok := s.(interface{ Collectors() []prometheus.Collector }); ok {
			out = append(out, c.Collectors()...)
		}
	}
	return out
}

// roleHealth answers for each role of this process (names[i] is
// services[i], as Engine.Services returns them): the service's Health when
// it has one (the stats consumer), else nil.
func roleHealth(names []string, services []lifecycle.Service) dashboards.RoleHealth {
	return func() map[string]error {
		out := make(map[string]error, len(names))
		for i, name := range names {
			out[name] = nil
			if h, ok := services[i].(interface{ Health() error }); ok {
				out[name] = h.Health()
			}
		}
		return out
	}
}

// newMetricsRegistry builds this process's registry. Database- and
// queue-backed gauges are exported only by the process serving the web role,
// so a fleet of workers does not multiply those queries.
func newMetricsRegistry(eng *tasks.Engine, services []lifecycle.Service, roles dashboards.RoleHealth, withDB bool) (*prometheus.Registry, error) {
	cfg := metrics.Config{Collectors: collectorsOf(services), Version: version, LockTTL: eng.Config().LockTTL, Roles: roles}
	if withDB {
		cfg.Store = eng.Store
		cfg.Inspector = asynq.NewInspectorFromRedisClient(eng.Redis)
	}
	return metrics.NewRegistry(cfg)
}

// serveMetrics puts this process's metrics on the web role's /metrics, with
// the database- and queue-backed gauges, or else on --metrics-addr (with
// /healthz and /readyz beside them, for `repeaterd healthcheck`). /readyz
// details the roles either way.
func serveMetrics(o runOptions, eng *tasks.Engine, services *[]lifecycle.Service, roles dashboards.RoleHealth) error {
	var web *dashboards.Web
	for _, s := range *services {
		if w, ok := s.(*dashboards.Web); ok {
			web = w
		}
	}
	if web == nil && o.metricsAddr == "" {
		return nil
	}
	reg, err := newMetricsRegistry(eng, *services, roles, web != nil)
	if err != nil {
		return err
	}
	if web != nil {
		web.SetMetricsHandler(metrics.Handler(reg))
		web.SetRoleHealth(roles)
		return nil
	}
	*services = append(*services, &metricsServer{addr: o.metricsAddr, handler: metrics.Handler(reg),
		ready: dashboards.ReadyHandler(eng.Store, eng.Redis, roles, eng.Logger)})
	return nil
}

// metricsServer serves /metrics, /healthz and /readyz for processes
// without the web role.
type metricsServer struct {
	addr    string
	handler http.Handler
	ready   http.Handler
	life    lifecycle.Base
}

func (m *metricsServer) Start(ctx context.Context) error {
	return m.life.Start(ctx, func(ctx context.Context) error {
		ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", m.addr)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", m.handler)
		mux.Handle("GET /readyz", m.ready)
		mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) { _, _ = rw.Write([]byte(`{"status":"ok"}`)) })
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		m.life.Go(func() { _ = srv.Serve(ln) }) // ErrServerClosed on Stop
		m.life.Go(func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		})
		return nil
	})
}

func (m *metricsServer) Stop(ctx context.Context) error { return m.life.Stop(ctx, nil) }
