package store

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/pressly/goose/v3"

	"repeaterd/migrations"
)

// Migrator applies the embedded migrations.
type Migrator struct {
	db       *sql.DB
	provider *goose.Provider
}

// NewMigrator opens a migrator on the database at url.
func NewMigrator(url string) (*Migrator, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, Errorf(EINVALID, "bad DATABASE_URL: %v", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	return &Migrator{db: db, provider: p}, nil
}

// Close closes the migrator's connection.
func (m *Migrator) Close() error { return m.db.Close() }

// Up applies every pending migration; applying none is not an error.
func (m *Migrator) Up(ctx context.Context) ([]*goose.MigrationResult, error) {
	return m.provider.Up(ctx)
}

// Down rolls back the latest migration.
func (m *Migrator) Down(ctx context.Context) (*goose.MigrationResult, error) {
	return m.provider.Down(ctx)
}

// Reset rolls back every migration.
func (m *Migrator) Reset(ctx context.Context) ([]*goose.MigrationResult, error) {
	return m.provider.DownTo(ctx, 0)
}

// Status writes where the database stands, one migration per line.
func (m *Migrator) Status(ctx context.Context, w io.Writer) error {
	st, err := m.provider.Status(ctx)
	if err != nil {
		return err
	}
	for _, s := range st {
		applied := "pending"
		if s.State == goose.StateApplied {
			applied = "applied " + s.AppliedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%-40s %s\n", s.Source.Path, applied)
	}
	return nil
}

// Migrate applies every pending migration to the database at url.
func Migrate(ctx context.Context, url string) error {
	m, err := NewMigrator(url)
	if err != nil {
		return err
	}
	defer m.Close()
	_, err = m.Up(ctx)
	return err
}
