package dashboards

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"

	"repeaterd/repeaters/lifecycle"
	"repeaterd/store"
)

// Defaults of StatsConfig.
const (
	DefaultStatsSlotName    = "repeaterd_stats"
	DefaultStatsPublication = "repeaterd_stats" // created by migration 00010
	DefaultStandbyInterval  = 10 * time.Second
	DefaultStatsBatchSize   = 5000
	DefaultStatsBatchWait   = 100 * time.Millisecond
)

// Retry delays between replication sessions; a SIGKILLed predecessor's
// walsender can hold the slot for a moment, so the first retry is quick.
const (
	statsRetryMin = 250 * time.Millisecond
	statsRetryMax = 15 * time.Second
)

// ErrWALUnavailable is wrapped by the errors that mean the WAL stats cannot
// run on this server or schema as it is (wal_level, REPLICATION, migration);
// each names its fix. Callers serve live counts instead (store.RecordCounts).
var ErrWALUnavailable = errors.New("WAL stats unavailable")

// StatsConfig configures a StatsConsumer.
type StatsConfig struct {
	// DatabaseURL is the database whose repeat_records are counted; the
	// consumer opens its replication connection with it. Required.
	DatabaseURL string
	// SlotName is the logical replication slot; slots are cluster-wide, so two
	// databases on one server need different names. Defaults to "repeaterd_stats".
	SlotName string
	// Publication is the pgoutput publication on repeat_records. Defaults to
	// "repeaterd_stats".
	Publication string
	// StandbyInterval is how often the slot is acknowledged (and the lag
	// gauge refreshed); it must stay well below the server's
	// wal_sender_timeout. Defaults to 10s.
	StandbyInterval time.Duration
	// BatchSize is how many row changes, summed over WAL transactions, are
	// applied in one database transaction at most. Defaults to 5000.
	BatchSize int
	// BatchWait is how long the first transaction of a batch waits for more
	// before the batch is applied: the bound on added lag. Defaults to 100ms.
	BatchWait time.Duration
	// Logger receives session errors and slot changes. Defaults to slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns c with zero fields set to their defaults.
func (c StatsConfig) WithDefaults() StatsConfig {
	if c.SlotName == "" {
		c.SlotName = DefaultStatsSlotName
	}
	if c.Publication == "" {
		c.Publication = DefaultStatsPublication
	}
	if c.StandbyInterval == 0 {
		c.StandbyInterval = DefaultStandbyInterval
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultStatsBatchSize
	}
	if c.BatchWait == 0 {
		c.BatchWait = DefaultStatsBatchWait
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// identifier is what slot and publication names are restricted to: they are
// spliced into replication commands, which take no parameters.
var identifier = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

func (c StatsConfig) validate() error {
	switch {
	case c.DatabaseURL == "":
		return errors.New("stats: DatabaseURL is required")
	case !identifier.MatchString(c.SlotName):
		return fmt.Errorf("stats: slot name %q must be 1-63 of a-z, 0-9 and _", c.SlotName)
	case !identifier.MatchString(c.Publication):
		return fmt.Errorf("stats: publication %q must be 1-63 of a-z, 0-9 and _", c.Publication)
	case c.StandbyInterval < 0, c.BatchSize < 0, c.BatchWait < 0:
		return errors.New("stats: StandbyInterval, BatchSize and BatchWait must not be negative")
	}
	return nil
}

// StatsConsumer is the stats role: it keeps repeat_record_stats current from
// the WAL (see the package doc). One process at a time consumes a slot;
// others wait for it to stop.
type StatsConsumer struct {
	cfg        StatsConfig
	connConfig *pgconn.Config
	store      *store.Store
	metrics    statsMetrics
	applied    atomic.Uint64 // pglogrepl.LSN committed to stats_progress

	life lifecycle.Base

	// observeDelay, when set (tests), gets each applied transaction's
	// commit-to-applied delay.
	observeDelay func(time.Duration)
}

// NewStatsConsumer returns a consumer writing through st; cfg's zero fields
// take their defaults.
func NewStatsConsumer(st *store.Store, cfg StatsConfig) (*StatsConsumer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	connConfig, err := pgconn.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("stats: bad DatabaseURL: %w", err)
	}
	return &StatsConsumer{cfg: cfg, connConfig: connConfig, store: st, metrics: newStatsMetrics()}, nil
}

// Start checks the server can feed the stats, then consumes the slot in the
// background until Stop, reconnecting after errors. An error wrapping
// ErrWALUnavailable means it never will as configured.
func (c *StatsConsumer) Start(ctx context.Context) error {
	return c.life.Start(ctx, func(ctx context.Context) error {
		if err := c.preflight(ctx); err != nil {
			return err
		}
		c.life.Go(func() { c.run(ctx) })
		return nil
	})
}

// Stop stops consuming, applying and acknowledging what was received, and
// waits for the background work to end.
func (c *StatsConsumer) Stop(ctx context.Context) error { return c.life.Stop(ctx, nil) }

// AppliedLSN is the end of the WAL applied to the stats, as far as this
// consumer knows.
func (c *StatsConsumer) AppliedLSN() pglogrepl.LSN { return pglogrepl.LSN(c.applied.Load()) }

// Collectors returns the consumer's metrics, for the caller to register.
func (c *StatsConsumer) Collectors() []prometheus.Collector {
	return []prometheus.Collector{c.metrics.lagBytes, c.metrics.appliedLSN, c.metrics.appliedChanges}
}

type statsMetrics struct {
	lagBytes       prometheus.Gauge
	appliedLSN     prometheus.Gauge
	appliedChanges prometheus.Counter
}

func newStatsMetrics() statsMetrics {
	return statsMetrics{
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
	}
}

// preflight turns a server or schema that cannot feed the stats into an
// error naming the fix, before anything is created.
func (c *StatsConsumer) preflight(ctx context.Context) error {
	setup, err := c.store.GetStatsSetup(ctx, c.cfg.Publication)
	if err != nil {
		return fmt.Errorf("stats: read server settings: %w", err)
	}
	if err := checkStatsSetup(setup, c.cfg.Publication); err != nil {
		return err
	}
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

func checkStatsSetup(s *store.StatsSetup, publication string) error {
	switch {
	case s.WALLevel != "logical":
		return fmt.Errorf("stats: %w: wal_level is %q, logical decoding needs logical: "+
			"set wal_level = logical in postgresql.conf and restart Postgres", ErrWALUnavailable, s.WALLevel)
	case !s.CanReplicate:
		return fmt.Errorf("stats: %w: role %q may not open replication connections: "+
			"grant it the REPLICATION attribute: ALTER ROLE %s WITH REPLICATION (as a superuser)",
			ErrWALUnavailable, s.User, s.User)
	case !s.Publication:
		return fmt.Errorf("stats: %w: publication %q not found: run `repeaterd migrate`", ErrWALUnavailable, publication)
	case !s.ReplicaIdentityFull:
		return fmt.Errorf("stats: %w: repeat_records lacks REPLICA IDENTITY FULL: run `repeaterd migrate`", ErrWALUnavailable)
	}
	return nil
}

// classify wraps the server's refusals of logical replication with their fix.
func classify(err error, user string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch {
	case pgErr.Code == "42501": // insufficient_privilege: not a replication role
		return fmt.Errorf("%w: %w: grant the REPLICATION attribute: ALTER ROLE %s WITH REPLICATION (as a superuser)",
			err, ErrWALUnavailable, user)
	case strings.Contains(pgErr.Message, "wal_level"):
		return fmt.Errorf("%w: %w: set wal_level = logical in postgresql.conf and restart Postgres",
			err, ErrWALUnavailable)
	}
	return err
}

// connect opens the replication connection (database mode: logical decoding
// and plain SQL).
func (c *StatsConsumer) connect(ctx context.Context) (*pgconn.PgConn, error) {
	cfg := c.connConfig.Copy()
	cfg.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, c.classify(fmt.Errorf("stats: replication connection: %w", err))
	}
	return conn, nil
}

func (c *StatsConsumer) classify(err error) error { return classify(err, c.connConfig.User) }

// run keeps a replication session going until ctx ends.
func (c *StatsConsumer) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { c.refreshLag(ctx) })
	defer wg.Wait()
	delay := statsRetryMin
	for ctx.Err() == nil {
		began := time.Now()
		err := c.runOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > time.Minute {
			delay = statsRetryMin // it streamed a while: this is a new failure
		}
		level := slog.LevelWarn
		if store.ErrorCode(err) == store.ECONFLICT {
			level = slog.LevelInfo // a standby: another process is the consumer
		}
		c.cfg.Logger.Log(ctx, level, "stats: replication session ended; retrying", "slot", c.cfg.SlotName,
			"error", err, "retry_in", delay)
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(2*delay, statsRetryMax)
	}
}

