package repeaters

import (
	"cmp"
	"context"
	"log/slog"
	"sync"
	"time"

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
	// Reserved is how many rate-limit tokens the dispatcher took for the
	// batch; the worker notes how many it used (Locker.NoteUsed) so the rest
	// are refunded. 0 when nothing limits the repeater.
	Reserved int `json:"reserved,omitempty"`
}

// Enqueuer hands a batch to the workers (tasks adapts asynq to it).
type Enqueuer interface {
	EnqueueBatch(ctx context.Context, b Batch) error
}

// Dispatcher defaults.
const (
	DefaultBatchSize        = 50
	DefaultPollCeiling      = time.Second
	DefaultTotalConcurrency = 20
)

// DispatcherConfig configures the dispatcher.
type DispatcherConfig struct {
	// BatchSize is the most records one batch sends. Defaults to 50.
	BatchSize int
	// DomainMaxInFlight caps one domain's batches in flight below its share
	// of the worker pool (domainCap). Defaults to the share alone.
	DomainMaxInFlight int
	// TotalConcurrency returns the worker pool's total concurrency. Defaults
	// to a constant 20 (DefaultTotalConcurrency).
	TotalConcurrency func(context.Context) int `json:"-"`
	// DomainRatePerS limits each domain's records per second. Defaults to
	// none (0).
	DomainRatePerS float64
	// DomainBurst is the domain limit's burst. Defaults to the rate's
	// one-second worth (at least 1).
	DomainBurst int
	// GlobalRatePerS limits all records per second. Defaults to none (0).
	GlobalRatePerS float64
	// GlobalBurst is the global limit's burst. Defaults to the rate's
	// one-second worth (at least 1).
	GlobalBurst int
	// PollCeiling is the longest the dispatcher sleeps without a wake-up. Defaults to 1s.
	PollCeiling time.Duration
	// LeaseTTL is the leader lease. Defaults to 5s.
	LeaseTTL time.Duration
	// Clock decides which repeaters are due, the rate limits and how long
	// to sleep. Defaults to the system clock.
	Clock Clock `json:"-"`
	// OnPass is called after every pass with what it did, so a test can
	// wait for a pass instead of sleeping. It runs on the dispatcher's
	// goroutine and must not block. Defaults to none.
	OnPass func(PassResult) `json:"-"`
}

// WithDefaults returns c with every zero field set to its default. A poll
// ceiling above 1s is lowered to 1s: no ready work may wait longer.
func (c DispatcherConfig) WithDefaults() DispatcherConfig {
	c.BatchSize = cmp.Or(c.BatchSize, DefaultBatchSize)
	c.PollCeiling = min(cmp.Or(c.PollCeiling, DefaultPollCeiling), DefaultPollCeiling)
	c.LeaseTTL = cmp.Or(c.LeaseTTL, DefaultLeaseTTL)
	c.Clock = clockOr(c.Clock)
	return c
}

// Reasons a pass skips a ready repeater, as counted in PassResult.Skipped
// and by the skips metric.
const (
	SkipLocked      = "locked"       // its lock is held: a batch of it is in flight
	SkipDomainCap   = "domain_cap"   // its domain has its cap of batches in flight
	SkipRateLimited = "rate_limited" // a rate limit has no token for it yet
)

// PassResult is what one dispatcher pass did.
type PassResult struct {
	// Ready is how many ready repeaters the pass saw.
	Ready int
	// Batches are the batches it enqueued, in order.
	Batches []Batch
	// Skipped counts the ready repeaters it passed over, by reason (SkipLocked, …).
	Skipped map[string]int
	// Wait is how long the dispatcher may sleep before the next pass.
	Wait time.Duration
	// Err is why the pass ended early, if it did.
	Err error
}

func (res *PassResult) skip(reason string) {
	res.Skipped[reason]++
	skips.WithLabelValues(reason).Inc()
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

	wake      chan struct{}
	passes    int
	limits    *Limits
	inFlight  map[int64]inFlight // batches this leader enqueued, or found locked when its term began
	fence     Fence              // this leader's term; zero outside a term (direct RunOnce in tests)
	lastPrune time.Time          // when pruneIdle last ran (real time)

	life lifecycle.Base
}

