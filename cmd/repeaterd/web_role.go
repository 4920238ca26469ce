package main

import (
	"context"
	"repeaterd/repeaters/lifecycle"

	"repeaterd/dashboards"
	"repeaterd/tasks"
)

// The web role: the JSON API, /healthz, /readyz, /metrics, asynqmon at
// /monitor/ and the dashboard at /, on the engine's Postgres pool and Redis
// client.
func init() {
	roleBuilders["web"] = func(_ context.Context, o runOptions, eng *tasks.Engine) (lifecycle.Service, error) {
		page := dashboards.NewPage(eng.Store, dashboards.PageOptions{APIToken: o.apiToken, Logger: eng.Logger})
		return dashboards.NewWeb(webConfig(o), eng.Store, eng.Redis, dashboards.WithLogger(eng.Logger), dashboards.WithPage(page))
	}
}

// webConfig maps `run`'s flags onto the web role's config.
func webConfig(o runOptions) dashboards.WebConfig {
	return dashboards.WebConfig{
		Addr:                o.httpAddr,
		APIToken:            o.apiToken,
		MaxPayloadBytes:     o.maxPayloadBytes,
		AllowPrivateTargets: o.allowPrivate,
	}
}
