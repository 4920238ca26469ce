// Package store is the only package that speaks SQL. It holds the domain
// types (Repeater, RepeatRecord, State, Outcome) and every query the engine,
// the API and the dashboards run against Postgres, the source of truth.
//
// Hot queries (readiness, batch loading, outcome recording) are hand-written
// SQL on the pgx pool; GORM, sharing the same pool, serves the rest.
package store

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Store reaches Postgres through one connection pool.
type Store struct {
	pool     *pgxpool.Pool
	gorm     *gorm.DB
	opts     Options
	wake     notifier  // coalesced NOTIFYs of the write paths (notify.go)
	coalesce coalescer // single registrations sharing transactions (coalesce.go)
}

// DefaultMaxConns is the smallest pool a Store opens.
const DefaultMaxConns = 16

// Options tune a Store. The zero value is the production setting.
type Options struct {
	// LegacyByDefault sends domains without a process_repeaters row in
	// domain_flags down the legacy path. Defaults to false (the dispatcher's).
	LegacyByDefault bool
	// MaxConns is the pool's size unless the URL's pool_max_conns asks for
	// more. Defaults to 16.
	MaxConns int
	// Secrets seals repeaters' signing secrets and header values on write
	// and opens them on read (secrets.go; REPEATERD_SECRET_KEY). Defaults to
	// none: values are stored as given.
	Secrets *Keyring
	// MaxTimeout is the longest per-request timeout (timeout_ms) a repeater
	// may be given. Defaults to 120s (DefaultMaxTimeout).
	MaxTimeout time.Duration
}

// Open connects to the database at url with the default Options.
func Open(ctx context.Context, url string) (*Store, error) { return OpenWith(ctx, url, Options{}) }

// OpenWith connects to the database at url.
func OpenWith(ctx context.Context, url string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, Errorf(EINVALID, "bad DATABASE_URL: %v", err)
	}
	cfg.MaxConns = max(cfg.MaxConns, int32(cmp.Or(opts.MaxConns, DefaultMaxConns)))
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: stdlib.OpenDBFromPool(pool)}),
		&gorm.Config{Logger: logger.Discard, SkipDefaultTransaction: true})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: gorm: %w", err)
	}
	return &Store{pool: pool, gorm: db, opts: opts}, nil
}

// ProcessRepeatersDefault is the process_repeaters flag of a domain that has
// no row in domain_flags.
func (s *Store) ProcessRepeatersDefault() bool { return !s.opts.LegacyByDefault }

// Close releases the pool.
func (s *Store) Close() { s.pool.Close() }

// Pool exposes the pool to store's own subpackages and tests.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }
