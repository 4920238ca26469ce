package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"repeaterd/repeaters"
	"repeaterd/store"
	"repeaterd/tasks"
)

// bindEngineFlags binds the engine's flags to cfg's fields, with the
// engine's defaults shown in --help. `run` and `bench` both call it, so the
// bench always runs the engine `run` would.
func bindEngineFlags(f *pflag.FlagSet, c *tasks.EngineConfig) {
	f.BoolVar(&c.Sender.AllowPrivateTargets, "allow-private-targets", false, "let repeaters reach loopback and private addresses")
	f.StringVar(&c.Sender.EgressProxy, "egress-proxy", "", "HTTP proxy URL every request to endpoints leaves through (HTTP CONNECT for https); the SSRF policy still applies to destinations")
	f.IntVar(&c.Sender.MaxInFlight, "max-inflight", repeaters.DefaultSenderMaxInFlight, "process-wide cap on in-flight HTTP requests")
	f.DurationVar(&c.Backoff.Min, "backoff-min", repeaters.DefaultBackoffMin, "first repeater backoff")
	f.DurationVar(&c.Backoff.Max, "backoff-max", repeaters.DefaultBackoffMax, "longest repeater backoff (and Retry-After cap)")
	f.Float64Var(&c.Backoff.Jitter, "backoff-jitter", repeaters.DefaultBackoffJitter, "backoff jitter, a fraction")
	f.IntVar(&c.Backoff.MaxWorkers, "max-repeater-workers", 0, "cap on any repeater's max_workers (0 = none)")
	f.DurationVar(&c.LockTTL, "lock-ttl", repeaters.DefaultLockTTL, "repeater lock lifetime while unrenewed (crash recovery time)")
	f.DurationVar(&c.Dispatcher.LeaseTTL, "lease-ttl", repeaters.DefaultLeaseTTL, "dispatcher leader lease")
	f.IntVar(&c.Dispatcher.BatchSize, "batch-size", repeaters.DefaultBatchSize, "records per batch")
	f.IntVar(&c.Dispatcher.DomainMaxInFlight, "domain-max-inflight", 0, "batches one domain may have in flight (0 = half the worker pool)")
	f.Float64Var(&c.Dispatcher.DomainRatePerS, "domain-rate", 0, "records per second per domain (0 = unlimited)")
	f.Float64Var(&c.Dispatcher.GlobalRatePerS, "global-rate", 0, "records per second in all (0 = unlimited)")
	f.DurationVar(&c.MaxTimeout, "max-timeout", store.DefaultMaxTimeout, "longest timeout_ms a repeater may be given (a hung endpoint holds a worker slot that long)")
	f.IntVar(&c.Worker.Concurrency, "worker-concurrency", tasks.DefaultConcurrency, "tasks a worker runs at once")
	f.DurationVar(&c.Worker.DrainTimeout, "drain-timeout", tasks.DefaultDrainTimeout, "how long shutdown waits for in-flight work, for every role")
	f.DurationVar(&c.Legacy.Schedule.Min, "legacy-retry-min", repeaters.DefaultLegacyRetryMin, "legacy path: first per-record retry delay (then ×3)")
	f.DurationVar(&c.Scheduler.CheckInterval, "check-interval", tasks.DefaultCheckInterval, "legacy path: how often check_repeaters runs")
	f.DurationVar(&c.Scheduler.InvariantsInterval, "invariants-interval", tasks.DefaultInvariantsInterval, "how often the invariants view is refreshed")
	f.DurationVar(&c.Scheduler.InvariantsStartupDelay, "invariants-startup-delay", tasks.DefaultInvariantsStartupDelay, "the scheduler refreshes the invariants once this long after it starts")
	f.DurationVar(&c.Scheduler.Retention, "retention", tasks.DefaultRetention, "how long terminal records are kept after completing, before the hourly purge")
	f.Var((*negatedBool)(&c.LegacyByDefault), "process-repeaters-default", "process_repeaters flag of domains without a row")
	f.Lookup("process-repeaters-default").NoOptDefVal = "true"
}

// negatedBool is a boolean flag stored inverted: --process-repeaters-default
// (on by default) sets EngineConfig.LegacyByDefault (off by default), so the
// zero config is the default config.
type negatedBool bool

func (b *negatedBool) String() string { return strconv.FormatBool(!bool(*b)) }
func (b *negatedBool) Type() string   { return "bool" }
func (b *negatedBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*b = negatedBool(!v)
	return nil
}

// changedFlags lists the flags of fs set on the command line or from the
// environment, as name=value, for reports.
func changedFlags(fs *pflag.FlagSet) []string {
	var out []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			out = append(out, fmt.Sprintf("%s=%s (from %s)", f.Name, f.Value, envName(f.Name)))
		}
	})
	return out
}

// envName is a flag's REPEATERD_* environment twin.
func envName(flag string) string {
	return "REPEATERD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}
