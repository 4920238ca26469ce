package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// StatKey names one counter of repeat_record_stats.
type StatKey struct {
	Domain     string
	RepeaterID int64
	State      State
}

// StatCount is the number of records of one repeater in one state.
type StatCount struct {
	StatKey
	Count int64
}

// ApplyStatsParams is one batch of WAL transactions to apply.
type ApplyStatsParams struct {
	Slot   string        // the slot the changes came from
	EndLSN pglogrepl.LSN // end LSN of the batch's last transaction
	// Truncated says repeat_records was truncated within the batch: every
	// count restarts from zero before Deltas, which are the changes after it.
	Truncated bool
	Deltas    []StatCount // changes to add; Count may be negative
	// Through is the server time up to which every commit is now applied:
	// the commit time of the batch's last transaction, or an idle
	// keepalive's time. Zero leaves stats_progress.applied_through as it is.
	Through time.Time
}

// ApplyStatsDeltas adds a batch's count changes and records its end LSN in
// one transaction, so a crash either keeps both or neither. A batch at or
// below the stored LSN, or from a slot that no longer feeds the stats, is
// skipped: applied is false and nothing changes. A batch without deltas just
// moves the LSN forward.
func (s *Store) ApplyStatsDeltas(ctx context.Context, p ApplyStatsParams) (applied bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// First, so the row lock orders any two writers and the guard is
		// checked before anything is written.
		var through *time.Time
		if !p.Through.IsZero() {
			through = &p.Through
		}
		tag, err := tx.Exec(ctx, `UPDATE stats_progress SET applied_lsn = $2::pg_lsn, updated_at = now(),
				applied_through = greatest(applied_through, $3)
			WHERE slot_name = $1 AND applied_lsn < $2::pg_lsn`, p.Slot, p.EndLSN.String(), through)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		applied = true
		if p.Truncated {
			if _, err := tx.Exec(ctx, `UPDATE repeat_record_stats SET count = 0 WHERE count <> 0`); err != nil {
				return err
			}
		}
		return addStatDeltas(ctx, tx, p.Deltas)
	})
	return applied && err == nil, err
}

func addStatDeltas(ctx context.Context, tx pgx.Tx, deltas []StatCount) error {
	if len(deltas) == 0 {
		return nil
	}
	domains := make([]string, len(deltas))
	repeaters := make([]int64, len(deltas))
	states := make([]int16, len(deltas))
	counts := make([]int64, len(deltas))
	for i, d := range deltas {
		domains[i], repeaters[i], states[i], counts[i] = d.Domain, d.RepeaterID, int16(d.State), d.Count
	}
	_, err := tx.Exec(ctx, `INSERT INTO repeat_record_stats AS s (domain, repeater_id, state, count)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::smallint[], $4::bigint[])
		ON CONFLICT (domain, repeater_id, state) DO UPDATE SET count = s.count + EXCLUDED.count`,
		domains, repeaters, states, counts)
	return err
}

// MarkStatsThrough records that every commit before through has been
// applied from slot although nothing new was: an idle consumer's word that
// it is caught up. It never moves applied_through back.
func (s *Store) MarkStatsThrough(ctx context.Context, slot string, through time.Time) error {
	_, err := s.pool.Exec(ctx, `UPDATE stats_progress SET applied_through = greatest(applied_through, $2)
		WHERE slot_name = $1`, slot, through)
	return err
}

// AppliedLSN returns the end LSN of the last WAL transaction applied from
// slot; ENOTFOUND when slot does not feed the stats (never started, or
// replaced by another slot).
func (s *Store) AppliedLSN(ctx context.Context, slot string) (pglogrepl.LSN, error) {
	var text string
	err := s.pool.QueryRow(ctx, `SELECT applied_lsn::text FROM stats_progress WHERE slot_name = $1`, slot).Scan(&text)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, Errorf(ENOTFOUND, "stats: slot %q does not feed repeat_record_stats", slot)
	}
	if err != nil {
		return 0, err
	}
	return pglogrepl.ParseLSN(text)
}

// BackfillStatsParams names the snapshot a new slot exported.
type BackfillStatsParams struct {
	Slot            string
	Snapshot        string        // CREATE_REPLICATION_SLOT's snapshot_name
	ConsistentPoint pglogrepl.LSN // the slot streams what commits after this
}

