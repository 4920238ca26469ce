package bench

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"repeaterd/repeaters/lifecycle"
	"repeaterd/store"
	"repeaterd/store/benchdb"
	"repeaterd/tasks"
)

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
	// size is the scenario's size preset resolved from --size.
	size int
	// server, when set, is the Postgres server freshDB uses instead of
	// opt.DatabaseURL (the fsync-off column).
	server string
}

// prepare resolves the scenario's size and notes what every scenario of
// its kind reports.
func (e *env) prepare() error {
	if e.sc.size.figure != "" {
		n, err := e.sizeOf(e.sc.size.full, e.sc.size.quick)
		if err != nil {
			return err
		}
		e.size = n
		e.figure(e.sc.size.figure, n)
	}
	if e.sc.comparesPaths {
		e.notef(sidesNote)
	}
	return nil
}

// freshDB drops and recreates the scenario's database, migrated.
func (e *env) freshDB(ctx context.Context) (*store.Store, error) {
	url, err := benchdb.RecreateDatabase(ctx, cmp.Or(e.server, e.opt.DatabaseURL), e.dbName)
	if err != nil {
		return nil, err
	}
	e.dbURL = url
	return store.Open(ctx, url)
}

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

// eachSide runs one side per element of sides, in order, each with e.side;
// run fills in its element.
func eachSide[P any](ctx context.Context, e *env, sides []P, run func(p *P, st *store.Store, sink *sinkProc) error) error {
	for i := range sides {
		if err := e.side(ctx, func(st *store.Store, sink *sinkProc) error { return run(&sides[i], st, sink) }); err != nil {
			return err
		}
	}
	return nil
}

// freshRedis flushes the scenario's Redis DB index and points redisURL at it.
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
	return e.startSystemWith(ctx, e.engineConfig(processRepeatersDefault), tasks.RoleDispatcher, tasks.RoleWorker, tasks.RoleScheduler)
}

// startSystemWith starts roles in process on cfg (a scenario's departure
// from engineConfig, which it reports as tuning).
func (e *env) startSystemWith(ctx context.Context, cfg tasks.EngineConfig, roles ...string) (*system, error) {
	eng, err := tasks.OpenEngine(ctx, cfg, e.logger)
	if err != nil {
		return nil, err
	}
	services, err := eng.Services(ctx, roles, nil)
	if err == nil {
		err = lifecycle.StartAll(ctx, services)
	}
	if err != nil {
		eng.Close()
		return nil, err
	}
	return &system{eng: eng, services: services}, nil
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

// stopChild asks a child process to exit (SIGTERM) and kills it if it has
// not within grace; exited is closed once it has been waited for.
func stopChild(p *os.Process, exited <-chan struct{}, grace time.Duration) {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		_ = p.Kill()
		<-exited
	}
}

// onFsyncOffServer runs fn with freshDB on the fsync-off server, and drops
// the scenario's database there afterwards.
func (e *env) onFsyncOffServer(ctx context.Context, fn func() error) error {
	e.server = e.opt.FsyncOffURL
	defer func() {
		e.server = ""
		if !e.opt.KeepDB {
			if err := benchdb.DropDatabase(context.WithoutCancel(ctx), e.opt.FsyncOffURL, e.dbName); err != nil {
				e.logf("drop %s on the fsync-off server: %v", e.dbName, err)
			}
		}
	}()
	return fn()
}