// refreshLag keeps the lag gauge current, even while no session runs.
func (c *StatsConsumer) refreshLag(ctx context.Context) {
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
func (c *StatsConsumer) runOnce(ctx context.Context) error {
	release, err := c.store.LockStats(ctx, c.cfg.SlotName)
	if err != nil {
		return err
	}
	defer release()
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(ctx)
	}()
	start, err := c.prepareSlot(ctx, conn)
	if err != nil {
		return err
	}
	c.noteApplied(start, 0)
	err = pglogrepl.StartReplication(ctx, conn, c.cfg.SlotName, start, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + c.cfg.Publication + "'"},
	})
	if err != nil {
		return c.classify(fmt.Errorf("stats: start replication: %w", err))
	}
	c.cfg.Logger.Info("stats: streaming", "slot", c.cfg.SlotName, "from", start)
	return c.newStream(conn, start).run(ctx)
}

// prepareSlot returns where to stream from: the stored applied LSN when the
// slot is the one the stats were counted against, else a new slot's
// consistent point after counting the existing records.
func (c *StatsConsumer) prepareSlot(ctx context.Context, conn *pgconn.PgConn) (pglogrepl.LSN, error) {
	applied, err := c.store.AppliedLSN(ctx, c.cfg.SlotName)
	fed := err == nil
	if err != nil && store.ErrorCode(err) != store.ENOTFOUND {
		return 0, err
	}
	slot, err := c.store.GetReplicationSlot(ctx, c.cfg.SlotName)
	if err != nil && store.ErrorCode(err) != store.ENOTFOUND {
		return 0, err
	}
	// Acknowledgements never pass the stored LSN, so a slot confirmed beyond
	// it has been advanced or recreated by someone else and skipped changes.
	if fed && slot != nil && slot.ConfirmedFlush <= applied {
		return applied, nil
	}
	switch {
	case slot != nil:
		c.cfg.Logger.Warn("stats: slot does not match the stored counts; recreating it and recounting",
			"slot", c.cfg.SlotName, "applied_lsn", applied, "confirmed_flush_lsn", slot.ConfirmedFlush)
		if err := pglogrepl.DropReplicationSlot(ctx, conn, c.cfg.SlotName, pglogrepl.DropReplicationSlotOptions{}); err != nil {
			return 0, fmt.Errorf("stats: drop stale slot: %w", err)
		}
	case fed:
		c.cfg.Logger.Warn("stats: the slot feeding the stats is gone; recreating it and recounting",
			"slot", c.cfg.SlotName)
	}
	return c.createSlot(ctx, conn)
}

