package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// RecordCounts is per-(domain, repeater, state) record counts and where they
// came from.
type RecordCounts struct {
	Counts []StatCount
	// Live is true when no WAL consumer keeps repeat_record_stats current
	// (the stats role never ran, is degraded or stopped, or wal_level is not
	// logical), so Counts came from LiveStatsCounts: exact, but slow on a
	// large table. Dashboards say so, with LiveReason.
	Live bool
	// LiveReason says why the counts are live; "" when they are not.
	LiveReason string
}

// RecordCounts returns the WAL-maintained counts of domain ("" = every
// domain) when a consumer keeps them current, else live counts.
func (s *Store) RecordCounts(ctx context.Context, domain string) (*RecordCounts, error) {
	feed, err := s.GetStatsFeed(ctx)
	if err != nil {
		return nil, err
	}
	out := &RecordCounts{Live: !feed.Current(), LiveReason: feed.NotCurrentReason()}
	if out.Live {
		out.Counts, err = s.LiveStatsCounts(ctx, domain)
	} else {
		out.Counts, err = s.StatsCounts(ctx, domain)
	}
	return out, err
}

// statsStaleAfter is how long the aggregate counts as current after the
// consumer last wrote stats_progress while its slot has no walsender.
const statsStaleAfter = 2 * time.Minute

// StatsFeed is where repeat_record_stats stands: which slot feeds it and
// whether a consumer is on it.
type StatsFeed struct {
	Slot       string    // the slot stats_progress names; "" when none
	SlotExists bool      // that slot exists in this database
	Active     bool      // a walsender streams it (a consumer is connected)
	UpdatedAt  time.Time // stats_progress's last write
}

// Current reports whether the aggregate is being kept: its slot exists and
// a consumer streams it, or wrote stats_progress in the last two minutes (a
// consumer between sessions).
func (f *StatsFeed) Current() bool {
	return f.SlotExists && (f.Active || time.Since(f.UpdatedAt) < statsStaleAfter)
}

// NotCurrentReason says, in an operator's words, why Current is false; ""
// when it is true.
func (f *StatsFeed) NotCurrentReason() string {
	switch {
	case f.Current():
		return ""
	case f.Slot == "":
		return "the WAL stats consumer has never run on this database"
	case !f.SlotExists:
		return fmt.Sprintf("the replication slot %s feeding the stats is gone", f.Slot)
	}
	return fmt.Sprintf("the WAL stats consumer is not running (slot %s idle since %s)",
		f.Slot, f.UpdatedAt.UTC().Format("2006-01-02 15:04:05Z"))
}

// GetStatsFeed reads where repeat_record_stats stands.
func (s *Store) GetStatsFeed(ctx context.Context) (*StatsFeed, error) {
	var f StatsFeed
	err := s.pool.QueryRow(ctx, `SELECT p.slot_name, r.slot_name IS NOT NULL, coalesce(r.active, false), p.updated_at
		FROM stats_progress p
		LEFT JOIN pg_replication_slots r ON r.slot_name = p.slot_name AND r.database = current_database()`).
		Scan(&f.Slot, &f.SlotExists, &f.Active, &f.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return &f, nil
	}
	return &f, err
}

// StatsFed reports whether a replication slot of this database feeds
// repeat_record_stats. The counts may still lag or be stale; see
// GetStatsFeed and StatsLagBytes.
func (s *Store) StatsFed(ctx context.Context) (bool, error) {
	f, err := s.GetStatsFeed(ctx)
	return err == nil && f.SlotExists, err
}
