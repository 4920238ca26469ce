package repeaters

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"repeaterd/repeaters/lifecycle"
	"repeaterd/store"
)

// Batch is one process_repeater task: send up to Limit records of a
// repeater while Token holds its lock.
type Batch struct {
	RepeaterID int64  `json:"repeater_id"`
	Domain     string `json:"domain"`
	Token      string `json:"token"`
	Limit      int    `json:"limit"`
}

// Enqueuer hands a batch to the workers (tasks adapts asynq to it).
type Enqueuer interface {
	EnqueueBatch(ctx context.Context, b Batch) error
}

// Dispatcher defaults.
const (
	DefaultBatchSize   = 50
	DefaultPollCeiling = time.Second
)

// DispatcherConfig configures the dispatcher.
type DispatcherConfig struct {
	// BatchSize is the most records one batch sends. Defaults to 50.
	BatchSize int
	// DomainMaxInFlight caps one domain's batches in flight. Defaults to
	// half of TotalConcurrency, so one domain cannot take every worker.
	DomainMaxInFlight int
	// TotalConcurrency returns the worker pool's total concurrency. Defaults
	// to a constant 20.
	TotalConcurrency func(context.Context) int `json:"-"`
	// DomainRatePerS and DomainBurst limit each domain's records per second. 0 = none.
	DomainRatePerS float64
	DomainBurst    int
	// GlobalRatePerS and GlobalBurst limit all records per second. 0 = none.
	GlobalRatePerS float64
	GlobalBurst    int
	// PollCeiling is the longest the dispatcher sleeps without a wake-up. Defaults to 1s.
	PollCeiling time.Duration
	// LeaseTTL is the leader lease. Defaults to 5s.
	LeaseTTL time.Duration
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time `json:"-"`
}

func (c DispatcherConfig) withDefaults() DispatcherConfig {
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.TotalConcurrency == nil {
		c.TotalConcurrency = func(context.Context) int { return 20 }
	}
	if c.PollCeiling <= 0 || c.PollCeiling > time.Second {
		c.PollCeiling = DefaultPollCeiling
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Dispatcher finds ready repeaters and hands each a batch, round-robin
// across domains, under rate limits and per-domain caps. One process leads
// at a time; the others stand by.
type Dispatcher struct {
	cfg     DispatcherConfig
	store   *store.Store
	rdb     redis.UniversalClient
	locker  *Locker
	enqueue Enqueuer
	elector *Elector
	logger  *slog.Logger

	wake     chan struct{}
	pass     int
	limits   *limits
	inFlight map[int64]string // repeater → domain, for batches this leader enqueued

	life lifecycle.Base
}

// NewDispatcher wires a dispatcher.
func NewDispatcher(cfg DispatcherConfig, st *store.Store, rdb redis.UniversalClient, locker *Locker, enq Enqueuer, logger *slog.Logger) *Dispatcher {
	cfg = cfg.withDefaults()
	return &Dispatcher{
		cfg: cfg, store: st, rdb: rdb, locker: locker, enqueue: enq, logger: logger,
		elector: NewElector(rdb, cfg.LeaseTTL, logger),
		wake:    make(chan struct{}, 1),
	}
}

// Start runs the dispatcher until Stop.
func (d *Dispatcher) Start(ctx context.Context) error {
	return d.life.Start(ctx, func(ctx context.Context) error {
		d.life.Go(func() { d.elector.Run(ctx, d.lead) })
		return nil
	})
}

// Stop stops dispatching and gives up the lease.
func (d *Dispatcher) Stop(ctx context.Context) error { return d.life.Stop(ctx, nil) }

// lead is the leader's loop: a pass, then sleep until something can change.
func (d *Dispatcher) lead(ctx context.Context) {
	leading.Set(1)
	defer leading.Set(0)
	d.limits = newLimits(d.cfg.DomainRatePerS, d.cfg.DomainBurst, d.cfg.GlobalRatePerS, d.cfg.GlobalBurst)
	d.inFlight = map[int64]string{}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); d.listenPostgres(ctx) }()
	go func() { defer wg.Done(); d.listenRedis(ctx) }()
	defer wg.Wait()
	for ctx.Err() == nil {
		wait, err := d.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			d.logger.Warn("dispatcher pass", "err", err)
			wait = d.cfg.PollCeiling
		}
		d.sleep(ctx, wait)
	}
}

func (d *Dispatcher) sleep(ctx context.Context, wait time.Duration) {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-d.wake:
	}
}