// createSlot creates the slot with an exported snapshot and counts the
// existing records in that snapshot before the connection does anything
// else (the next command ends the export).
func (c *StatsConsumer) createSlot(ctx context.Context, conn *pgconn.PgConn) (pglogrepl.LSN, error) {
	previous, err := c.store.StatsFeedSlot(ctx)
	if err != nil {
		return 0, err
	}
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, c.cfg.SlotName, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{SnapshotAction: "EXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication})
	if err != nil {
		return 0, c.classify(fmt.Errorf("stats: create slot: %w", err))
	}
	point, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return 0, err
	}
	err = c.store.BackfillStats(ctx, store.BackfillStatsParams{
		Slot: c.cfg.SlotName, Snapshot: res.SnapshotName, ConsistentPoint: point})
	if err != nil {
		return 0, fmt.Errorf("stats: count existing records: %w", err)
	}
	c.cfg.Logger.Info("stats: created slot and counted existing records", "slot", c.cfg.SlotName, "lsn", point)
	if previous != "" && previous != c.cfg.SlotName {
		// It fed the stats before; left alone it would hold WAL forever.
		if err := c.store.DropReplicationSlot(ctx, previous); err != nil {
			c.cfg.Logger.Warn("stats: drop the previous slot by hand", "slot", previous, "error", err)
		}
	}
	return point, nil
}

func (c *StatsConsumer) noteApplied(lsn pglogrepl.LSN, changes int) {
	c.applied.Store(uint64(lsn))
	c.metrics.appliedLSN.Set(float64(lsn))
	c.metrics.appliedChanges.Add(float64(changes))
}

