package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"repeaterd/cmd/repeaterd/internal/bench"
	"repeaterd/repeaters/lifecycle"
	"repeaterd/store"
	"repeaterd/tasks"
)

// runOptions are `repeaterd run`'s flags beyond the engine's; each has a
// REPEATERD_* twin.
type runOptions struct {
	engine          tasks.EngineConfig
	roles           []string
	demo            bool
	httpAddr        string
	apiToken        string
	secretKey       string
	metricsAuth     string
	maxPayloadBytes int64
	metricsAddr     string
	demoSinkAddr    string
	demoSinkURL     string
	statsSlot       string
	logFormat       string
	logLevel        string
	cpuProfile      string
}

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
	f.StringSliceVar(&o.roles, "roles", tasks.AllRoles, "roles to run: "+strings.Join(tasks.AllRoles, ","))
	f.BoolVar(&o.demo, "demo", false, "create a demo workload: domains, repeaters on a local sink, a trickle of records")
	f.StringVar(&o.demoSinkAddr, "demo-sink-addr", "127.0.0.1:0", "where the demo's sink listens")
	f.StringVar(&o.demoSinkURL, "demo-sink-url", "", "the demo sink's URL as workers reach it (default: its listen address)")
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "serve /metrics here in processes without the web role (empty = off)")
	f.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:8080", "web role listen address")
	f.StringVar(&o.apiToken, "api-token", "", "admin token for the API, the console and /monitor (required to listen beyond loopback)")
	f.StringVar(&o.secretKey, "secret-key", "", "keys sealing signing secrets and header values at rest: comma-separated, the first seals (32 bytes, base64 or hex)")
	f.StringVar(&o.metricsAuth, "metrics-auth", "loopback", "who may read the web role's /metrics: loopback (open to this machine, token elsewhere), token, open")
	f.Int64Var(&o.maxPayloadBytes, "max-payload-bytes", 1<<20, "largest accepted payload")
	f.StringVar(&o.statsSlot, "stats-slot", "", "the stats role's replication slot (default repeaterd_stats_<database>; slots are per server)")
	f.StringVar(&o.logFormat, "log-format", defaultLogFormat, "log format: text or json")
	f.StringVar(&o.logLevel, "log-level", defaultLogLevel, "log level: debug, info, warn or error")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write this process's CPU profile to this file until it stops")
	bindEngineFlags(f, &o.engine)
	annotateEnv(f)
	return cmd
}

func run(cmd *cobra.Command, o runOptions) error {
	o.roles = slices.DeleteFunc(o.roles, func(r string) bool { return r == "" })
	if len(o.roles) == 0 && !o.demo {
		return fmt.Errorf("no roles to run (roles: %s)", strings.Join(tasks.AllRoles, ","))
	}
	var err error
	if o.engine.DatabaseURL, err = databaseURL(cmd); err != nil {
		return err
	}
	if o.engine.RedisURL, err = redisURL(cmd); err != nil {
		return err
	}
	o.engine.Sender.Version = version
	if o.engine.Secrets, err = store.ParseKeyring(o.secretKey); err != nil {
		return err
	}
	stopProfile, err := bench.StartCPUProfile(o.cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	ctx := cmd.Context()
	logger, err := newLogger(cmd.ErrOrStderr(), o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	// For the parts that log without a logger of their own (put back after,
	// for tests that run the command in-process).
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(logger)
	if o.engine.Secrets == nil {
		logger.Warn("SECRETS NOT ENCRYPTED: REPEATERD_SECRET_KEY is not set, so repeaters' signing secrets and " +
			"header values are stored in plaintext; set it (`repeaterd secrets new-key`) and run `repeaterd secrets reencrypt`")
	}
	if err := refusePendingMigrations(ctx, o.engine.DatabaseURL); err != nil {
		return err
	}
	eng, err := tasks.OpenEngine(ctx, o.engine, logger)
	if err != nil {
		return err
	}
	defer eng.Close()

	services, err := eng.Services(ctx, o.roles, dashboardRoles(o))
	if err != nil {
		return err
	}
	roles := slices.DeleteFunc(slices.Clone(tasks.AllRoles), func(r string) bool { return !slices.Contains(o.roles, r) })
	if err := serveMetrics(o, eng, &services, roleHealth(roles, services)); err != nil {
		return err
	}
	if o.demo {
		d, err := newDemo(eng, logger, o.demoSinkAddr, o.demoSinkURL)
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
	drain := eng.Config().Worker.DrainTimeout
	logger.Info("shutting down: draining in-flight work", "timeout", drain)
	// Every role drains under the one deadline; the worker's own drain is
	// bounded by the same timeout, so allow a little for its goodbye.
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain+5*time.Second)
	defer cancel()
	return lifecycle.StopAll(stopCtx, services)
}

// refusePendingMigrations keeps `run` off a schema older than its code,
// naming the command that brings it up to date.
func refusePendingMigrations(ctx context.Context, databaseURL string) error {
	pending, err := store.PendingMigrations(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("check migrations: %w", err)
	}
	if len(pending) > 0 {
		return fmt.Errorf("the database lacks %d migration(s) (%s): run `repeaterd migrate` first",
			len(pending), strings.Join(pending, ", "))
	}
	return nil
}
