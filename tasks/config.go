package tasks

import (
	"cmp"
	"errors"
	"time"

	"repeaterd/repeaters"
	"repeaterd/store"
)

// EngineConfig is everything the engine's roles are configured with: one
// struct per concern. The zero value of every field means its default, and
// WithDefaults fills them in one place.
type EngineConfig struct {
	// DatabaseURL is Postgres's URL. Required.
	DatabaseURL string
	// RedisURL is Redis's URL. Required.
	RedisURL string
	// LegacyByDefault sends domains without a process_repeaters row down the
	// legacy per-record path. Defaults to false (the dispatcher's path).
	LegacyByDefault bool
	// LockTTL is a repeater lock's lifetime while unrenewed: how long a
	// crashed worker blocks its repeater. Defaults to 30s.
	LockTTL time.Duration
	// Sender is the HTTP sender's settings. Its MaxRetryAfter defaults to
	// Backoff.Max.
	Sender repeaters.SenderConfig
	// Backoff is the repeater backoff policy.
	Backoff repeaters.BackoffPolicy
	// Dispatcher is the dispatcher role's settings.
	Dispatcher repeaters.DispatcherConfig
	// Worker is the worker role's settings.
	Worker WorkerConfig
	// Legacy is the legacy path's settings.
	Legacy LegacyConfig
	// Scheduler is the scheduler role's periodic tasks.
	Scheduler SchedulerConfig
	// Secrets seals repeaters' signing secrets and header values at rest
	// (store.ParseKeyring of REPEATERD_SECRET_KEY). Defaults to none: they
	// are stored in plaintext, which `run` warns about.
	Secrets *store.Keyring `json:"-"`
	// MaxTimeout is the longest per-request timeout (timeout_ms) a repeater
	// may be given: a hung endpoint holds a worker slot that long. Defaults
	// to 120s.
	MaxTimeout time.Duration
	// Clock tells the time wherever backoff, rate or expiry is decided.
	// Defaults to the system clock.
	Clock repeaters.Clock `json:"-"`
}

// LegacyConfig configures the legacy per-record path.
type LegacyConfig struct {
	// Schedule is each record's own retry schedule. Its Max defaults to
	// Backoff.Max.
	Schedule repeaters.LegacySchedule
	// Claim is check_repeaters' lease on a queued record, and so how long a
	// send task lost with Redis delays its record. Defaults to 5m.
	Claim time.Duration
}

// Scheduler defaults.
const (
	DefaultCheckInterval      = 10 * time.Second
	DefaultInvariantsInterval = 30 * time.Minute
	DefaultPurgeInterval      = time.Hour
	DefaultRetention          = 30 * 24 * time.Hour
	// DefaultInvariantsStartupDelay leaves a deploy time to settle before
	// the refresh after start.
	DefaultInvariantsStartupDelay = 2 * time.Minute
)

// SchedulerConfig configures the scheduler role's periodic tasks.
type SchedulerConfig struct {
	// CheckInterval is how often check_repeaters runs. Defaults to 10s.
	CheckInterval time.Duration
	// InvariantsInterval is how often the invariants view is refreshed.
	// Defaults to 30m.
	InvariantsInterval time.Duration
	// PurgeInterval is how often the retention purge runs. Defaults to 1h.
	PurgeInterval time.Duration
	// Retention is how long terminal records are kept after they complete.
	// Defaults to 720h.
	Retention time.Duration
	// InvariantsStartupDelay is how long after the scheduler starts it
	// enqueues one invariants refresh (besides the periodic ones). Defaults
	// to 2m.
	InvariantsStartupDelay time.Duration
}

// WithDefaults returns c with every zero field set to its default.
func (c SchedulerConfig) WithDefaults() SchedulerConfig {
	c.CheckInterval = cmp.Or(c.CheckInterval, DefaultCheckInterval)
	c.InvariantsInterval = cmp.Or(c.InvariantsInterval, DefaultInvariantsInterval)
	c.PurgeInterval = cmp.Or(c.PurgeInterval, DefaultPurgeInterval)
	c.Retention = cmp.Or(c.Retention, DefaultRetention)
	c.InvariantsStartupDelay = cmp.Or(c.InvariantsStartupDelay, DefaultInvariantsStartupDelay)
	return c
}

// WithDefaults returns c with every zero field set to its default.
func (c EngineConfig) WithDefaults() EngineConfig {
	c.LockTTL = cmp.Or(c.LockTTL, repeaters.DefaultLockTTL)
	c.Backoff = c.Backoff.WithDefaults()
	c.Sender.MaxRetryAfter = cmp.Or(c.Sender.MaxRetryAfter, c.Backoff.Max)
	c.MaxTimeout = cmp.Or(c.MaxTimeout, store.DefaultMaxTimeout)
	// Requests obey the cap as it is now, not as it was when a repeater was saved.
	c.Sender.MaxTimeout = c.MaxTimeout
	c.Sender = c.Sender.WithDefaults()
	c.Legacy.Schedule.Max = cmp.Or(c.Legacy.Schedule.Max, c.Backoff.Max)
	c.Legacy.Schedule = c.Legacy.Schedule.WithDefaults()
	c.Legacy.Claim = cmp.Or(c.Legacy.Claim, repeaters.DefaultLegacyClaim)
	c.Dispatcher = c.Dispatcher.WithDefaults()
	c.Worker = c.Worker.WithDefaults()
	c.Scheduler = c.Scheduler.WithDefaults()
	if c.Clock == nil {
		c.Clock = repeaters.SystemClock{}
	}
	c.Dispatcher.Clock, c.Sender.Clock = c.Clock, c.Clock
	return c
}

// validate rejects settings the engine cannot run with.
func (c EngineConfig) validate() error {
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("DATABASE_URL is not set"))
	}
	if c.RedisURL == "" {
		errs = append(errs, errors.New("REDIS_URL is not set"))
	}
	for name, d := range map[string]time.Duration{
		"lock TTL": c.LockTTL, "legacy claim": c.Legacy.Claim, "check interval": c.Scheduler.CheckInterval,
		"invariants interval": c.Scheduler.InvariantsInterval, "retention": c.Scheduler.Retention,
		"drain timeout": c.Worker.DrainTimeout, "invariants startup delay": c.Scheduler.InvariantsStartupDelay,
		"max timeout": c.MaxTimeout,
	} {
		if d < 0 {
			errs = append(errs, errors.New(name+" must not be negative"))
		}
	}
	if err := c.Dispatcher.Validate(); err != nil {
		errs = append(errs, err)
	}
	if _, err := repeaters.ParseEgressProxy(c.Sender.EgressProxy); err != nil {
		errs = append(errs, err)
	}
	if c.Worker.Concurrency < 0 {
		errs = append(errs, errors.New("worker concurrency must not be negative"))
	}
	return errors.Join(errs...)
}
