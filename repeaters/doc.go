// Package repeaters holds the delivery engine's domain logic: the dispatcher
// loop and its round-robin order, repeater locks, rate limits, the HTTP
// sender with its SSRF guard and outcome classification, the backoff policy
// and the legacy per-record path.
//
// Time comes from one Clock wherever backoff, rate, readiness or a retry is
// decided, so tests can run it on a FakeClock. The dispatcher, processor and
// legacy sender report what they did through optional hooks
// (DispatcherConfig.OnPass, Processor.OnRecorded and OnApplied,
// Legacy.OnSent), so tests wait on an event instead of sleeping.
//
// It knows nothing of asynq (tasks/ adapts it) and reaches Postgres only
// through store/.
package repeaters
