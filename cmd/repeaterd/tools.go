//go:build tools

// This file pins dependencies that parts under construction import, so
// `go mod tidy` keeps them. It is removed once every one is imported.
package main

import (
	_ "github.com/bsm/redislock"
	_ "github.com/chromedp/chromedp"
	_ "github.com/hibiken/asynq"
	_ "github.com/hibiken/asynq/x/metrics"
	_ "github.com/hibiken/asynqmon"
	_ "github.com/jackc/pglogrepl"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/redis/go-redis/v9"
	_ "golang.org/x/time/rate"
)
