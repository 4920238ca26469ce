package walstats

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"

	"repeaterd/store"
)

// idleThroughEvery is how often an idle session stores that it is still
// caught up (stats_progress.applied_through).
const idleThroughEvery = 30 * time.Second

// session is one replication session's stream, decoder and unapplied batch:
// it applies the batch when it is full or has waited BatchWait, and
// acknowledges the slot every StandbyInterval.
type session struct {
	c       *Consumer
	conn    *replConn
	dec     *decoder
	idleEnd pglogrepl.LSN // server WAL position seen between transactions
	idleAt  time.Time     // the server's time when it reported idleEnd
	through time.Time     // the applied_through this session last stored
	nextAck time.Time
	flushBy time.Time // zero while the batch is empty
}

func (c *Consumer) newSession(conn *replConn, start pglogrepl.LSN) *session {
	return &session{c: c, conn: conn, dec: newDecoder(start), nextAck: time.Now().Add(c.cfg.StandbyInterval)}
}

// run receives until ctx ends (then applies and acknowledges what it has) or
// the connection fails.
func (s *session) run(ctx context.Context) error {
	for {
		if err := s.onTimers(ctx, time.Now()); err != nil {
			return err
		}
		msg, err := s.conn.receive(ctx, s.wake())
		switch {
		case ctx.Err() != nil:
			s.shutdown(ctx)
			return ctx.Err()
		case errors.Is(err, errIdle):
			continue
		case err != nil:
			return err
		}
		if err := s.handle(ctx, msg); err != nil {
			return err
		}
	}
}

// wake is when the next timer is due.
func (s *session) wake() time.Time {
	if !s.flushBy.IsZero() && s.flushBy.Before(s.nextAck) {
		return s.flushBy
	}
	return s.nextAck
}

func (s *session) onTimers(ctx context.Context, now time.Time) error {
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

func (s *session) shutdown(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.flush(ctx); err == nil {
		_ = s.ack(ctx)
	}
}

func (s *session) handle(ctx context.Context, msg received) error {
	if msg.keepalive {
		if !s.dec.inTx && msg.serverWALEnd > s.idleEnd {
			s.idleEnd, s.idleAt = msg.serverWALEnd, msg.serverTime
		}
		if msg.replyRequested {
			return s.ack(ctx)
		}
		return nil
	}
	committed, err := s.dec.addWAL(msg.wal)
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
func (s *session) flush(ctx context.Context) error {
	if s.dec.empty() {
		return nil
	}
	p := s.dec.params(s.c.cfg.SlotName)
	if n := len(s.dec.commitTimes); n > 0 {
		p.Through = s.dec.commitTimes[n-1]
	}
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

func (s *session) apply(ctx context.Context, p store.ApplyStatsParams) error {
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
func (s *session) ack(ctx context.Context) error {
	s.nextAck = time.Now().Add(s.c.cfg.StandbyInterval)
	if !s.dec.inTx && s.dec.empty() && s.idleEnd > s.dec.applied {
		p := store.ApplyStatsParams{Slot: s.c.cfg.SlotName, EndLSN: s.idleEnd, Through: s.idleAt}
		if err := s.apply(ctx, p); err != nil {
			return err
		}
		s.c.noteApplied(p.EndLSN, 0)
		s.dec.applied = p.EndLSN
		s.through = s.idleAt
	} else if !s.dec.inTx && s.dec.empty() && s.idleEnd == s.dec.applied && s.idleAt.Sub(s.through) > idleThroughEvery {
		// Nothing at all was written: say so now and then, or an idle
		// server's aggregate would look behind (the stats_drift invariant).
		if err := s.c.store.MarkStatsThrough(ctx, s.c.cfg.SlotName, s.idleAt); err != nil {
			return fmt.Errorf("stats: mark idle position: %w", err)
		}
		s.through = s.idleAt
	}
	if err := s.conn.sendStatus(ctx, s.dec.applied); err != nil {
		return err
	}
	s.c.metrics.heartbeat.SetToCurrentTime()
	return nil
}
