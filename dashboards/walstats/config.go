package walstats

import (
	"cmp"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// Defaults of Config.
const (
	// DefaultSlotPrefix begins the default slot name, which ends with the
	// database's name (SlotNameFor): slots are per server, so two
	// repeaterd databases on one server must not share one.
	DefaultSlotPrefix = "repeaterd_stats_"
	// DefaultPublication is created by migration 00010. Publications belong
	// to a database, so every database can use the same name.
	DefaultPublication     = "repeaterd_stats"
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
	// SlotName is the logical replication slot (REPEATERD_STATS_SLOT). Slots
	// are per server, so two databases on one server need different names;
	// a slot of this name owned by another database is an error naming it.
	// Defaults to SlotNameFor(the database of DatabaseURL), e.g.
	// "repeaterd_stats_repeaterd".
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
	if c.SlotName == "" {
		if cc, err := pgconn.ParseConfig(c.DatabaseURL); err == nil {
			c.SlotName = SlotNameFor(cmp.Or(cc.Database, cc.User))
		}
	}
	c.Publication = cmp.Or(c.Publication, DefaultPublication)
	c.StandbyInterval = cmp.Or(c.StandbyInterval, DefaultStandbyInterval)
	c.BatchSize = cmp.Or(c.BatchSize, DefaultBatchSize)
	c.BatchWait = cmp.Or(c.BatchWait, DefaultBatchWait)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	return c
}

// SlotNameFor is the default slot name of a database: DefaultSlotPrefix and
// the database's name in a-z, 0-9 and _, shortened with a hash of the whole
// name when it would pass Postgres's 63 characters (or lose characters), so
// distinct databases get distinct slots.
func SlotNameFor(database string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(database) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	name := DefaultSlotPrefix + b.String()
	if b.String() == database && len(name) <= 63 {
		return name
	}
	h := fnv.New32a()
	h.Write([]byte(database))
	suffix := fmt.Sprintf("_%08x", h.Sum32())
	return name[:min(len(name), 63-len(suffix))] + suffix
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
