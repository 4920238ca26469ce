package walstats

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"repeaterd/repeaters/lifecycle"
	"repeaterd/store"
)

// Retry delays between replication sessions; a SIGKILLed predecessor's
// walsender can hold the slot for a moment, so the first retry is quick.
const (
	retryMin = 250 * time.Millisecond
	retryMax = 15 * time.Second
)

// Consumer is the stats role: it keeps repeat_record_stats current from the
// WAL (see the package doc). One process at a time consumes a slot; others
// wait for it to stop.
type Consumer struct {
	cfg        Config
	connConfig *pgconn.Config
	store      *store.Store
	metrics    metrics
	applied    atomic.Uint64 // pglogrepl.LSN committed to stats_progress
	status     statusBox

	life lifecycle.Base

	// observeDelay, when set (tests), gets each applied transaction's
	// commit-to-applied delay.
	observeDelay func(time.Duration)
}

// New returns a consumer writing through st; cfg's zero fields take their
// defaults.
func New(st *store.Store, cfg Config) (*Consumer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	connConfig, err := pgconn.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("stats: bad DatabaseURL: %w", err)
	}
	return &Consumer{cfg: cfg, connConfig: connConfig, store: st, metrics: newMetrics()}, nil
}

// Start consumes the slot in the background until Stop, reconnecting after
// errors. It does not fail when the server cannot feed the stats (an error
// wrapping ErrWALUnavailable, or a slot of another database): the consumer
// is then degraded, says why in Health and Status, keeps retrying, and the
// dashboards serve live counts meanwhile. Only the other roles of the
// process are unaffected by design.
func (c *Consumer) Start(ctx context.Context) error {
	return c.life.Start(ctx, func(ctx context.Context) error {
		c.status.set(StateStarting, nil)
		c.life.Go(func() { c.run(ctx) })
		return nil
	})
}

// Stop stops consuming, applying and acknowledging what was received, and
// waits for the background work to end.
func (c *Consumer) Stop(ctx context.Context) error {
	err := c.life.Stop(ctx, nil)
	c.status.set(StateStopped, nil)
	return err
}

// AppliedLSN is the end of the WAL applied to the stats, as far as this
// consumer knows.
func (c *Consumer) AppliedLSN() pglogrepl.LSN { return pglogrepl.LSN(c.applied.Load()) }

// Collectors returns the consumer's metrics, for the caller to register.
func (c *Consumer) Collectors() []prometheus.Collector {
	return []prometheus.Collector{c.metrics.lagBytes, c.metrics.appliedLSN, c.metrics.appliedChanges,
		c.metrics.heartbeat, c.metrics.streaming}
}

type metrics struct {
	lagBytes       prometheus.Gauge
	appliedLSN     prometheus.Gauge
	appliedChanges prometheus.Counter
	heartbeat      prometheus.Gauge
	streaming      prometheus.Gauge
}

func newMetrics() metrics {
	return metrics{
		lagBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "repeaterd_stats_lag_bytes",
			Help: "Bytes of WAL between the stats slot's confirmed position and the server's current position.",
		}),
		appliedLSN: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "repeaterd_stats_applied_lsn",
			Help: "WAL position (LSN as a number) applied to repeat_record_stats.",
		}),
		appliedChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "repeaterd_stats_applied_changes_total",
			Help: "Row changes of repeat_records applied to repeat_record_stats.",
		}),
		heartbeat: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "repeaterd_stats_heartbeat_timestamp_seconds",
			Help: "Unix time this consumer last applied or acknowledged its slot (every few seconds while it streams); 0 in a standby or degraded consumer that never streamed.",
		}),
		streaming: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "repeaterd_stats_streaming",
			Help: "1 while this consumer streams its slot; 0 while it stands by, starts or is degraded.",
		}),
	}
}

// run keeps a replication session going until ctx ends.
func (c *Consumer) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { c.refreshLag(ctx) })
	defer wg.Wait()
	delay := retryMin
	for ctx.Err() == nil {
		began := time.Now()
		err := c.runOnce(ctx)
		c.metrics.streaming.Set(0)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > time.Minute {
			delay = retryMin // it streamed a while: this is a new failure
		}
		level := slog.LevelWarn
		if store.ErrorCode(err) == store.ECONFLICT {
			level = slog.LevelInfo // a standby: another process is the consumer
			c.status.set(StateStandby, nil)
		} else {
			c.status.set(StateDegraded, err)
		}
		c.cfg.Logger.Log(ctx, level, "stats: replication session ended; retrying", "slot", c.cfg.SlotName,
			"error", err, "retry_in", delay)
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(2*delay, retryMax)
	}
}

// refreshLag keeps the lag gauge current, even while no session runs.
func (c *Consumer) refreshLag(ctx context.Context) {
	t := time.NewTicker(c.cfg.StandbyInterval)
	defer t.Stop()
	for {
		if lag, err := c.store.StatsLagBytes(ctx, c.cfg.SlotName); err == nil {
			c.metrics.lagBytes.Set(float64(lag))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// runOnce is one replication session: take the consumer lock, connect,
// resume or create the slot, then stream until ctx ends or something fails.
func (c *Consumer) runOnce(ctx context.Context) error {
	if err := c.preflight(ctx); err != nil {
		return err
	}
	release, err := c.store.LockStats(ctx, c.cfg.SlotName)
	if err != nil {
		return err
	}
	defer release()
	conn, err := connect(ctx, c.connConfig)
	if err != nil {
		return err
	}
	defer func() { _ = conn.close(ctx) }()
	start, err := c.prepareSlot(ctx, conn)
	if err != nil {
		return err
	}
	c.noteApplied(start, 0)
	if err := conn.startReplication(ctx, c.cfg.SlotName, c.cfg.Publication, start); err != nil {
		return err
	}
	prev := c.status.set(StateStreaming, nil)
	c.metrics.streaming.Set(1)
	c.metrics.heartbeat.SetToCurrentTime()
	if prev.State == StateDegraded {
		c.cfg.Logger.Info("stats: resumed streaming", "slot", c.cfg.SlotName, "from", start,
			"degraded_for", time.Since(prev.Since).Round(time.Second), "was", prev.Err)
	} else {
		c.cfg.Logger.Info("stats: streaming", "slot", c.cfg.SlotName, "from", start)
	}
	return c.newSession(conn, start).run(ctx)
}

// noteApplied records that stats_progress holds lsn, after changes more
// row changes were applied.
func (c *Consumer) noteApplied(lsn pglogrepl.LSN, changes int) {
	c.applied.Store(uint64(lsn))
	c.metrics.heartbeat.SetToCurrentTime()
	c.metrics.appliedLSN.Set(float64(lsn))
	c.metrics.appliedChanges.Add(float64(changes))
	if c.cfg.OnApplied != nil {
		c.cfg.OnApplied(lsn)
	}
}
