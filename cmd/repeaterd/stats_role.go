package main

import (
	"context"
	"repeaterd/repeaters/lifecycle"

	"repeaterd/dashboards"
	"repeaterd/tasks"
)

func init() {
	roleBuilders["stats"] = func(_ context.Context, _ runOptions, eng *tasks.Engine) (lifecycle.Service, error) {
		return dashboards.NewStatsConsumer(eng.Store, dashboards.StatsConfig{DatabaseURL: eng.DatabaseURL(), Logger: eng.Logger})
	}
}
