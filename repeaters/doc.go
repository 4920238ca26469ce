// Package repeaters holds the delivery engine's domain logic: the dispatcher
// loop and its round-robin order, repeater locks, rate limits, the HTTP
// sender with its SSRF guard and outcome classification, the backoff policy
// and the legacy per-record path.
//
// It knows nothing of asynq (tasks/ adapts it) and reaches Postgres only
// through store/.
package repeaters
