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
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"repeaterd/repeaters/lifecycle"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"repeaterd/store"
	"repeaterd/tasks"
)

// Options configures a bench run.
type Options struct {
	// DatabaseURL names the Postgres server; each scenario creates its own
	// database there, through the server's "postgres" database.
	DatabaseURL string
	// RedisURL names the Redis server; each scenario flushes and uses a DB
	// index of its own.
	RedisURL string
	// Engine is the engine configuration of `repeaterd run` with its
	// defaults (and REPEATERD_* overrides). DatabaseURL, RedisURL and
	// ProcessRepeatersDefault are set per scenario and phase.
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
	// Duration overrides the dead-endpoint window (60s) and the stats load
	// window.
	Duration time.Duration
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
	run     func(ctx context.Context, e *env) error
}

// Scenarios lists every scenario, in the order `bench all` runs them.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "readiness", About: "dispatcher readiness query vs the original OR-join",
			Sizes: "record counts, e.g. 1M,10M (full) or 100k,1M (quick)", run: runReadiness},
		{Name: "throughput", About: "deliveries/s to a 200-at-once sink, new path vs legacy, and the sink's ceiling",
			Sizes: "records, e.g. 100k (full)", redisDB: 57, run: runThroughput},
		{Name: "fairness", About: "quiet domains' registration→delivery latency behind one noisy domain",
			Sizes: "the noisy domain's records, e.g. 50k (full)", redisDB: 58, run: runFairness},
		{Name: "dead-endpoint", About: "requests spent on a refusing endpoint and the other nine's rate",
			Sizes: "records per repeater, e.g. 10k (full)", redisDB: 59, run: runDeadEndpoint},
		{Name: "latency", About: "idle system: registration → first attempt",
			Sizes: "records registered one at a time, e.g. 1000 (full)", redisDB: 60, run: runLatency},
		{Name: "memory", About: "peak RSS of `repeaterd run --roles dispatcher,worker,scheduler` draining a backlog",
			Sizes: "backlog records, e.g. 100k (full)", redisDB: 61, run: runMemory},
		{Name: "stats", About: "WAL stats consumer: apply throughput, lag at 2,000 changes/s, exact after kill -9",
			Sizes: "seeded history records, e.g. 1M (full)", run: runStats},
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
	err := s.run(ctx, e)
	if !opt.KeepDB {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		if derr := store.BenchDropDatabase(dctx, opt.DatabaseURL, e.dbName); derr != nil {
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

// Result is a scenario's final JSON line.
type Result struct {
	Scenario string         `json:"scenario"`
	Size     string         `json:"size"`
	Started  time.Time      `json:"started"`
	Machine  Machine        `json:"machine"`
	Tuning   []string       `json:"tuning"`
	Notes    []string       `json:"notes,omitempty"`
	Figures  map[string]any `json:"figures"`
	Goals    []Goal         `json:"goals"`
}

// Goal is one goal of the issue and whether this run met it.
type Goal struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs       int    `json:"cpus"`
	MemTotal   string `json:"mem_total"`
	Postgres   string `json:"postgres"`
	Redis      string `json:"redis"`
	Go         string `json:"go"`
	LoadStart  string `json:"loadavg_start"`
	LoadEnd    string `json:"loadavg_end"`
	GOMAXPROCS int    `json:"gomaxprocs"`
}

func (m Machine) String() string {
	return fmt.Sprintf("%d CPUs, %s RAM, PostgreSQL %s, Redis %s, %s, loadavg %s (co-located: PG, Redis, sink, repeaterd)",
		m.CPUs, m.MemTotal, m.Postgres, m.Redis, m.Go, m.LoadStart)
}

func machine(ctx context.Context, opt Options) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), LoadStart: loadAvg(), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				var kb int64
				fmt.Sscan(f[1], &kb)
				m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	if st, err := store.Open(ctx, opt.DatabaseURL); err == nil {
		m.Postgres, _ = st.BenchServerVersion(ctx)
		st.Close()
	}
	if o, err := redis.ParseURL(opt.RedisURL); err == nil {
		c := redis.NewClient(o)
		if info, err := c.Info(ctx, "server").Result(); err == nil {
			for _, l := range strings.Split(info, "\n") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(l), "redis_version:"); ok {
					m.Redis = v
				}
			}
		}
		c.Close()
	}
	return m
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// env is one scenario's run: its database, Redis DB, output and result.
type env struct {
	opt      Options
	sc       Scenario
	out      io.Writer
	logger   *slog.Logger
	dbName   string
	dbURL    string
	redisURL string
	res      *Result
}

