// Package storetest gives tests an isolated Postgres database and Redis DB
// index on the services started by scripts/services.sh.
//
// Each call to NewDB clones a template database that holds the migrated
// schema, so tests in one package, and packages run in parallel, never see
// each other's rows. The template is named after a hash of the migrations and
// rebuilt when they change.
package storetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"repeaterd/migrations"
	"repeaterd/store"
)

// DefaultDatabaseURL and DefaultRedisURL match scripts/services.sh.
const (
	DefaultDatabaseURL = "postgres://postgres@127.0.0.1:55432/repeaterd?sslmode=disable"
	DefaultRedisURL    = "redis://127.0.0.1:56379/0"
)

// DatabaseURL returns the base DATABASE_URL for tests.
func DatabaseURL() string { return envOr("DATABASE_URL", DefaultDatabaseURL) }

// RedisURL returns the base REDIS_URL for tests.
func RedisURL() string { return envOr("REDIS_URL", DefaultRedisURL) }

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

var templateOnce struct {
	sync.Once
	name string
	err  error
}

// NewDB creates a fresh migrated database for this test, dropped at cleanup,
// and returns its URL.
func NewDB(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	templateOnce.Do(func() { templateOnce.name, templateOnce.err = ensureTemplate(ctx) })
	if templateOnce.err != nil {
		t.Fatalf("storetest: template database: %v (is `make services` up?)", templateOnce.err)
	}
	name := "rt_" + randomHex(8)
	admin := adminConn(t)
	if _, err := admin.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s TEMPLATE %s`, name, templateOnce.name)); err != nil {
		t.Fatalf("storetest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		// Slots pin a database: drop any a test left behind first.
		_, _ = admin.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE database = $1 AND NOT active`, name)
		if _, err := admin.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name)); err != nil {
			t.Logf("storetest: drop database %s: %v", name, err)
		}
		admin.Close(ctx)
	})
	return withDatabase(DatabaseURL(), name)
}

// NewEmptyDB creates an empty database (no migrations), dropped at cleanup.
func NewEmptyDB(t testing.TB) string {
	t.Helper()
	name := "rt_empty_" + randomHex(8)
	admin := adminConn(t)
	if _, err := admin.Exec(context.Background(), fmt.Sprintf(`CREATE DATABASE %s`, name)); err != nil {
		t.Fatalf("storetest: create database: %v", err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name))
		admin.Close(context.Background())
	})
	return withDatabase(DatabaseURL(), name)
}

// NewStore opens a Store on a fresh database.
func NewStore(t testing.TB) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func adminConn(t testing.TB) *pgx.Conn {
	t.Helper()
	return adminConnTo(t, DatabaseURL())
}

// adminConnTo connects to the postgres database of the server at url.
func adminConnTo(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), withDatabase(url, "postgres"))
	if err != nil {
		t.Fatalf("storetest: connect: %v (is `make services` up?)", err)
	}
	return conn
}

func ensureTemplate(ctx context.Context) (string, error) {
	name := "rt_template_" + migrationsHash()
	conn, err := pgx.Connect(ctx, withDatabase(DatabaseURL(), "postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	// One package builds the template; the others wait on the lock.
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(7012001)`); err != nil {
		return "", err
	}
	defer conn.Exec(ctx, `SELECT pg_advisory_unlock(7012001)`)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)`,
		name).Scan(&exists); err != nil || exists {
		return name, err
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name)); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s`, name)); err != nil {
		return "", err
	}
	if err := store.Migrate(ctx, withDatabase(DatabaseURL(), name)); err != nil {
		return "", err
	}
	_, err = conn.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %s WITH IS_TEMPLATE true`, name))
	return name, err
}

func migrationsHash() string {
	h := sha256.New()
	_ = fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := fs.ReadFile(migrations.FS, path)
		h.Write([]byte(path))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}

func withDatabase(raw, name string) string {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	u.Path = "/" + name
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// RedisDB reserves a Redis DB index (1..63) for this test binary, flushes it,
// and returns a REDIS_URL pointing at it. Indexes come from a counter in DB 0,
// so test packages running at the same time get different ones.
func RedisDB(t testing.TB) string {
	t.Helper()
	redisOnce.Do(func() { redisOnce.url, redisOnce.err = reserveRedisDB() })
	if redisOnce.err != nil {
		t.Fatalf("storetest: redis: %v (is `make services` up?)", redisOnce.err)
	}
	opt, _ := redis.ParseURL(redisOnce.url)
	c := redis.NewClient(opt)
	defer c.Close()
	if err := c.FlushDB(context.Background()).Err(); err != nil {
		t.Fatalf("storetest: flush redis: %v", err)
	}
	return redisOnce.url
}

var redisOnce struct {
	sync.Once
	url string
	err error
}

func reserveRedisDB() (string, error) {
	opt, err := redis.ParseURL(RedisURL())
	if err != nil {
		return "", err
	}
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := c.Incr(ctx, "repeaterd:test:next-db").Result()
	if err != nil {
		return "", err
	}
	u, _ := url.Parse(RedisURL())
	u.Path = fmt.Sprintf("/%d", 1+(n-1)%63)
	return u.String(), nil
}

// RedisClient returns a client on this test binary's Redis DB.
func RedisClient(t testing.TB) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(RedisDB(t))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// Exec runs SQL on the database at url, failing the test on error.
func Exec(t testing.TB, dbURL, sql string, args ...any) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("storetest: %s: %v", strings.TrimSpace(sql), err)
	}
}
