package walstats

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"

	"repeaterd/store"
)

// prepareSlot returns where to stream from: the stored applied LSN when the
// slot is the one the stats were counted against and can still stream,
// else a new slot's consistent point after counting the existing records.
func (c *Consumer) prepareSlot(ctx context.Context, conn *replConn) (pglogrepl.LSN, error) {
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
	if fed && slot != nil && !slot.Lost && slot.ConfirmedFlush <= applied {
		return applied, nil
	}
	switch {
	case slot != nil && slot.Lost:
		c.cfg.Logger.Warn("stats: the slot fell behind max_slot_wal_keep_size and lost WAL it needed; recreating it and recounting",
			"slot", c.cfg.SlotName, "applied_lsn", applied)
		if err := conn.dropSlot(ctx, c.cfg.SlotName); err != nil {
			return 0, fmt.Errorf("stats: drop lost slot: %w", err)
		}
	case slot != nil:
		c.cfg.Logger.Warn("stats: slot does not match the stored counts; recreating it and recounting",
			"slot", c.cfg.SlotName, "applied_lsn", applied, "confirmed_flush_lsn", slot.ConfirmedFlush)
		if err := conn.dropSlot(ctx, c.cfg.SlotName); err != nil {
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
func (c *Consumer) createSlot(ctx context.Context, conn *replConn) (pglogrepl.LSN, error) {
	previous, err := c.store.StatsFeedSlot(ctx)
	if err != nil {
		return 0, err
	}
	snapshot, point, err := conn.createSlot(ctx, c.cfg.SlotName)
	if err != nil {
		return 0, err
	}
	err = c.store.BackfillStats(ctx, store.BackfillStatsParams{
		Slot: c.cfg.SlotName, Snapshot: snapshot, ConsistentPoint: point})
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