// Wake makes a sleeping dispatcher run a pass now.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// RunOnce runs one pass and returns how long the dispatcher may sleep.
// It is exported for tests that drive single steps.
func (d *Dispatcher) RunOnce(ctx context.Context) (time.Duration, error) {
	if d.limits == nil {
		d.limits = newLimits(d.cfg.DomainRatePerS, d.cfg.DomainBurst, d.cfg.GlobalRatePerS, d.cfg.GlobalBurst)
		d.inFlight = map[int64]string{}
	}
	start := d.cfg.Now()
	defer func() { passDuration.Observe(time.Since(start).Seconds()) }()
	// Locks first: a batch whose update commits a backoff and releases its
	// lock after this point is still seen as in flight, never as ready.
	if err := d.forgetFinished(ctx); err != nil {
		return 0, err
	}
	groups, err := d.store.ReadyRepeaters(ctx, start)
	if err != nil {
		return 0, err
	}
	order := RoundRobin(groups, d.pass)
	d.pass++
	readyRepeaters.Set(float64(len(order)))

	wait := d.cfg.PollCeiling
	perDomain := d.inFlightPerDomain()
	domainCap := d.domainCap(ctx)
	for _, r := range order {
		if _, busy := d.inFlight[r.ID]; busy {
			skips.WithLabelValues("locked").Inc()
			continue
		}
		if perDomain[r.Domain] >= domainCap {
			skips.WithLabelValues("domain_cap").Inc()
			continue
		}
		n, retryIn := d.limits.reserve(r, d.cfg.Now(), d.batchSize(r))
		if n == 0 {
			skips.WithLabelValues("rate_limited").Inc()
			wait = min(wait, max(retryIn, time.Millisecond))
			continue
		}
		ok, err := d.dispatch(ctx, r, n)
		if err != nil {
			return 0, err
		}
		if ok {
			perDomain[r.Domain]++
		}
	}
	if next, err := d.store.NextAttemptAfter(ctx, start); err == nil && !next.IsZero() {
		wait = min(wait, max(next.Sub(d.cfg.Now()), time.Millisecond))
	}
	return wait, nil
}

// dispatch locks a repeater and enqueues its batch; ok is false when another
// holder has the lock.
func (d *Dispatcher) dispatch(ctx context.Context, r store.ReadyRepeater, n int) (bool, error) {
	token, ok, err := d.locker.Acquire(ctx, r.ID)
	if err != nil {
		return false, err
	}
	if !ok {
		skips.WithLabelValues("locked").Inc()
		return false, nil
	}
	b := Batch{RepeaterID: r.ID, Domain: r.Domain, Token: token, Limit: n}
	if err := d.enqueue.EnqueueBatch(ctx, b); err != nil {
		_, _ = d.locker.Release(context.WithoutCancel(ctx), r.ID, token)
		return false, err
	}
	d.inFlight[r.ID] = r.Domain
	batchesEnqueued.Inc()
	return true, nil
}

// forgetFinished drops batches whose lock is gone (released or lapsed).
func (d *Dispatcher) forgetFinished(ctx context.Context) error {
	ids := make([]int64, 0, len(d.inFlight))
	for id := range d.inFlight {
		ids = append(ids, id)
	}
	locked, err := d.locker.Locked(ctx, ids)
	if err != nil {
		return err
	}
	for i, id := range ids {
		if !locked[i] {
			delete(d.inFlight, id)
		}
	}
	return nil
}

// batchSize is the configured size, or a single-record probe for a repeater
// whose endpoint has been failing: a dead endpoint costs one request per
// backoff window, not a batch.
func (d *Dispatcher) batchSize(r store.ReadyRepeater) int {
	if r.BackoffCount > 0 {
		return 1
	}
	return d.cfg.BatchSize
}

func (d *Dispatcher) inFlightPerDomain() map[string]int {
	out := map[string]int{}
	for _, domain := range d.inFlight {
		out[domain]++
	}
	return out
}

func (d *Dispatcher) domainCap(ctx context.Context) int {
	if d.cfg.DomainMaxInFlight > 0 {
		return d.cfg.DomainMaxInFlight
	}
	return max(1, d.cfg.TotalConcurrency(ctx)/2)
}

// RoundRobin orders ready repeaters across domains (d1r1, d2r1, d3r1, d1r2,
// …), starting from a different domain on each pass.
func RoundRobin(groups []store.DomainRepeaters, pass int) []store.ReadyRepeater {
	var out []store.ReadyRepeater
	if len(groups) == 0 {
		return out
	}
	first := pass % len(groups)
	for i := 0; ; i++ {
		added := false
		for g := range groups {
			reps := groups[(first+g)%len(groups)].Repeaters
			if i < len(reps) {
				out = append(out, reps[i])
				added = true
			}
		}
		if !added {
			return out
		}
	}
}

// listenPostgres wakes the dispatcher on NOTIFY of new records.
func (d *Dispatcher) listenPostgres(ctx context.Context) {
	for ctx.Err() == nil {
		err := d.store.Listen(ctx, store.NotifyChannel, func(*pgconn.Notification) { d.Wake() })
		if ctx.Err() == nil {
			d.logger.Warn("listen for new records", "err", err)
			sleep(ctx, time.Second)
		}
	}
}

// listenRedis wakes the dispatcher when a lock is released.
func (d *Dispatcher) listenRedis(ctx context.Context) {
	sub := d.rdb.Subscribe(ctx, WakeChannel)
	defer sub.Close()
	ch := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			d.Wake()
		}
	}
}