// freshDB drops and recreates the scenario's database, migrated.
func (e *env) freshDB(ctx context.Context) (*store.Store, error) {
	url, err := store.BenchRecreateDatabase(ctx, e.opt.DatabaseURL, e.dbName)
	if err != nil {
		return nil, err
	}
	e.dbURL = url
	return store.Open(ctx, url)
}

// freshRedis flushes the scenario's Redis DB index and points redisURL at it.
// side runs one side of a scenario on a fresh database, a fresh Redis DB
// and its own sink process, and closes them after.
func (e *env) side(ctx context.Context, fn func(st *store.Store, sink *sinkProc) error) error {
	st, err := e.freshDB(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := e.freshRedis(ctx); err != nil {
		return err
	}
	sink, err := e.startSink(ctx)
	if err != nil {
		return err
	}
	defer sink.close()
	return fn(st, sink)
}

func (e *env) freshRedis(ctx context.Context) error {
	u, err := url.Parse(e.opt.RedisURL)
	if err != nil {
		return fmt.Errorf("bad REDIS_URL: %w", err)
	}
	u.Path = fmt.Sprintf("/%d", e.sc.redisDB)
	o, err := redis.ParseURL(u.String())
	if err != nil {
		return err
	}
	c := redis.NewClient(o)
	defer c.Close()
	if err := c.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("flush redis db %d: %w", e.sc.redisDB, err)
	}
	e.redisURL = u.String()
	return nil
}

// engineConfig is the production configuration on this scenario's services.
func (e *env) engineConfig(processRepeatersDefault bool) tasks.EngineConfig {
	cfg := e.opt.Engine
	cfg.DatabaseURL, cfg.RedisURL = e.dbURL, e.redisURL
	cfg.LegacyByDefault = !processRepeatersDefault
	return cfg
}

// system is the engine's roles running in this process.
type system struct {
	eng      *tasks.Engine
	services []lifecycle.Service
}

// startSystem starts the dispatcher, worker and scheduler roles in process,
// as `repeaterd run --roles dispatcher,worker,scheduler` would.
func (e *env) startSystem(ctx context.Context, processRepeatersDefault bool) (*system, error) {
	eng, err := tasks.OpenEngine(ctx, e.engineConfig(processRepeatersDefault), e.logger)
	if err != nil {
		return nil, err
	}
	s := &system{eng: eng}
	for _, svc := range []lifecycle.Service{eng.NewDispatcher(), eng.NewWorker(), eng.NewScheduler(ctx)} {
		if err := svc.Start(ctx); err != nil {
			s.stop()
			return nil, err
		}
		s.services = append(s.services, svc)
	}
	return s, nil
}

func (s *system) stop() {
	_ = lifecycle.StopAll(context.Background(), s.services)
	s.eng.Close()
}

// sidesNote says how the two sides of a delivery comparison differ.
const sidesNote = "sides: new = the process_repeaters flag at its default (on); legacy = the same system with " +
	"process-repeaters-default=false (REPEATERD_PROCESS_REPEATERS_DEFAULT=false, no domain_flags rows), so every domain takes the legacy path; nothing else differs"

// pathName names the two sides of a delivery comparison.
func pathName(newPath bool) string {
	if newPath {
		return "new"
	}
	return "legacy"
}

// logf prints progress to the log stream.
func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.opt.Log, "  [%s %s] %s\n", e.sc.Name, time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// notef adds a note to the report and the JSON.
func (e *env) notef(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	e.res.Notes = append(e.res.Notes, n)
	fmt.Fprintln(e.out, "note: "+n)
}

func (e *env) figure(name string, v any) { e.res.Figures[name] = v }

func (e *env) goal(name, want, got string, met bool) {
	e.res.Goals = append(e.res.Goals, Goal{Name: name, Want: want, Got: got, Met: met})
}

// table returns a tab-aligned writer on the report with a header row.
func (e *env) table(headers ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(headers, "\t")+"\t")
	return tw
}

func row(tw io.Writer, cells ...any) {
	parts := make([]string, len(cells))
	for i, c := range cells {
		parts[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(tw, strings.Join(parts, "\t")+"\t")
}

func (e *env) printGoals() {
	if len(e.res.Goals) == 0 {
		return
	}
	fmt.Fprintln(e.out)
	tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GOAL\tWANT\tGOT\tMET")
	for _, g := range e.res.Goals {
		met := "no"
		if g.Met {
			met = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", g.Name, g.Want, g.Got, met)
	}
	tw.Flush()
}

// limitedBuffer keeps the last max bytes written, for a child's stderr.
type limitedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.buf.Write(p)
	if over := b.buf.Len() - b.max; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string { return b.buf.String() }