var snapshotName = regexp.MustCompile(`^[0-9A-Fa-f-]+$`)

// BackfillStats recounts every record as the new slot's exported snapshot
// sees it and makes that slot the stats' feed at its consistent point: the
// slot streams exactly the transactions the snapshot does not see, so counts
// start exact however many records exist. It must run while the snapshot is
// still exported, before the replication connection issues another command.
func (s *Store) BackfillStats(ctx context.Context, p BackfillStatsParams) error {
	if !snapshotName.MatchString(p.Snapshot) {
		return Errorf(EINVALID, "stats: bad snapshot name %q", p.Snapshot)
	}
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		// Must be the transaction's first statement; a name cannot be a parameter.
		if _, err := tx.Exec(ctx, fmt.Sprintf(`SET TRANSACTION SNAPSHOT '%s'`, p.Snapshot)); err != nil {
			return fmt.Errorf("stats: import snapshot: %w", err)
		}
		for _, q := range []string{
			`DELETE FROM repeat_record_stats`,
			`INSERT INTO repeat_record_stats (domain, repeater_id, state, count)
				SELECT domain, repeater_id, state, count(*) FROM repeat_records GROUP BY 1, 2, 3`,
			`DELETE FROM stats_progress`,
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		// applied_through stays NULL until the consumer applies or
		// acknowledges past the consistent point.
		_, err := tx.Exec(ctx, `INSERT INTO stats_progress (slot_name, applied_lsn) VALUES ($1, $2::pg_lsn)`,
			p.Slot, p.ConsistentPoint.String())
		return err
	})
}

// StatsCounts reads the WAL-maintained counts of domain ("" = every domain),
// skipping zeros, ordered by domain, repeater and state.
func (s *Store) StatsCounts(ctx context.Context, domain string) ([]StatCount, error) {
	return s.statCounts(ctx, `SELECT domain, repeater_id, state, count FROM repeat_record_stats
		WHERE ($1 = '' OR domain = $1) AND count <> 0 ORDER BY 1, 2, 3`, domain)
}

// LiveStatsCounts counts the records of domain ("" = every domain) with
// GROUP BY: the same shape as StatsCounts and always exact, but it reads
// every record, so it is slow on a large table. It is the fallback when no
// WAL consumer keeps the aggregate (see RecordCounts).
func (s *Store) LiveStatsCounts(ctx context.Context, domain string) ([]StatCount, error) {
	return s.statCounts(ctx, `SELECT domain, repeater_id, state, count(*) FROM repeat_records
		WHERE ($1 = '' OR domain = $1) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`, domain)
}

func (s *Store) statCounts(ctx context.Context, sql, domain string) ([]StatCount, error) {
	rows, err := s.pool.Query(ctx, sql, domain)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (StatCount, error) {
		var c StatCount
		err := row.Scan(&c.Domain, &c.RepeaterID, &c.State, &c.Count)
		return c, err
	})
}

