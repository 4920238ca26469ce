package main

import (
	"context"

	"repeaterd/dashboards"
	"repeaterd/dashboards/api"
	"repeaterd/dashboards/auth"
	"repeaterd/dashboards/console"
	"repeaterd/dashboards/walstats"
	"repeaterd/repeaters/lifecycle"
	"repeaterd/tasks"
)

// dashboardRoles builds the roles that live in dashboards/: the WAL stats
// consumer and the web role (the JSON API, /healthz, /readyz, /metrics,
// asynqmon at /monitor/ and the dashboard at /), on the engine's Postgres
// pool and Redis client (asynqmon opens its own from the engine's parsed
// REDIS_URL, so it follows a Sentinel master or a cluster too).
func dashboardRoles(o runOptions) map[string]tasks.RoleBuilder {
	return map[string]tasks.RoleBuilder{
		tasks.RoleStats: func(_ context.Context, eng *tasks.Engine) (lifecycle.Service, error) {
			return walstats.New(eng.Store, walstats.Config{DatabaseURL: eng.DatabaseURL(), SlotName: o.statsSlot, Logger: eng.Logger})
		},
		tasks.RoleWeb: func(_ context.Context, eng *tasks.Engine) (lifecycle.Service, error) {
			page, err := console.New(eng.Store, console.Config{
				Token: auth.NewToken(o.apiToken), MonitorURL: dashboards.MonitorPath + "/", Logger: eng.Logger,
				Clock: eng.Config().Clock, Jobs: eng.Client, Prober: eng.Sender,
			})
			if err != nil {
				return nil, err
			}
			return dashboards.NewWeb(dashboards.WebConfig{
				Addr:        o.httpAddr,
				APIToken:    o.apiToken,
				MetricsAuth: o.metricsAuth,
				API: api.Config{
					MaxPayloadBytes:     o.maxPayloadBytes,
					AllowPrivateTargets: eng.Config().Sender.AllowPrivateTargets,
					Sender:              eng.Sender,
					Jobs:                eng.Client,
				},
			}, eng.Store, eng.Redis, dashboards.WithLogger(eng.Logger), dashboards.WithPage(page),
				dashboards.WithMonitorRedis(eng.RedisOptions().WithPoolSize(4)))
		},
	}
}