// stream is one session's replication stream and its unapplied batch.
type stream struct {
	c       *StatsConsumer
	conn    *pgconn.PgConn
	dec     *walDecoder
	idleEnd pglogrepl.LSN // server WAL position seen between transactions
	nextAck time.Time
	flushBy time.Time // zero while the batch is empty
}

func (c *StatsConsumer) newStream(conn *pgconn.PgConn, start pglogrepl.LSN) *stream {
	return &stream{c: c, conn: conn, dec: newWALDecoder(start), nextAck: time.Now().Add(c.cfg.StandbyInterval)}
}

// run receives until ctx ends (then applies and acknowledges what it has) or
// the connection fails.
func (s *stream) run(ctx context.Context) error {
	for {
		if err := s.onTimers(ctx, time.Now()); err != nil {
			return err
		}
		msg, err := s.receive(ctx)
		switch {
		case ctx.Err() != nil:
			s.shutdown(ctx)
			return ctx.Err()
		case pgconn.Timeout(err):
			continue
		case err != nil:
			return fmt.Errorf("stats: receive: %w", err)
		}
		if err := s.handle(ctx, msg); err != nil {
			return err
		}
	}
}

// receive waits for a message until the next timer is due.
func (s *stream) receive(ctx context.Context) (pgproto3.BackendMessage, error) {
	wake := s.nextAck
	if !s.flushBy.IsZero() && s.flushBy.Before(wake) {
		wake = s.flushBy
	}
	ctx, cancel := context.WithDeadline(ctx, wake)
	defer cancel()
	return s.conn.ReceiveMessage(ctx)
}

func (s *stream) onTimers(ctx context.Context, now time.Time) error {
	if !s.flushBy.IsZero() && !now.Before(s.flushBy) {
		if err := s.flush(ctx); err != nil {
			return err
		}
	}
	if !now.Before(s.nextAck) {
		return s.ack(ctx)
	}
	return nil
}

func (s *stream) shutdown(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.flush(ctx); err == nil {
		_ = s.ack(ctx)
	}
}

func (s *stream) handle(ctx context.Context, msg pgproto3.BackendMessage) error {
	switch msg := msg.(type) {
	case *pgproto3.CopyData:
		return s.handleCopyData(ctx, msg.Data)
	case *pgproto3.ErrorResponse:
		return fmt.Errorf("stats: replication stream: %w", pgconn.ErrorResponseToPgError(msg))
	case *pgproto3.CopyDone:
		return errors.New("stats: the server ended the replication stream")
	}
	return nil
}

func (s *stream) handleCopyData(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		k, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return err
		}
		if !s.dec.inTx {
			s.idleEnd = max(s.idleEnd, k.ServerWALEnd)
		}
		if k.ReplyRequested {
			return s.ack(ctx)
		}
	case pglogrepl.XLogDataByteID:
		x, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return err
		}
		return s.decode(ctx, x.WALData)
	}
	return nil
}

func (s *stream) decode(ctx context.Context, walData []byte) error {
	msg, err := pglogrepl.Parse(walData)
	if err != nil {
		return fmt.Errorf("stats: parse pgoutput message: %w", err)
	}
	committed, err := s.dec.add(msg)
	if err != nil || !committed {
		return err
	}
	if s.flushBy.IsZero() {
		s.flushBy = time.Now().Add(s.c.cfg.BatchWait)
	}
	if s.dec.batch.changes >= s.c.cfg.BatchSize {
		return s.flush(ctx)
	}
	return nil
}

// flush applies the batch and its end LSN in one database transaction.
func (s *stream) flush(ctx context.Context) error {
	if s.dec.batchTxs == 0 {
		return nil
	}
	p := s.dec.params(s.c.cfg.SlotName)
	if err := s.apply(ctx, p); err != nil {
		return err
	}
	now := time.Now()
	if s.c.observeDelay != nil {
		for _, t := range s.dec.commitTimes {
			s.c.observeDelay(now.Sub(t))
		}
	}
	s.c.noteApplied(p.EndLSN, s.dec.batch.changes)
	s.dec.reset(p.EndLSN)
	s.flushBy = time.Time{}
	return nil
}

func (s *stream) apply(ctx context.Context, p store.ApplyStatsParams) error {
	ok, err := s.c.store.ApplyStatsDeltas(ctx, p)
	if err != nil {
		return fmt.Errorf("stats: apply batch: %w", err)
	}
	if !ok {
		// The decoder skips what was applied, so someone else moved the stats.
		return fmt.Errorf("stats: slot %q no longer feeds the stats at %s; restarting", p.Slot, p.EndLSN)
	}
	return nil
}

