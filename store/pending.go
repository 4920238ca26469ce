package store

import (
	"context"
	"path"

	"github.com/pressly/goose/v3"
)

// Pending lists the migrations not yet applied to the database, by file
// name, in the order `repeaterd migrate` would apply them.
func (m *Migrator) Pending(ctx context.Context) ([]string, error) {
	st, err := m.provider.Status(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range st {
		if s.State != goose.StateApplied {
			out = append(out, path.Base(s.Source.Path))
		}
	}
	return out, nil
}

// PendingMigrations lists the migrations the database at url lacks.
func PendingMigrations(ctx context.Context, url string) ([]string, error) {
	m, err := NewMigrator(url)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return m.Pending(ctx)
}
