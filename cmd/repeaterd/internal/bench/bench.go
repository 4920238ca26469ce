// Package bench is `repeaterd bench SCENARIO`: end-to-end benchmarks of the
// delivery engine against local Postgres, Redis and an HTTP sink running in
// a process of its own (`repeaterd bench-sink`).
//
// Every scenario prepares its own data in a fresh database named for it
// (repeaterd_bench_<scenario>) and a flushed Redis DB index of its own, runs
// both sides of its comparison in one run (the new path against the legacy
// path, or the readiness query against the OR-join it replaced), prints a
// table and ends with one line of JSON holding every figure, the ratios and
// which goals were met. The engine runs with the production defaults of
// `repeaterd run`; anything else is printed under "tuning".
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"repeaterd/store/benchdb"
	"repeaterd/tasks"
)

// Options configures a bench run.
type Options struct {
	// DatabaseURL names the Postgres server; each scenario creates its own
	// database there, through the server's "postgres" database.
	DatabaseURL string
	// FsyncOffURL names a second Postgres server with fsync off (the test
	// instance), for the throughput scenario's second column; empty leaves
	// the column out. `scripts/services.sh up --durable` sets
	// REPEATERD_BENCH_FSYNC_OFF_URL to it.
	FsyncOffURL string
	// RedisURL names the Redis server; each scenario flushes and uses a DB
	// index of its own.
	RedisURL string
	// Engine is the engine configuration of `repeaterd run` with its
	// defaults (and REPEATERD_* overrides). DatabaseURL, RedisURL and
	// LegacyByDefault are set per scenario and phase.
	Engine tasks.EngineConfig
	// Tuning lists how Engine departs from run's production defaults, one
	// "name=value (why)" each; every scenario prints it.
	Tuning []string
	// Binary is the repeaterd executable, for the sink and other processes.
	Binary string
	// Size is "full" (the sizes of the issue; default), "quick" (make bench)
	// or a scenario's own size (see each scenario's help).
	Size string
	// Runs is how many timed runs the readiness query gets per size. Defaults to 20.
	Runs int
	// Repeaters is how many repeaters the throughput backlog is spread over,
	// in up to 50 domains. Defaults to 200.
	Repeaters int
	// Duration overrides the dead-endpoint window (60s) and the stats load
	// window.
	Duration time.Duration
	// CPUProfile, when set, receives a CPU profile of the throughput
	// scenario's new-path phase on DatabaseURL (other scenarios are
	// profiled whole by the command).
	CPUProfile string
	// KeepDB leaves each scenario's database in place afterwards.
	KeepDB bool
	// Out receives the report; Log receives progress and engine warnings.
	Out, Log io.Writer
}

// Scenario is one benchmark.
type Scenario struct {
	Name  string
	About string
	// Sizes documents what --size means for it.
	Sizes   string
	redisDB int
	// size is what --size full and quick mean for it; a scenario without
	// one (readiness) reads --size itself.
	size sizePreset
	// comparesPaths marks a comparison of the new delivery path with the
	// legacy one: its report says how the two sides differ (sidesNote).
	comparesPaths bool
	run           func(ctx context.Context, e *env) error
}

// sizePreset is a scenario's size under --size full and quick, and the name
// of the figure that reports it.
type sizePreset struct {
	full, quick int
	figure      string
}

