// Package dashboards is what operators look at: the WAL stats consumer, the
// consistency invariants, the Prometheus metrics, the web dashboard and the
// alert rules.
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
// Web (the web role) serves the JSON API under /api/v1, the dashboard page
// at / (NewPage: counts by domain and state, repeaters in backoff, invariant
// status, a delivery-rate chart and the domain flags, server-rendered and
// refreshing itself), /metrics (NewRegistry), /healthz, /readyz and asynqmon
// at /monitor/. Invariants live in a materialized view exported as gauges
// (InvariantsCollector); alerts.yml and grafana/ sit beside this package.
package dashboards
