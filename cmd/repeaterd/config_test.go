package main

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"repeaterd/tasks"
)

func parseEngineFlags(t *testing.T, args ...string) tasks.EngineConfig {
	t.Helper()
	var cfg tasks.EngineConfig
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	bindEngineFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestEngineFlagsBindToConfig(t *testing.T) {
	cfg := parseEngineFlags(t, "--backoff-min=3s", "--worker-concurrency=4", "--batch-size=9",
		"--drain-timeout=7s", "--legacy-retry-min=2m", "--check-interval=1s")
	if cfg.Backoff.Min != 3*time.Second || cfg.Worker.Concurrency != 4 || cfg.Dispatcher.BatchSize != 9 ||
		cfg.Worker.DrainTimeout != 7*time.Second || cfg.Legacy.Schedule.Min != 2*time.Minute ||
		cfg.Scheduler.CheckInterval != time.Second {
		t.Fatalf("flags did not reach the config: %+v", cfg)
	}
	if cfg.LegacyByDefault {
		t.Fatal("domains default to the dispatcher's path")
	}
	for _, args := range [][]string{{"--process-repeaters-default=false"}, {"--process-repeaters-default", "false"}} {
		if got := parseEngineFlags(t, strings.Join(args, "=")); !got.LegacyByDefault {
			t.Errorf("%v: want LegacyByDefault", args)
		}
	}
}

// TestFlagDefaultsAreEngineDefaults: with no flags, the parsed config is the
// engine's own defaults, so `run` with no flags and a zero EngineConfig are
// the same engine.
func TestFlagDefaultsAreEngineDefaults(t *testing.T) {
	fromFlags := parseEngineFlags(t).WithDefaults()
	zero := tasks.EngineConfig{}.WithDefaults()
	fromFlags.Backoff.Rand, zero.Backoff.Rand = nil, nil
	if !reflect.DeepEqual(fromFlags, zero) {
		t.Fatalf("flag defaults differ from engine defaults:\nflags %+v\nzero  %+v", fromFlags, zero)
	}
}

// TestBenchRunsRunsEngine: the bench's engine is run's, with REPEATERD_*
// variables applied and reported.
func TestBenchRunsRunsEngine(t *testing.T) {
	t.Setenv("REPEATERD_BATCH_SIZE", "17")
	t.Setenv("REPEATERD_PROCESS_REPEATERS_DEFAULT", "false")
	cfg, tuning, err := benchEngineConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Dispatcher.BatchSize != 17 || !cfg.LegacyByDefault || !cfg.Sender.AllowPrivateTargets {
		t.Fatalf("bench config: %+v", cfg)
	}
	if !slices.ContainsFunc(tuning, func(s string) bool { return strings.HasPrefix(s, "batch-size=17") }) {
		t.Fatalf("tuning does not report the variable: %q", tuning)
	}
	t.Setenv("REPEATERD_WORKER_CONCURRENCY", "many")
	if _, _, err := benchEngineConfig(); err == nil || !strings.Contains(err.Error(), "REPEATERD_WORKER_CONCURRENCY") {
		t.Fatalf("a bad variable must be named in the error, got %v", err)
	}
}

func TestRunRejectsUnknownRole(t *testing.T) {
	root := newRootCmd()
	root.SetArgs([]string{"run", "--roles", "dispatcher,nope", "--database-url", "postgres://127.0.0.1:1/x", "--redis-url", "redis://127.0.0.1:1"})
	err := root.ExecuteContext(t.Context())
	if err == nil {
		t.Fatal("run accepted an unknown role")
	}
}
