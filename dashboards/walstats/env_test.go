package walstats

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// env is a fresh database with repeaters in several domains, a slot name of
// its own (slots are cluster-wide) and the "batch applied" signal of the
// consumers it starts.
type env struct {
	url       string
	st        *store.Store
	slot      string
	repeaters []envRepeater
	applied   *appliedSignal
}

// envRepeater is a repeater and a payload its records can point at.
type envRepeater struct {
	id      int64
	domain  string
	payload int64
}

func newEnv(t testing.TB, domains int) *env {
	t.Helper()
	return newEnvOn(t, storetest.NewDB(t), domains)
}

// newEnvOn is newEnv on the migrated database at url.
func newEnvOn(t testing.TB, url string, domains int) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{url: url, applied: newAppliedSignal()}
	st, err := store.Open(ctx, e.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	e.st = st
	var db string
	if err := st.Pool().QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	e.slot = "st_" + db
	for d := range domains {
		for range 2 {
			e.repeaters = append(e.repeaters, e.newRepeater(t, fmt.Sprintf("d%d", d)))
		}
	}
	return e
}

func (e *env) newRepeater(t testing.TB, domain string) envRepeater {
	t.Helper()
	r := storetest.Repeater(t, e.st, storetest.RepeaterOpts{Domain: domain})
	er := envRepeater{id: r.ID, domain: domain}
	err := e.st.Pool().QueryRow(context.Background(), `INSERT INTO payloads (domain, body) VALUES ($1, '{}') RETURNING id`,
		domain).Scan(&er.payload)
	if err != nil {
		t.Fatal(err)
	}
	return er
}

// conn opens a plain connection for load, closed at cleanup.
func (e *env) conn(t testing.TB) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), e.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

const insertSQL = `INSERT INTO repeat_records (domain, repeater_id, payload_id, state)
	SELECT $1, $2, $3, $4 FROM generate_series(1, $5)`

func (e *env) insert(t testing.TB, r envRepeater, state store.State, n int) {
	t.Helper()
	storetest.Exec(t, e.url, insertSQL, r.domain, r.id, r.payload, int16(state), n)
}

func execOn(t testing.TB, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// mark commits a transaction that changes no count and returns a position
// inside it: once the stats are applied past it, they include everything
// committed before mark was called.
func (e *env) mark(t testing.TB) pglogrepl.LSN {
	t.Helper()
	ctx := context.Background()
	var lsn string
	r := e.repeaters[0]
	err := pgx.BeginFunc(ctx, e.st.Pool(), func(tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, `INSERT INTO repeat_records (domain, repeater_id, payload_id) VALUES ($1, $2, $3)
			RETURNING id`, r.domain, r.id, r.payload).Scan(&id)
		if err == nil {
			_, err = tx.Exec(ctx, `DELETE FROM repeat_records WHERE id = $1`, id)
		}
		if err == nil {
			err = tx.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&lsn)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := pglogrepl.ParseLSN(lsn)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitApplied waits until one of the env's consumers has applied the stats
// to lsn or past it.
func (e *env) waitApplied(t testing.TB, lsn pglogrepl.LSN, timeout time.Duration) {
	t.Helper()
	e.applied.wait(t, lsn, timeout)
}

// appliedSignal is the "batch applied" signal (Config.OnApplied): the
// highest LSN reported, and a channel closed each time it grows.
type appliedSignal struct {
	mu      sync.Mutex
	lsn     pglogrepl.LSN
	advance chan struct{}
}

func newAppliedSignal() *appliedSignal { return &appliedSignal{advance: make(chan struct{})} }

// note is a Config.OnApplied.
func (s *appliedSignal) note(lsn pglogrepl.LSN) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lsn <= s.lsn {
		return
	}
	s.lsn = lsn
	close(s.advance)
	s.advance = make(chan struct{})
}

// at returns the highest LSN reported and a channel closed when it grows.
func (s *appliedSignal) at() (pglogrepl.LSN, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lsn, s.advance
}

// wait waits until lsn or a later one is reported.
func (s *appliedSignal) wait(t testing.TB, lsn pglogrepl.LSN, timeout time.Duration) {
	t.Helper()
	if err := s.waitOr(lsn, timeout, nil); err != nil {
		t.Fatal(err)
	}
}

// waitOr waits until lsn or a later one is reported, timeout passes or
// abort is closed.
func (s *appliedSignal) waitOr(lsn pglogrepl.LSN, timeout time.Duration, abort <-chan struct{}) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		got, advance := s.at()
		if got >= lsn {
			return nil
		}
		select {
		case <-advance:
		case <-abort:
			return fmt.Errorf("gave up waiting for the stats to reach %s: at %s", lsn, got)
		case <-timer.C:
			return fmt.Errorf("stats not applied to %s within %s: at %s", lsn, timeout, got)
		}
	}
}

// assertExact compares the aggregate with a GROUP BY over repeat_records.
func (e *env) assertExact(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	agg, err := e.st.StatsCounts(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	live, err := e.st.LiveStatsCounts(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(agg, live) {
		t.Fatalf("aggregate differs from live counts:\n%s", diffCounts(agg, live))
	}
	var total int64
	for _, c := range live {
		total += c.Count
	}
	t.Logf("aggregate exact: %d counters, %d records", len(live), total)
}

func diffCounts(agg, live []store.StatCount) string {
	m := map[store.StatKey][2]int64{}
	for _, c := range agg {
		v := m[c.StatKey]
		v[0] = c.Count
		m[c.StatKey] = v
	}
	for _, c := range live {
		v := m[c.StatKey]
		v[1] = c.Count
		m[c.StatKey] = v
	}
	var b strings.Builder
	for k, v := range m {
		if v[0] != v[1] {
			fmt.Fprintf(&b, "  %s/%d/%s: aggregate %d, live %d\n", k.Domain, k.RepeaterID, k.State, v[0], v[1])
		}
	}
	return b.String()
}

// consumer starts an in-process consumer, stopped and its slot dropped at
// cleanup.
func (e *env) consumer(t testing.TB, cfg Config) *Consumer {
	t.Helper()
	c := e.newConsumer(t, cfg)
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	return c
}

// newConsumer returns a consumer on the env's slot that reports to the env's
// signal (and to cfg.OnApplied, when set).
func (e *env) newConsumer(tb testing.TB, cfg Config) *Consumer {
	tb.Helper()
	cfg.DatabaseURL, cfg.SlotName = e.url, e.slot
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(tb.Output(), nil))
	}
	if cfg.StandbyInterval == 0 {
		cfg.StandbyInterval = 100 * time.Millisecond
	}
	if also := cfg.OnApplied; also != nil {
		cfg.OnApplied = func(lsn pglogrepl.LSN) { e.applied.note(lsn); also(lsn) }
	} else {
		cfg.OnApplied = e.applied.note
	}
	c, err := New(e.st, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.dropSlot(tb) })
	return c
}

// dropSlot drops the test's slot once its last walsender has let go; the
// server gives no signal for that, so it retries.
func (e *env) dropSlot(t testing.TB) {
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_ = e.st.DropReplicationSlot(ctx, e.slot)
		if _, err := e.st.GetReplicationSlot(ctx, e.slot); store.ErrorCode(err) == store.ENOTFOUND {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("slot %s still active; storetest drops it", e.slot)
}

func metricValue(t testing.TB, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	if out.Gauge != nil {
		return out.Gauge.GetValue()
	}
	return out.Counter.GetValue()
}