// NewDispatcher wires a dispatcher.
func NewDispatcher(cfg DispatcherConfig, st *store.Store, rdb redis.UniversalClient, locker *Locker, enq Enqueuer, logger *slog.Logger) *Dispatcher {
	cfg = cfg.WithDefaults()
	return &Dispatcher{
		cfg: cfg, store: st, rdb: rdb, locker: locker, enqueue: enq, logger: logger,
		elector: NewElector(rdb, cfg.LeaseTTL, logger),
		wake:    make(chan struct{}, 1),
		limits:  NewLimits(rdb, cfg),
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
func (d *Dispatcher) lead(ctx context.Context, fence Fence) {
	leading.Set(1)
	defer leading.Set(0)
	d.resetLeaderState()
	d.fence = fence
	if err := d.adoptHeldLocks(ctx); err != nil && ctx.Err() == nil {
		d.logger.Warn("dispatcher: count the batches in flight of an earlier term", "err", err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); d.listenPostgres(ctx) }()
	go func() { defer wg.Done(); d.listenRedis(ctx) }()
	defer wg.Wait()
	for ctx.Err() == nil {
		res, err := d.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			d.logger.Warn("dispatcher pass", "err", err)
			res.Wait = d.cfg.PollCeiling
		}
		d.sleep(ctx, res.Wait)
	}
}

// resetLeaderState starts a leadership term afresh: the batches in flight
// of an earlier term are not this term's to trust (adoptHeldLocks counts
// them from their locks). The rate-limit buckets live in Redis and carry on.
func (d *Dispatcher) resetLeaderState() {
	d.inFlight = map[int64]inFlight{}
}

// RunOnce runs one pass and reports what it did, including how long the
// dispatcher may sleep. It is exported for tests that drive single steps,
// and must not run beside a started dispatcher.
func (d *Dispatcher) RunOnce(ctx context.Context) (PassResult, error) {
	if d.inFlight == nil {
		d.resetLeaderState()
	}
	began := time.Now() // the metric times the pass in real time, whatever the clock
	res := PassResult{Skipped: map[string]int{}, Wait: d.cfg.PollCeiling}
	res.Err = d.pass(ctx, &res)
	passDuration.Observe(time.Since(began).Seconds())
	if d.cfg.OnPass != nil {
		d.cfg.OnPass(res)
	}
	return res, res.Err
}

// pass does a pass's work, noting it in res.
func (d *Dispatcher) pass(ctx context.Context, res *PassResult) error {
	start := d.cfg.Clock.Now()
	// Locks first: a batch whose update commits a backoff and releases its
	// lock after this point is still seen as in flight, never as ready.
	if err := d.forgetFinished(ctx); err != nil {
		return err
	}
	groups, err := d.store.ReadyRepeaters(ctx, start)
	if err != nil {
		return err
	}
	order := RoundRobin(groups, d.passes)
	d.passes++
	res.Ready = len(order)
	readyRepeaters.Set(float64(len(order)))
	d.pruneIdle(ctx)

	perDomain := d.inFlightPerDomain()
	domainCap := d.domainCap(ctx, d.activeDomains(order))
	due, err := d.dueCounts(ctx, order, start)
	if err != nil {
		return err
	}
	for _, r := range order {
		if _, busy := d.inFlight[r.ID]; busy {
			res.skip(SkipLocked)
			continue
		}
		if perDomain[r.Domain] >= domainCap {
			res.skip(SkipDomainCap)
			continue
		}
		n, reserved, retryIn, err := d.reserve(ctx, r, due)
		if err != nil {
			return err
		}
		if n == 0 {
			if retryIn > 0 {
				res.skip(SkipRateLimited)
				res.Wait = min(res.Wait, max(retryIn, time.Millisecond))
			}
			continue
		}
		ok, err := d.dispatch(ctx, r, n, reserved, res)
		if !ok && reserved > 0 {
			d.refund(ctx, readyKey(r), reserved)
		}
		if err != nil {
			return err
		}
		if ok {
			perDomain[r.Domain]++
		}
	}
	if next, err := d.store.NextAttemptAfter(ctx, start); err == nil && !next.IsZero() {
		res.Wait = min(res.Wait, max(next.Sub(d.cfg.Clock.Now()), time.Millisecond))
	}
	return nil
}

// dispatch locks a repeater and enqueues its batch; ok is false when another
// holder has the lock. A failed enqueue frees the lock at once.
func (d *Dispatcher) dispatch(ctx context.Context, r store.ReadyRepeater, n, reserved int, res *PassResult) (bool, error) {
	token, ok, err := d.acquire(ctx, r.ID)
	if err != nil {
		return false, err
	}
	if !ok {
		res.skip(SkipLocked)
		return false, nil
	}
	b := Batch{RepeaterID: r.ID, Domain: r.Domain, Token: token, Limit: n, Reserved: reserved}
	if err := d.enqueue.EnqueueBatch(ctx, b); err != nil {
		_, _ = d.locker.Release(context.WithoutCancel(ctx), r.ID, token)
		return false, err
	}
	d.inFlight[r.ID] = inFlight{domain: r.Domain, token: token, reserved: reserved, key: readyKey(r)}
	res.Batches = append(res.Batches, b)
	batchesEnqueued.Inc()
	return true, nil
}

// acquire takes the repeater's lock under this leader's fence, so a leader
// that was paused past its lease dispatches nothing.
func (d *Dispatcher) acquire(ctx context.Context, repeaterID int64) (string, bool, error) {
	if d.fence.Token == "" {
		return d.locker.Acquire(ctx, repeaterID)
	}
	return d.locker.AcquireFenced(ctx, repeaterID, d.fence)
}

// forgetFinished drops batches whose lock is gone (released or lapsed) and
// refunds the tokens they reserved but did not use.
func (d *Dispatcher) forgetFinished(ctx context.Context) error {
	ids := make([]int64, 0, len(d.inFlight))
	for id := range d.inFlight {
		ids = append(ids, id)
	}
	locked, err := d.locker.Locked(ctx, ids)
	if err != nil {
		return err
	}
	var done []inFlight
	for i, id := range ids {
		if !locked[i] {
			if b := d.inFlight[id]; b.reserved > 0 {
				done = append(done, b)
			}
			delete(d.inFlight, id)
		}
	}
	return d.refundUnused(ctx, done)
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
	for _, b := range d.inFlight {
		out[b.domain]++
	}
	return out
}