// StatsLagBytes is how far this database's slot's confirmed position trails
// the server's current WAL position, in bytes; ENOTFOUND when this database
// has no such slot (a slot of that name in another database is not ours).
func (s *Store) StatsLagBytes(ctx context.Context, slot string) (int64, error) {
	var lag *int64
	err := s.pool.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint
		FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()`, slot).Scan(&lag)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, Errorf(ENOTFOUND, "replication slot %q not found", slot)
	}
	if err != nil || lag == nil {
		return 0, err
	}
	return max(*lag, 0), nil
}

// ReplicationSlot is a replication slot of this database.
type ReplicationSlot struct {
	Name           string
	Plugin         string
	Active         bool
	ConfirmedFlush pglogrepl.LSN // 0 until the slot is consistent
	// Lost: the server removed WAL the slot still needed (it fell further
	// behind than max_slot_wal_keep_size); it can stream nothing again.
	Lost bool
}

// GetReplicationSlot returns the slot of this database named name; ENOTFOUND
// when there is none.
func (s *Store) GetReplicationSlot(ctx context.Context, name string) (*ReplicationSlot, error) {
	var plugin, flush *string
	r := ReplicationSlot{Name: name}
	err := s.pool.QueryRow(ctx, `SELECT plugin, active, confirmed_flush_lsn::text, wal_status IS NOT DISTINCT FROM 'lost'
		FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()`, name).
		Scan(&plugin, &r.Active, &flush, &r.Lost)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, Errorf(ENOTFOUND, "replication slot %q not found", name)
	}
	if err != nil {
		return nil, err
	}
	if plugin != nil {
		r.Plugin = *plugin
	}
	if flush != nil {
		r.ConfirmedFlush, err = pglogrepl.ParseLSN(*flush)
	}
	return &r, err
}

// ReplicationSlotDatabase returns the database a replication slot of this
// server belongs to ("" for a physical slot); ENOTFOUND when the server has
// no slot of that name. Slot names are per server, so another database's
// repeaterd may own a name this one wants.
func (s *Store) ReplicationSlotDatabase(ctx context.Context, name string) (string, error) {
	var db *string
	err := s.pool.QueryRow(ctx, `SELECT database FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(&db)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", Errorf(ENOTFOUND, "replication slot %q not found", name)
	}
	if err != nil || db == nil {
		return "", err
	}
	return *db, nil
}

// StatsFeedSlot returns the slot stats_progress names, "" when none does.
func (s *Store) StatsFeedSlot(ctx context.Context) (string, error) {
	var slot string
	err := s.pool.QueryRow(ctx, `SELECT slot_name FROM stats_progress`).Scan(&slot)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return slot, err
}

// DropReplicationSlot drops an inactive slot of this database; a missing one
// is not an error.
func (s *Store) DropReplicationSlot(ctx context.Context, name string) error {
	_, err := s.pool.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
		WHERE slot_name = $1 AND database = current_database()`, name)
	return err
}

// StatsSetup is what the WAL stats consumer needs from the server and schema.
type StatsSetup struct {
	WALLevel            string // must be "logical"
	Database            string // the database connected to
	User                string // the role connected
	CanReplicate        bool   // the role has REPLICATION (or is a superuser)
	Publication         bool   // the publication exists in this database
	ReplicaIdentityFull bool   // repeat_records logs whole old rows
}

// GetStatsSetup reads the settings the WAL stats consumer depends on.
func (s *Store) GetStatsSetup(ctx context.Context, publication string) (*StatsSetup, error) {
	var st StatsSetup
	err := s.pool.QueryRow(ctx, `SELECT current_setting('wal_level'), current_database(), current_user,
			(SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user),
			EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1),
			(SELECT relreplident = 'f' FROM pg_class WHERE oid = 'repeat_records'::regclass)`,
		publication).Scan(&st.WALLevel, &st.Database, &st.User, &st.CanReplicate, &st.Publication, &st.ReplicaIdentityFull)
	return &st, err
}

// LockStats takes the lock that makes one process at a time the consumer of
// slot: two consumers racing to create or replace a slot could leave the
// stats fed by a slot they were not counted against. The lock is a session
// advisory lock, so a crashed holder releases it. It returns ECONFLICT while
// another process holds it.
func (s *Store) LockStats(ctx context.Context, slot string) (release func(), err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, statsLockClass, slot).
		Scan(&ok); err != nil || !ok {
		conn.Release()
		if err == nil {
			err = Errorf(ECONFLICT, "stats: another process consumes slot %q", slot)
		}
		return nil, err
	}
	return func() {
		ctx := context.WithoutCancel(ctx)
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, statsLockClass, slot); err != nil {
			// Closing the session is the other way to release the lock.
			_ = conn.Conn().Close(ctx)
		}
		conn.Release()
	}, nil
}

// statsLockClass is the first key of the stats advisory lock (ASCII "stat").
const statsLockClass = 0x73746174

// SortStatCounts orders counts by domain, repeater and state, as StatsCounts
// returns them.
func SortStatCounts(c []StatCount) {
	slices.SortFunc(c, func(a, b StatCount) int {
		return cmp.Or(strings.Compare(a.Domain, b.Domain), cmp.Compare(a.RepeaterID, b.RepeaterID),
			cmp.Compare(a.State, b.State))
	})
}
