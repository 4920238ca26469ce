package tasks_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"repeaterd/repeaters/lifecycle"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"repeaterd/repeaters"
	"repeaterd/store"
	"repeaterd/store/storetest"
	"repeaterd/tasks"
)

var ctx = context.Background()

// roleEnv makes the test binary run engine roles instead of tests, so tests
// can kill a worker or dispatcher with SIGKILL.
const roleEnv = "REPEATERD_E2E_ROLES"

func TestMain(m *testing.M) {
	if roles := os.Getenv(roleEnv); roles != "" {
		runRoles(roles)
		return
	}
	os.Exit(m.Run())
}

// runRoles runs the engine roles named in $REPEATERD_E2E_ROLES with the
// config in $REPEATERD_E2E_CONFIG until SIGTERM/SIGINT (or SIGKILL).
func runRoles(roles string) {
	var cfg tasks.EngineConfig
	if err := json.Unmarshal([]byte(os.Getenv("REPEATERD_E2E_CONFIG")), &cfg); err != nil {
		panic(err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	sigCtx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	eng, err := tasks.OpenEngine(sigCtx, cfg, logger)
	if err != nil {
		panic(err)
	}
	// Batch events for the drills that follow one process's batches.
	eng.Processor.OnRecorded = func(b repeaters.Batch, sum store.BatchSummary) {
		logger.Info("batch recorded", "repeater", b.RepeaterID, "attempted", sum.Attempted, "failed", sum.Failed)
	}
	eng.Processor.OnApplied = func(id int64, d store.BatchDecision) {
		logger.Info("batch applied", "repeater", id, "backoff_count", d.BackoffCount)
	}
	services := roleServices(eng, roles)
	for _, s := range services {
		if err := s.Start(sigCtx); err != nil {
			panic(err)
		}
	}
	fmt.Fprintln(os.Stderr, "roles started:", roles)
	<-sigCtx.Done()
	for _, s := range services {
		_ = s.Stop(ctx)
	}
	eng.Close()
}

func roleServices(eng *tasks.Engine, roles string) []lifecycle.Service {
	services, err := eng.Services(ctx, strings.Split(roles, ","), nil)
	if err != nil {
		panic(err)
	}
	return services
}

// harness is one isolated system: its own database, Redis DB and sinks.
type harness struct {
	t   *testing.T
	cfg tasks.EngineConfig
	eng *tasks.Engine
}

func testConfig(t *testing.T) tasks.EngineConfig {
	return tasks.EngineConfig{
		DatabaseURL: storetest.NewDB(t),
		RedisURL:    storetest.RedisDB(t),
		Sender:      repeaters.SenderConfig{AllowPrivateTargets: true, Version: "test"},
		LockTTL:     2 * time.Second,
		Backoff:     repeaters.BackoffPolicy{Min: time.Second, Max: 5 * time.Second, Jitter: 0.0001},
		Dispatcher:  repeaters.DispatcherConfig{LeaseTTL: 1500 * time.Millisecond},
		Worker:      tasks.WorkerConfig{Concurrency: 8, DrainTimeout: 5 * time.Second},
		Legacy:      tasks.LegacyConfig{Schedule: repeaters.LegacySchedule{Min: time.Second, Max: 5 * time.Second}},
		Scheduler:   tasks.SchedulerConfig{CheckInterval: 200 * time.Millisecond},
	}
}

func newHarness(t *testing.T, edit ...func(*tasks.EngineConfig)) *harness {
	t.Helper()
	cfg := testConfig(t)
	for _, e := range edit {
		e(&cfg)
	}
	eng, err := tasks.OpenEngine(ctx, cfg, slog.New(slog.NewTextHandler(debugOut(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return &harness{t: t, cfg: cfg, eng: eng}
}

// start runs roles in-process until the test ends.
func (h *harness) start(roles ...string) {
	h.t.Helper()
	for _, s := range roleServices(h.eng, strings.Join(roles, ",")) {
		if err := s.Start(ctx); err != nil {
			h.t.Fatal(err)
		}
		h.t.Cleanup(func() { _ = s.Stop(ctx) })
	}
}

// spawn runs roles in a subprocess; the returned process can be killed.
func (h *harness) spawn(roles string) *process { return h.spawnWith(h.cfg, roles) }

// spawnWith runs roles on cfg in a subprocess, started through prefix (a
// command and its arguments, such as `ip netns exec NAME`) when given.
func (h *harness) spawnWith(c tasks.EngineConfig, roles string, prefix ...string) *process {
	h.t.Helper()
	cfg, _ := json.Marshal(c)
	argv := append(append([]string(nil), prefix...), os.Args[0], "-test.run=^$")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), roleEnv+"="+roles, "REPEATERD_E2E_CONFIG="+string(cfg))
	stderr, _ := cmd.StderrPipe()
	p := &process{cmd: cmd, started: make(chan struct{}), leading: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	go p.watch(stderr)
	h.t.Cleanup(p.kill)
	select {
	case <-p.started:
	case <-time.After(20 * time.Second):
		h.t.Fatalf("subprocess %s did not start", roles)
	}
	return p
}

// spawnDispatchers starts two dispatcher subprocesses and returns the one
// that leads, then the standby.
func (h *harness) spawnDispatchers() (leader, standby *process) {
	h.t.Helper()
	a, b := h.spawn("dispatcher"), h.spawn("dispatcher")
	h.waitFor("a leader", 10*time.Second, func() bool { return a.isLeading() || b.isLeading() })
	if b.isLeading() {
		return b, a
	}
	return a, b
}

type process struct {
	cmd      *exec.Cmd
	started  chan struct{}
	leading  chan struct{}
	once     sync.Once
	leadOnce sync.Once
	mu       sync.Mutex
	logged   []logLine // the child's warnings, errors and batch events
}

type logLine struct {
	at   time.Time // when the parent read it
	text string
}

// linesAfter returns the child's log lines kept (warnings, errors, batch
// events) that were read after at and contain substr.
func (p *process) linesAfter(at time.Time, substr string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, l := range p.logged {
		if l.at.After(at) && strings.Contains(l.text, substr) {
			out = append(out, l.text)
		}
	}
	return out
}

func (p *process) watch(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if os.Getenv("E2E_DEBUG") != "" {
			fmt.Fprintln(os.Stderr, "child:", line)
		}
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") || strings.Contains(line, "msg=\"batch ") {
			p.mu.Lock()
			p.logged = append(p.logged, logLine{time.Now(), line})
			p.mu.Unlock()
		}
		if strings.Contains(line, "roles started") {
			p.once.Do(func() { close(p.started) })
		}
		if strings.Contains(line, "dispatcher leading") {
			p.leadOnce.Do(func() { close(p.leading) })
		}
	}
}

func (p *process) kill() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
}

func (p *process) isLeading() bool {
	select {
	case <-p.leading:
		return true
	default:
		return false
	}
}

func (h *harness) repeater(domain, url string, edit ...func(*store.Repeater)) *store.Repeater {
	h.t.Helper()
	r := &store.Repeater{Domain: domain, Name: domain + url, URL: url}
	for _, e := range edit {
		e(r)
	}
	if err := h.eng.Store.CreateRepeater(ctx, r); err != nil {
		h.t.Fatal(err)
	}
	return r
}

func (h *harness) load(r *store.Repeater, n int) []int64 {
	h.t.Helper()
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = []byte(fmt.Sprintf(`{"n":%d}`, i))
	}
	ids, err := h.eng.Store.RegisterMany(ctx, r.ID, "application/json", bodies)
	if err != nil {
		h.t.Fatal(err)
	}
	return ids
}

func (h *harness) countSQL(sql string, args ...any) int {
	h.t.Helper()
	var n int
	if err := h.eng.Store.Pool().QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}

// waitFor re-checks cond every 20ms until it holds or timeout passes. Its
// conditions span processes (subprocess roles, the sink, the database) that
// no single signal announces, so it polls; a wait on one event of the
// in-process engine uses awaitEvent on the engine's signals instead.
func (h *harness) waitFor(what string, timeout time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			h.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-poll.C:
		}
	}
}

// awaitEvent waits for the next event on ch (fed by an engine signal such
// as Processor.OnRecorded), failing the test after timeout.
func awaitEvent[T any](t *testing.T, ch <-chan T, what string, timeout time.Duration) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
		panic("unreachable")
	}
}

// signalInto returns a hook for an engine signal that passes each event to
// the returned channel, dropping events the test is not keeping up with
// rather than stalling the engine.
func signalInto[T any]() (func(T), <-chan T) {
	ch := make(chan T, 256)
	return func(v T) {
		select {
		case ch <- v:
		default:
		}
	}, ch
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func debugOut() io.Writer {
	if os.Getenv("E2E_DEBUG") != "" {
		return os.Stderr
	}
	return io.Discard
}
