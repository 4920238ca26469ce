package main

import (
	"context"

	"repeaterd/dashboards"
	"repeaterd/tasks"
)

func init() {
	roleBuilders["stats"] = func(_ context.Context, _ runOptions, eng *tasks.Engine) (tasks.Service, error) {
		return dashboards.NewStatsConsumer(eng.Store, dashboards.StatsConfig{DatabaseURL: eng.DatabaseURL(), Logger: eng.Logger})
	}
}