// Scenarios lists every scenario, in the order `bench all` runs them.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "readiness", About: "dispatcher readiness query vs the original OR-join",
			Sizes: "record counts, e.g. 1M,10M (full) or 100k,1M (quick)", run: runReadiness},
		{Name: "throughput", About: "deliveries/s to a 200-at-once sink, new path vs legacy, and the sink's ceiling",
			Sizes: "records, e.g. 100k (full)", redisDB: 57, comparesPaths: true,
			size: sizePreset{100_000, 40_000, "records"}, run: runThroughput},
		{Name: "ingest", About: "records/s through the API, one per request and 100 per batch, 32 clients, deliveries running; the store's own ceiling",
			Sizes: "none: --duration sets each mode's window (15s full, 8s quick)", redisDB: 54, run: runIngest},
		{Name: "fairness", About: "quiet domains' registration→delivery latency behind one noisy domain",
			Sizes: "the noisy domain's records, e.g. 50k (full)", redisDB: 58, comparesPaths: true,
			size: sizePreset{50_000, 20_000, "noisy_records"}, run: runFairness},
		{Name: "dead-endpoint", About: "requests spent on a refusing endpoint and the other nine's rate",
			Sizes: "records per repeater, e.g. 10k (full)", redisDB: 59, comparesPaths: true,
			size: sizePreset{10_000, 3_000, "records_per_repeater"}, run: runDeadEndpoint},
		{Name: "latency", About: "idle system: registration → first attempt",
			Sizes: "records registered one at a time, e.g. 1000 (full)", redisDB: 60, comparesPaths: true,
			size: sizePreset{1000, 300, "records_new"}, run: runLatency},
		{Name: "memory", About: "peak RSS of `repeaterd run` (every role) draining a backlog",
			Sizes: "backlog records, e.g. 1M (full)", redisDB: 61, comparesPaths: true,
			size: sizePreset{1_000_000, 40_000, "records"}, run: runMemory},
		{Name: "hostile", About: "poison record, slow tenants, fragile endpoint, exact rate limits: new path vs legacy",
			Sizes: "full: the fragile endpoint watched 60s; quick: 30s", redisDB: 62, comparesPaths: true, run: runHostile},
		{Name: "stats", About: "WAL stats consumer: apply throughput, lag at 2,000 changes/s, exact after kill -9",
			Sizes: "seeded history records, e.g. 1M (full)", size: sizePreset{1_000_000, 200_000, "history_records"},
			run: runStats},
		{Name: "console", About: "console page render times over 2,000 repeaters and a long history",
			Sizes: "records, e.g. 10M (full) or 1M (quick)", size: sizePreset{10_000_000, 1_000_000, "records"}, run: runConsole},
	}
}

// ScenarioNames returns the scenario names.
func ScenarioNames() []string {
	var out []string
	for _, s := range Scenarios() {
		out = append(out, s.Name)
	}
	return out
}

// Run runs the named scenario, or every scenario for "all" (continuing past
// failures and reporting them at the end).
func Run(ctx context.Context, name string, opt Options) error {
	if opt.Runs <= 0 {
		opt.Runs = 20
	}
	if opt.Size == "" {
		opt.Size = "full"
	}
	if opt.Log == nil {
		opt.Log = os.Stderr
	}
	if name == "all" {
		var failed []string
		for _, s := range Scenarios() {
			if err := runOne(ctx, s, opt); err != nil {
				fmt.Fprintf(opt.Out, "scenario %s failed: %v\n", s.Name, err)
				failed = append(failed, s.Name)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		if len(failed) > 0 {
			return fmt.Errorf("scenarios failed: %s", strings.Join(failed, ", "))
		}
		return nil
	}
	for _, s := range Scenarios() {
		if s.Name == name {
			return runOne(ctx, s, opt)
		}
	}
	return fmt.Errorf("unknown scenario %q (scenarios: %s, all)", name, strings.Join(ScenarioNames(), ", "))
}

func runOne(ctx context.Context, s Scenario, opt Options) error {
	e := &env{
		opt: opt, sc: s, out: opt.Out,
		dbName: "repeaterd_bench_" + strings.ReplaceAll(s.Name, "-", "_"),
		logger: slog.New(slog.NewTextHandler(opt.Log, &slog.HandlerOptions{Level: slog.LevelWarn})),
		res: &Result{
			Scenario: s.Name, Size: opt.Size, Started: time.Now().UTC().Truncate(time.Second),
			Tuning: append([]string{}, opt.Tuning...), Figures: map[string]any{},
		},
	}
	e.res.Machine = machine(ctx, opt)
	fmt.Fprintf(e.out, "\n== bench %s: %s\n", s.Name, s.About)
	fmt.Fprintf(e.out, "machine: %s\n", e.res.Machine)
	if len(opt.Tuning) == 0 {
		fmt.Fprintln(e.out, "tuning: none: production defaults of `repeaterd run`")
	} else {
		fmt.Fprintf(e.out, "tuning (departures from `repeaterd run` defaults): %s\n", strings.Join(opt.Tuning, "; "))
	}
	err := e.prepare()
	if err == nil {
		err = s.run(ctx, e)
	}
	if !opt.KeepDB {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		if derr := benchdb.DropDatabase(dctx, opt.DatabaseURL, e.dbName); derr != nil {
			fmt.Fprintf(opt.Log, "bench: drop %s: %v\n", e.dbName, derr)
		}
		cancel()
	}
	if err != nil {
		return err
	}
	e.res.Machine.LoadEnd = loadAvg()
	e.printGoals()
	line, err := json.Marshal(e.res)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.out, string(line))
	return nil
}
