// Package dashboards is the web role, which mounts what its subpackages
// build, and the alert rules and Grafana board beside it. Subpackages: api
// (the REST API, the product's write path), metrics (the Prometheus registry
// and collectors), console (the web UI), walstats (the WAL stats consumer,
// the stats role) and auth (the operator token).
//
// # WAL stats
//
// The stats role lives in package walstats: walstats.Consumer keeps
// repeat_record_stats, the records per (domain, repeater, state), exact from
// a logical replication slot, so dashboards never run COUNT(*); where the
// WAL is unavailable (walstats.ErrWALUnavailable) store.RecordCounts serves
// live counts.
//
// # Web
//
// Web (the web role) mounts what its subpackages build: the REST API under
// /api/v1 (package api, behind the operator token of package auth), the
// console at / (package console, passed in with WithPage; without one, / is
// 404),
// /metrics (package metrics: NewRegistry and Handler), /healthz, /readyz and
// asynqmon at /monitor/ (also behind the token). Invariants live in a
// materialized view exported as gauges (metrics.InvariantsCollector);
// alerts.yml and grafana/ sit beside this package.
package dashboards
