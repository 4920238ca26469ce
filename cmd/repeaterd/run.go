package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"repeaterd/repeaters/lifecycle"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"repeaterd/repeaters"
	"repeaterd/tasks"
)

// runOptions are `repeaterd run`'s flags; each has a REPEATERD_* twin.
type runOptions struct {
	roles               []string
	demo                bool
	httpAddr            string
	apiToken            string
	allowPrivate        bool
	backoffMin          time.Duration
	backoffMax          time.Duration
	backoffJitter       float64
	lockTTL             time.Duration
	leaseTTL            time.Duration
	workerConcurrency   int
	maxRepeaterWorkers  int
	maxInFlight         int
	batchSize           int
	domainMaxInFlight   int
	domainRate          float64
	globalRate          float64
	drainTimeout        time.Duration
	maxPayloadBytes     int64
	processReposDefault bool
	legacyRetryMin      time.Duration
	checkInterval       time.Duration
	invariantsInterval  time.Duration
	retention           time.Duration
	metricsAddr         string
	demoSinkAddr        string
	demoSinkURL         string
}

// allRoles lists every role in start order.
var allRoles = []string{"dispatcher", "worker", "scheduler", "stats", "web"}

func init() { extraCommands = append(extraCommands, newRunCmd) }

func newRunCmd() *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the system's roles (all by default)",
		Long: `Run one or more roles in this process:
  dispatcher  finds ready repeaters and enqueues batches (one leader at a time)
  worker      sends batches and applies their outcomes (scale out freely)
  scheduler   periodic tasks: the legacy path's check_repeaters, invariants, purge
  stats       the WAL stats consumer
  web         the API, the dashboard, /metrics and asynqmon at /monitor/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return err
			}
			return run(cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.roles, "roles", allRoles, "roles to run: "+strings.Join(allRoles, ","))
	f.BoolVar(&o.demo, "demo", false, "create a demo workload: domains, repeaters on a local sink, a trickle of records")
	f.StringVar(&o.demoSinkAddr, "demo-sink-addr", "127.0.0.1:0", "where the demo's sink listens")
	f.StringVar(&o.demoSinkURL, "demo-sink-url", "", "the demo sink's URL as workers reach it (default: its listen address)")
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "serve /metrics here in processes without the web role (empty = off)")
	f.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:8080", "web role listen address")
	f.StringVar(&o.apiToken, "api-token", "", "bearer token for /api and /monitor (required to listen beyond loopback)")
	f.BoolVar(&o.allowPrivate, "allow-private-targets", false, "let repeaters reach loopback and private addresses")
	f.DurationVar(&o.backoffMin, "backoff-min", repeaters.DefaultBackoffMin, "first repeater backoff")
	f.DurationVar(&o.backoffMax, "backoff-max", repeaters.DefaultBackoffMax, "longest repeater backoff (and Retry-After cap)")
	f.Float64Var(&o.backoffJitter, "backoff-jitter", repeaters.DefaultBackoffJitter, "backoff jitter, a fraction")
	f.DurationVar(&o.lockTTL, "lock-ttl", repeaters.DefaultLockTTL, "repeater lock lifetime while unrenewed (crash recovery time)")
	f.DurationVar(&o.leaseTTL, "lease-ttl", repeaters.DefaultLeaseTTL, "dispatcher leader lease")
	f.IntVar(&o.workerConcurrency, "worker-concurrency", tasks.DefaultConcurrency, "tasks a worker runs at once")
	f.IntVar(&o.maxRepeaterWorkers, "max-repeater-workers", 0, "cap on any repeater's max_workers (0 = none)")
	f.IntVar(&o.maxInFlight, "max-inflight", 256, "process-wide cap on in-flight HTTP requests")
	f.IntVar(&o.batchSize, "batch-size", repeaters.DefaultBatchSize, "records per batch")
	f.IntVar(&o.domainMaxInFlight, "domain-max-inflight", 0, "batches one domain may have in flight (0 = half the worker pool)")
	f.Float64Var(&o.domainRate, "domain-rate", 0, "records per second per domain (0 = unlimited)")
	f.Float64Var(&o.globalRate, "global-rate", 0, "records per second in all (0 = unlimited)")
	f.DurationVar(&o.drainTimeout, "drain-timeout", tasks.DefaultDrainTimeout, "how long shutdown waits for in-flight batches")
	f.Int64Var(&o.maxPayloadBytes, "max-payload-bytes", 1<<20, "largest accepted payload")
	f.DurationVar(&o.legacyRetryMin, "legacy-retry-min", repeaters.DefaultLegacyRetryMin, "legacy path: first per-record retry delay (then ×3)")
	f.DurationVar(&o.checkInterval, "check-interval", tasks.DefaultCheckInterval, "legacy path: how often check_repeaters runs")
	f.DurationVar(&o.invariantsInterval, "invariants-interval", tasks.DefaultInvariantsInterval, "how often the invariants view is refreshed")
	f.DurationVar(&o.retention, "retention", tasks.DefaultRetention, "how long terminal records are kept before the hourly purge")
	f.BoolVar(&o.processReposDefault, "process-repeaters-default", true, "process_repeaters flag of domains without a row")
	annotateEnv(f)
	return cmd
}

func (o runOptions) engineConfig(dbURL, redisURL string) tasks.EngineConfig {
	return tasks.EngineConfig{
		DatabaseURL:             dbURL,
		RedisURL:                redisURL,
		AllowPrivateTargets:     o.allowPrivate,
		LockTTL:                 o.lockTTL,
		MaxInFlight:             o.maxInFlight,
		ProcessRepeatersDefault: o.processReposDefault,
		Backoff: repeaters.BackoffPolicy{
			Min: o.backoffMin, Max: o.backoffMax, Jitter: o.backoffJitter, MaxWorkers: o.maxRepeaterWorkers,
		},
		Dispatcher: repeaters.DispatcherConfig{
			BatchSize: o.batchSize, DomainMaxInFlight: o.domainMaxInFlight,
			DomainRatePerS: o.domainRate, GlobalRatePerS: o.globalRate, LeaseTTL: o.leaseTTL,
		},
		Legacy:             repeaters.LegacySchedule{Min: o.legacyRetryMin, Max: o.backoffMax},
		CheckInterval:      o.checkInterval,
		InvariantsInterval: o.invariantsInterval,
		Retention:          o.retention,
		Worker:             tasks.WorkerConfig{Concurrency: o.workerConcurrency, DrainTimeout: o.drainTimeout},
		Version:            version,
	}
}

func run(cmd *cobra.Command, o runOptions) error {
	o.roles = slices.DeleteFunc(o.roles, func(r string) bool { return r == "" })
	if len(o.roles) == 0 && !o.demo {
		return fmt.Errorf("no roles to run (roles: %s)", strings.Join(allRoles, ","))
	}
	for _, r := range o.roles {
		if !slices.Contains(allRoles, r) {
			return fmt.Errorf("unknown role %q (roles: %s)", r, strings.Join(allRoles, ","))
		}
	}
	dbURL, err := databaseURL(cmd)
	if err != nil {
		return err
	}
	redisURL, err := redisURL(cmd)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	eng, err := tasks.OpenEngine(ctx, o.engineConfig(dbURL, redisURL), logger)
	if err != nil {
		return err
	}
	defer eng.Close()

	services, err := buildRoles(ctx, o, eng)
	if err != nil {
		return err
	}
	if err := serveMetrics(o, eng, &services); err != nil {
		return err
	}
	if o.demo {
		d, err := newDemo(ctx, eng, logger, o.demoSinkAddr, o.demoSinkURL)
		if err != nil {
			return err
		}
		services = append(services, d)
	}
	if err := lifecycle.StartAll(ctx, services); err != nil {
		return err
	}
	logger.Info("repeaterd running", "roles", strings.Join(o.roles, ","), "version", version)
	<-ctx.Done()
	logger.Info("shutting down: draining in-flight batches", "timeout", o.drainTimeout)
	drain, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.drainTimeout+5*time.Second)
	defer cancel()
	return lifecycle.StopAll(drain, services)
}

// buildRoles returns the services of the requested roles.
func buildRoles(ctx context.Context, o runOptions, eng *tasks.Engine) ([]lifecycle.Service, error) {
	var out []lifecycle.Service
	for _, role := range allRoles {
		if !slices.Contains(o.roles, role) {
			continue
		}
		build, ok := roleBuilders[role]
		if !ok {
			eng.Logger.Warn("role not built into this version yet; skipped", "role", role)
			continue
		}
		s, err := build(ctx, o, eng)
		if err != nil {
			return nil, fmt.Errorf("role %s: %w", role, err)
		}
		out = append(out, s)
	}
	return out, nil
}

type roleBuilder func(ctx context.Context, o runOptions, eng *tasks.Engine) (lifecycle.Service, error)

var roleBuilders = map[string]roleBuilder{
	"dispatcher": func(_ context.Context, _ runOptions, eng *tasks.Engine) (lifecycle.Service, error) {
		return eng.NewDispatcher(), nil
	},
	"worker": func(_ context.Context, _ runOptions, eng *tasks.Engine) (lifecycle.Service, error) {
		return eng.NewWorker(), nil
	},
	"scheduler": func(ctx context.Context, _ runOptions, eng *tasks.Engine) (lifecycle.Service, error) {
		return eng.NewScheduler(ctx), nil
	},
}
