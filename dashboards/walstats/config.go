package walstats

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/jackc/pglogrepl"
)

// Defaults of Config.
const (
	DefaultSlotName        = "repeaterd_stats"
	DefaultPublication     = "repeaterd_stats" // created by migration 00010
	DefaultStandbyInterval = 10 * time.Second
	DefaultBatchSize       = 5000
	DefaultBatchWait       = 100 * time.Millisecond
)

// Config configures a Consumer.
type Config struct {
	// DatabaseURL is the database whose repeat_records are counted; the
	// consumer opens its replication connection with it. It is required.
	// Defaults to none.
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
	// OnApplied, when set, is told each LSN that stats_progress holds from
	// now on: after a batch or an idle position is committed, and when a
	// session starts from the stored position. It runs on the consumer's
	// goroutine and must not block; tests wait on it instead of polling.
	// Defaults to none.
	OnApplied func(lsn pglogrepl.LSN)
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.SlotName = cmp.Or(c.SlotName, DefaultSlotName)
	c.Publication = cmp.Or(c.Publication, DefaultPublication)
	c.StandbyInterval = cmp.Or(c.StandbyInterval, DefaultStandbyInterval)
	c.BatchSize = cmp.Or(c.BatchSize, DefaultBatchSize)
	c.BatchWait = cmp.Or(c.BatchWait, DefaultBatchWait)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	return c
}

// identifier is what slot and publication names are restricted to: they are
// spliced into replication commands, which take no parameters.
var identifier = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

func (c Config) validate() error {
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
