package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"repeaterd/cmd/repeaterd/internal/bench"
	"repeaterd/dashboards/walstats"
	"repeaterd/repeaters/repeatertest"
	"repeaterd/store"
	"repeaterd/tasks"
)

func newBenchCmd() *cobra.Command {
	var opt bench.Options
	var cpuProfile string
	var scenarios strings.Builder
	for _, s := range bench.Scenarios() {
		fmt.Fprintf(&scenarios, "  %-14s %s\n  %-14s --size: %s\n", s.Name, s.About, "", s.Sizes)
	}
	cmd := &cobra.Command{
		Use:   "bench SCENARIO",
		Short: "Run a benchmark scenario (both sides, a table, then one line of JSON)",
		Long: `Run a benchmark scenario against DATABASE_URL's server and REDIS_URL's server.
Each scenario creates and drops its own database (repeaterd_bench_<scenario>)
and flushes a Redis DB index of its own (57-62). Deliveries go to a sink in a
process of its own (repeaterd bench-sink). The engine runs with the defaults
of 'repeaterd run' (REPEATERD_* variables apply and are reported as tuning),
plus REPEATERD_ALLOW_PRIVATE_TARGETS=true since the sink is on loopback.

Scenarios ("all" runs every one):
` + scenarios.String() + `
--size full (default) is the issue's sizes; --size quick is what 'make bench' runs.`,
		Example:   "  repeaterd bench readiness --size 100k,1M\n  repeaterd bench all --size quick",
		Args:      cobra.ExactArgs(1),
		ValidArgs: append(bench.ScenarioNames(), "all"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if opt.DatabaseURL, err = databaseURL(cmd); err != nil {
				return err
			}
			if opt.RedisURL, err = redisURL(cmd); err != nil {
				return err
			}
			if opt.Binary, err = os.Executable(); err != nil {
				return err
			}
			if opt.Engine, opt.Tuning, err = benchEngineConfig(); err != nil {
				return err
			}
			opt.Out, opt.Log = cmd.OutOrStdout(), cmd.ErrOrStderr()
			if args[0] == "throughput" {
				opt.CPUProfile = cpuProfile // throughput profiles its new-path phase only
			} else {
				stop, err := bench.StartCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stop()
			}
			return bench.Run(cmd.Context(), args[0], opt)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opt.FsyncOffURL, "fsync-off-url", os.Getenv("REPEATERD_BENCH_FSYNC_OFF_URL"),
		"a second Postgres server with fsync off, for the throughput scenario's second column (scripts/services.sh up --durable sets REPEATERD_BENCH_FSYNC_OFF_URL)")
	f.StringVar(&opt.Size, "size", "full", `"full", "quick", or the scenario's own size (see above)`)
	f.IntVar(&opt.Runs, "runs", 20, "timed runs per query and size (readiness)")
	f.DurationVar(&opt.Duration, "duration", 0, "override the scenario's window (dead-endpoint 60s, legacy throughput, stats load)")
	f.IntVar(&opt.Repeaters, "repeaters", 0, "repeaters the throughput backlog is spread over (default 200, in up to 50 domains)")
	f.BoolVar(&opt.KeepDB, "keep-db", false, "keep the scenario's database afterwards")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of this process (the in-process engine roles and the bench) to this file; throughput profiles only its new-path phase on DATABASE_URL")
	return cmd
}

// benchEngineConfig is the engine `run` would start with no flags given:
// its defaults, overridden by REPEATERD_* variables, each reported as tuning.
// Private targets are allowed: the sink is on loopback.
func benchEngineConfig() (tasks.EngineConfig, []string, error) {
	var cfg tasks.EngineConfig
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	bindEngineFlags(fs, &cfg)
	if err := bindEnv(fs); err != nil {
		return cfg, nil, err
	}
	tuning := append([]string{"allow-private-targets=true (the sink is on loopback)"}, changedFlags(fs)...)
	cfg.Sender.AllowPrivateTargets = true
	cfg.Sender.Version = version
	return cfg, tuning, nil
}

// newBenchSinkCmd is the benchmarks' HTTP sink, run as a process of its own.
func newBenchSinkCmd() *cobra.Command {
	var addr string
	var cfg repeatertest.Config
	var watchStdin bool
	cmd := &cobra.Command{
		Use:    "bench-sink",
		Short:  "HTTP sink for benchmarks (repeatertest's receiver): answers at once, counts arrivals per webhook-id",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			if watchStdin {
				go func() { _, _ = io.Copy(io.Discard, os.Stdin); cancel() }()
			}
			return bench.ServeSink(ctx, addr, cfg, os.Getpid(), cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:0", "listen address; the chosen one is printed as JSON on stdout")
	cmd.Flags().IntVar(&cfg.Status, "status", 200, "status to answer (a request's ?status= overrides)")
	cmd.Flags().DurationVar(&cfg.Delay, "delay", 0, "delay before answering (a request's ?delay= overrides)")
	cmd.Flags().BoolVar(&watchStdin, "watch-stdin", false, "exit when stdin closes (the parent bench died)")
	return cmd
}

// newBenchStatsConsumerCmd runs the WAL stats consumer on a slot of the
// benchmark's own (slots are cluster-wide), so the stats scenario can kill -9
// it. It is the stats role with its production defaults but the slot name.
func newBenchStatsConsumerCmd() *cobra.Command {
	var slot string
	cmd := &cobra.Command{
		Use:    "bench-stats-consumer",
		Short:  "The stats role on a named slot, for the stats benchmark",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dbURL, err := databaseURL(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			st, err := store.Open(ctx, dbURL)
			if err != nil {
				return err
			}
			defer st.Close()
			c, err := walstats.New(st, walstats.Config{DatabaseURL: dbURL, SlotName: slot, Logger: logger})
			if err != nil {
				return err
			}
			if err := c.Start(ctx); err != nil {
				return err
			}
			fmt.Fprintln(os.Stderr, "stats consumer started")
			<-ctx.Done()
			return c.Stop(context.WithoutCancel(ctx))
		},
	}
	cmd.Flags().StringVar(&slot, "slot", "repeaterd_bench_stats", "replication slot")
	return cmd
}