// ack acknowledges the slot up to what stats_progress holds. Between
// transactions with nothing unapplied, everything before the server's
// position has been received, so that position is stored first and then
// acknowledged: the slot frees WAL written by other tables and databases.
func (s *stream) ack(ctx context.Context) error {
	s.nextAck = time.Now().Add(s.c.cfg.StandbyInterval)
	if !s.dec.inTx && s.dec.batchTxs == 0 && s.idleEnd > s.dec.applied {
		p := store.ApplyStatsParams{Slot: s.c.cfg.SlotName, EndLSN: s.idleEnd}
		if err := s.apply(ctx, p); err != nil {
			return err
		}
		s.c.noteApplied(p.EndLSN, 0)
		s.dec.applied = p.EndLSN
	}
	err := pglogrepl.SendStandbyStatusUpdate(ctx, s.conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: s.dec.applied})
	if err != nil {
		return fmt.Errorf("stats: acknowledge: %w", err)
	}
	return nil
}

// walDecoder turns pgoutput messages into count changes, whole transactions
// at a time: a transaction joins the batch at its commit, unless it ends at
// or below the applied LSN (already counted before a restart).
type walDecoder struct {
	rels        map[uint32]*relation
	applied     pglogrepl.LSN
	inTx        bool
	tx          deltaSet // the open transaction
	batch       deltaSet // committed transactions not yet applied
	batchTxs    int
	batchEnd    pglogrepl.LSN
	commitTimes []time.Time
}

func newWALDecoder(applied pglogrepl.LSN) *walDecoder {
	return &walDecoder{rels: map[uint32]*relation{}, applied: applied, tx: newDeltaSet(), batch: newDeltaSet()}
}

// add takes one message; committed reports a transaction joined the batch.
func (d *walDecoder) add(msg pglogrepl.Message) (committed bool, err error) {
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		d.rels[m.RelationID], err = newRelation(m)
	case *pglogrepl.BeginMessage:
		d.inTx = true
		d.tx.clear()
	case *pglogrepl.InsertMessage:
		err = d.change(m.RelationID, nil, m.Tuple)
	case *pglogrepl.UpdateMessage:
		if err = needOld(m.OldTupleType, m.OldTuple); err == nil {
			err = d.change(m.RelationID, m.OldTuple, m.NewTuple)
		}
	case *pglogrepl.DeleteMessage:
		if err = needOld(m.OldTupleType, m.OldTuple); err == nil {
			err = d.change(m.RelationID, m.OldTuple, nil)
		}
	case *pglogrepl.TruncateMessage:
		d.truncate(m.RelationIDs)
	case *pglogrepl.CommitMessage:
		return d.commit(m), nil
	}
	return false, err
}

func needOld(kind uint8, old *pglogrepl.TupleData) error {
	if kind != pglogrepl.UpdateMessageTupleTypeOld || old == nil {
		return errors.New("stats: an update or delete came without the old row: " +
			"repeat_records needs REPLICA IDENTITY FULL (run `repeaterd migrate`)")
	}
	return nil
}

// change counts a row change: oldRow (nil for an insert) out, newRow (nil
// for a delete) in.
func (d *walDecoder) change(relID uint32, oldRow, newRow *pglogrepl.TupleData) error {
	rel, ok := d.rels[relID]
	if !ok {
		return fmt.Errorf("stats: change for relation %d before its description", relID)
	}
	if !rel.counted {
		return nil
	}
	d.tx.changes++
	var oldKey, newKey store.StatKey
	var err error
	if oldRow != nil {
		if oldKey, err = rel.key(oldRow, nil); err != nil {
			return err
		}
	}
	if newRow != nil {
		if newKey, err = rel.key(newRow, oldRow); err != nil {
			return err
		}
	}
	if oldRow != nil && newRow != nil && oldKey == newKey {
		return nil
	}
	if oldRow != nil {
		d.tx.counts[oldKey]--
	}
	if newRow != nil {
		d.tx.counts[newKey]++
	}
	return nil
}

// truncate empties the counts at this point of the transaction: a TRUNCATE
// leaves no record, so zero is the exact recount, where counting the table
// now would include transactions after it that are yet to be streamed.
func (d *walDecoder) truncate(relIDs []uint32) {
	for _, id := range relIDs {
		if rel, ok := d.rels[id]; !ok || rel.counted {
			d.tx.changes++
			d.tx.reset()
			return
		}
	}
}

