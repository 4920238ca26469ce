package benchdb

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"repeaterd/store"
)

// databaseName is what a bench database may be called: it is spliced into
// CREATE and DROP DATABASE, which take no parameters.
var databaseName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// DatabaseURL returns serverURL with its database replaced by name.
func DatabaseURL(serverURL, name string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", store.Errorf(store.EINVALID, "bad DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// RecreateDatabase drops database name (and any replication slot left in
// it) on the server of serverURL, creates it empty and migrates it. It
// connects through the server's "postgres" database and returns the new
// database's URL.
func RecreateDatabase(ctx context.Context, serverURL, name string) (string, error) {
	if err := DropDatabase(ctx, serverURL, name); err != nil {
		return "", err
	}
	admin, err := connectAdmin(ctx, serverURL)
	if err != nil {
		return "", err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		return "", fmt.Errorf("benchdb: create database %s: %w", name, err)
	}
	dbURL, err := DatabaseURL(serverURL, name)
	if err != nil {
		return "", err
	}
	if err := store.Migrate(ctx, dbURL); err != nil {
		return "", fmt.Errorf("benchdb: migrate %s: %w", name, err)
	}
	return dbURL, nil
}

// DropDatabase drops database name and the inactive replication slots that
// would pin it; a missing database is not an error.
func DropDatabase(ctx context.Context, serverURL, name string) error {
	if !databaseName.MatchString(name) {
		return store.Errorf(store.EINVALID, "bad bench database name %q", name)
	}
	admin, err := connectAdmin(ctx, serverURL)
	if err != nil {
		return err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	if err := dropSlots(ctx, admin, name); err != nil {
		return err
	}
	if _, err := admin.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
		return fmt.Errorf("benchdb: drop database %s: %w", name, err)
	}
	return nil
}

// dropSlots drops the replication slots of database name. A slot pins its
// database; a walsender still streaming it (a consumer being stopped) is
// ended first, and its slot is dropped once the walsender has let go of it
// (for up to five seconds).
func dropSlots(ctx context.Context, admin *pgx.Conn, name string) error {
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
		WHERE database = $1 AND active`, name); err != nil {
		return fmt.Errorf("benchdb: end walsenders of %s: %w", name, err)
	}
	for i := 0; ; i++ {
		_, err := admin.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE database = $1 AND NOT active`, name)
		if err != nil {
			return fmt.Errorf("benchdb: drop slots of %s: %w", name, err)
		}
		var left int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = $1`, name).
			Scan(&left); err != nil || left == 0 || i == 50 {
			return nil
		}
		// Postgres signals nothing when a terminated walsender releases
		// its slot; asking again is the only way to know.
		time.Sleep(100 * time.Millisecond)
	}
}

// connectAdmin connects to the "postgres" database of serverURL's server.
func connectAdmin(ctx context.Context, serverURL string) (*pgx.Conn, error) {
	adminURL, err := DatabaseURL(serverURL, "postgres")
	if err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return nil, fmt.Errorf("benchdb: connect to the server's postgres database: %w", err)
	}
	return conn, nil
}

// ServerVersion returns the server's version string.
func ServerVersion(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	var v string
	return v, pool.QueryRow(ctx, `SHOW server_version`).Scan(&v)
}

// CommitSettings returns the server's synchronous_commit and
// wal_writer_delay.
func CommitSettings(ctx context.Context, pool *pgxpool.Pool) (syncCommit, walWriterDelay string, err error) {
	err = pool.QueryRow(ctx, `SELECT current_setting('synchronous_commit'), current_setting('wal_writer_delay')`).
		Scan(&syncCommit, &walWriterDelay)
	return syncCommit, walWriterDelay, err
}

// Vacuum runs VACUUM (ANALYZE) on repeat_records, as autovacuum would in
// time: it sets the visibility map that index-only scans rely on.
func Vacuum(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, `VACUUM (ANALYZE) repeat_records`)
	return err
}
