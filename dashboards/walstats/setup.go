package walstats

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"repeaterd/store"
)

// ErrWALUnavailable is wrapped by the errors that mean the WAL stats cannot
// run on this server or schema as it is (wal_level, REPLICATION, migration);
// each names its fix. Callers serve live counts instead (store.RecordCounts).
var ErrWALUnavailable = errors.New("WAL stats unavailable")

// ErrSlotElsewhere is wrapped by the error for a slot name another
// database's consumer owns (slots are per server); it names the setting to
// change.
var ErrSlotElsewhere = errors.New("replication slot owned by another database")

// preflight turns a server or schema that cannot feed the stats, or a slot
// name taken by another database, into an error naming the fix, before
// anything is created. Each session runs it, so a fix is picked up by the
// next retry.
func (c *Consumer) preflight(ctx context.Context) error {
	setup, err := c.store.GetStatsSetup(ctx, c.cfg.Publication)
	if err != nil {
		return fmt.Errorf("stats: read server settings: %w", err)
	}
	if err := checkSetup(setup, c.cfg.Publication); err != nil {
		return err
	}
	owner, err := c.store.ReplicationSlotDatabase(ctx, c.cfg.SlotName)
	if store.ErrorCode(err) == store.ENOTFOUND {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stats: look up slot %q: %w", c.cfg.SlotName, err)
	}
	if owner != setup.Database {
		return fmt.Errorf("stats: %w: slot %q belongs to database %q, not %q (slots are per server): "+
			"set REPEATERD_STATS_SLOT to a name of this database's own (the default is %s)",
			ErrSlotElsewhere, c.cfg.SlotName, owner, setup.Database, SlotNameFor(setup.Database))
	}
	return nil
}

func checkSetup(s *store.StatsSetup, publication string) error {
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