func (d *walDecoder) commit(m *pglogrepl.CommitMessage) bool {
	d.inTx = false
	if m.TransactionEndLSN <= d.applied {
		return false
	}
	d.batch.merge(&d.tx)
	d.batchTxs++
	d.batchEnd = m.TransactionEndLSN
	d.commitTimes = append(d.commitTimes, m.CommitTime)
	return true
}

// params is the batch as one ApplyStatsDeltas call.
func (d *walDecoder) params(slot string) store.ApplyStatsParams {
	p := store.ApplyStatsParams{Slot: slot, EndLSN: d.batchEnd, Truncated: d.batch.truncated}
	for k, n := range d.batch.counts {
		if n != 0 {
			p.Deltas = append(p.Deltas, store.StatCount{StatKey: k, Count: n})
		}
	}
	store.SortStatCounts(p.Deltas)
	return p
}

// reset empties the batch once it is applied up to end.
func (d *walDecoder) reset(end pglogrepl.LSN) {
	d.applied = end
	d.batch.clear()
	d.batchTxs = 0
	d.commitTimes = d.commitTimes[:0]
}

// deltaSet is summed count changes, after a truncate when truncated is set.
type deltaSet struct {
	counts    map[store.StatKey]int64
	truncated bool
	changes   int // row changes seen, for throughput
}

func newDeltaSet() deltaSet { return deltaSet{counts: map[store.StatKey]int64{}} }

func (s *deltaSet) clear() {
	clear(s.counts)
	s.truncated = false
	s.changes = 0
}

// reset drops the counted changes: what follows applies to zeroed counts.
func (s *deltaSet) reset() {
	clear(s.counts)
	s.truncated = true
}

func (s *deltaSet) merge(o *deltaSet) {
	if o.truncated {
		s.reset()
	}
	for k, n := range o.counts {
		s.counts[k] += n
	}
	s.changes += o.changes
}

// relation locates the counted columns in a relation's rows.
type relation struct {
	counted                 bool // it is repeat_records
	domain, repeater, state int  // column positions
}

func newRelation(m *pglogrepl.RelationMessage) (*relation, error) {
	r := &relation{counted: m.RelationName == "repeat_records", domain: -1, repeater: -1, state: -1}
	for i, col := range m.Columns {
		switch col.Name {
		case "domain":
			r.domain = i
		case "repeater_id":
			r.repeater = i
		case "state":
			r.state = i
		}
	}
	if r.counted && (r.domain < 0 || r.repeater < 0 || r.state < 0) {
		return nil, errors.New("stats: repeat_records lacks domain, repeater_id or state")
	}
	return r, nil
}

// key reads a row's counter; unchanged TOASTed values come from fallback.
func (r *relation) key(t, fallback *pglogrepl.TupleData) (store.StatKey, error) {
	domain, err := column(t, fallback, r.domain)
	if err != nil {
		return store.StatKey{}, err
	}
	repeater, err := column(t, fallback, r.repeater)
	if err != nil {
		return store.StatKey{}, err
	}
	state, err := column(t, fallback, r.state)
	if err != nil {
		return store.StatKey{}, err
	}
	id, err := strconv.ParseInt(string(repeater), 10, 64)
	if err != nil {
		return store.StatKey{}, fmt.Errorf("stats: repeater_id %q: %w", repeater, err)
	}
	st, err := strconv.ParseInt(string(state), 10, 16)
	if err != nil {
		return store.StatKey{}, fmt.Errorf("stats: state %q: %w", state, err)
	}
	return store.StatKey{Domain: string(domain), RepeaterID: id, State: store.State(st)}, nil
}

func column(t, fallback *pglogrepl.TupleData, i int) ([]byte, error) {
	if i >= len(t.Columns) {
		return nil, fmt.Errorf("stats: row has %d columns, want more than %d", len(t.Columns), i)
	}
	col := t.Columns[i]
	if col.DataType == pglogrepl.TupleDataTypeToast && fallback != nil && i < len(fallback.Columns) {
		col = fallback.Columns[i]
	}
	if col.DataType != pglogrepl.TupleDataTypeText {
		return nil, fmt.Errorf("stats: column %d is %q, want a text value", i, col.DataType)
	}
	return col.Data, nil
}
