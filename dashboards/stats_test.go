package dashboards

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// statsEnv is a fresh database with repeaters in several domains and a slot
// name of its own (slots are cluster-wide).
type statsEnv struct {
	url       string
	st        *store.Store
	slot      string
	repeaters []statsRepeater
}

type statsRepeater struct {
	id      int64
	domain  string
	payload int64
}

func newStatsEnv(t testing.TB, domains int) *statsEnv {
	t.Helper()
	ctx := context.Background()
	e := &statsEnv{url: storetest.NewDB(t)}
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
		for r := range 2 {
			e.repeaters = append(e.repeaters, e.newRepeater(t, fmt.Sprintf("d%d", d), r))
		}
	}
	return e
}

func (e *statsEnv) newRepeater(t testing.TB, domain string, n int) statsRepeater {
	t.Helper()
	ctx := context.Background()
	r := &store.Repeater{Domain: domain, Name: strconv.Itoa(n), URL: "http://127.0.0.1:1/hook"}
	if err := e.st.CreateRepeater(ctx, r); err != nil {
		t.Fatal(err)
	}
	tr := statsRepeater{id: r.ID, domain: domain}
	err := e.st.Pool().QueryRow(ctx, `INSERT INTO payloads (domain, body) VALUES ($1, '{}') RETURNING id`,
		domain).Scan(&tr.payload)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// conn opens a plain connection for load, closed at cleanup.
func (e *statsEnv) conn(t testing.TB) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), e.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

const statsInsertSQL = `INSERT INTO repeat_records (domain, repeater_id, payload_id, state)
	SELECT $1, $2, $3, $4 FROM generate_series(1, $5)`

func (e *statsEnv) insert(t testing.TB, r statsRepeater, state store.State, n int) {
	t.Helper()
	storetest.Exec(t, e.url, statsInsertSQL, r.domain, r.id, r.payload, int16(state), n)
}

// mark commits a transaction that changes no count and returns a position
// inside it: once the stats are applied past it, they include everything
// committed before mark was called.
func (e *statsEnv) mark(t testing.TB) pglogrepl.LSN {
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

// waitApplied polls stats_progress until it passes lsn.
func (e *statsEnv) waitApplied(t testing.TB, lsn pglogrepl.LSN, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, err := e.st.AppliedLSN(context.Background(), e.slot)
		if err == nil && got >= lsn {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats not applied to %s within %s: at %s (%v)", lsn, timeout, got, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// assertExact compares the aggregate with a GROUP BY over repeat_records.
func (e *statsEnv) assertExact(t testing.TB) {
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
		t.Fatalf("aggregate differs from live counts:\n%s", diffStatCounts(agg, live))
	}
	var total int64
	for _, c := range live {
		total += c.Count
	}
	t.Logf("aggregate exact: %d counters, %d records", len(live), total)
}

func diffStatCounts(agg, live []store.StatCount) string {
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
func (e *statsEnv) consumer(t testing.TB, cfg StatsConfig) *StatsConsumer {
	t.Helper()
	c := e.newConsumer(t, cfg)
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	return c
}

func (e *statsEnv) newConsumer(tb testing.TB, cfg StatsConfig) *StatsConsumer {
	tb.Helper()
	cfg.DatabaseURL, cfg.SlotName = e.url, e.slot
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(tb.Output(), nil))
	}
	if cfg.StandbyInterval == 0 {
		cfg.StandbyInterval = 100 * time.Millisecond
	}
	c, err := NewStatsConsumer(e.st, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.dropSlot(tb) })
	return c
}

// dropSlot drops the test's slot once its last walsender has let go.
func (e *statsEnv) dropSlot(t testing.TB) {
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

func TestStatsConsumerBackfillsExistingRecords(t *testing.T) {
	e := newStatsEnv(t, 3)
	for i, r := range e.repeaters {
		for j, state := range store.AllStates {
			e.insert(t, r, state, 50+i*37+j*11)
		}
	}
	c := e.consumer(t, StatsConfig{})
	e.waitApplied(t, e.mark(t), 30*time.Second)
	e.assertExact(t)

	// Then the stream: inserts, state changes, a purge.
	conn := e.conn(t)
	ctx := context.Background()
	e.insert(t, e.repeaters[1], store.StatePending, 25)
	statsExec(t, conn, `UPDATE repeat_records SET state = 4 WHERE id IN
		(SELECT id FROM repeat_records WHERE state = 1 ORDER BY id LIMIT 40)`)
	statsExec(t, conn, `DELETE FROM repeat_records WHERE state = 4 AND repeater_id = $1`, e.repeaters[0].id)
	e.waitApplied(t, e.mark(t), 30*time.Second)
	e.assertExact(t)

	if n := statsMetricValue(t, c.metrics.appliedChanges); n < 25+40+1 {
		t.Errorf("applied_changes_total = %v, want at least the changes made", n)
	}
	if got := statsMetricValue(t, c.metrics.appliedLSN); got != float64(c.AppliedLSN()) || got == 0 {
		t.Errorf("applied_lsn gauge = %v, consumer at %v", got, c.AppliedLSN())
	}
	if rc, err := e.st.RecordCounts(ctx, ""); err != nil || rc.Live {
		t.Errorf("RecordCounts live = %v (%v), want the aggregate while the slot feeds it", rc.Live, err)
	}
	if len(c.Collectors()) != 3 {
		t.Errorf("Collectors() = %d collectors, want 3", len(c.Collectors()))
	}
}

func TestStatsConsumerStandbyTakesOver(t *testing.T) {
	e := newStatsEnv(t, 1)
	e.insert(t, e.repeaters[0], store.StatePending, 10)
	first := e.consumer(t, StatsConfig{})
	e.waitApplied(t, e.mark(t), 30*time.Second)
	second := e.consumer(t, StatsConfig{}) // stands by: the first holds the slot
	e.insert(t, e.repeaters[1], store.StateFail, 5)
	e.waitApplied(t, e.mark(t), 30*time.Second)
	if second.AppliedLSN() != 0 {
		t.Fatalf("the standby applied changes (to %s) while the first consumer ran", second.AppliedLSN())
	}
	_ = first.Stop(context.Background())
	e.insert(t, e.repeaters[1], store.StatePending, 3)
	target := e.mark(t)
	e.waitApplied(t, target, 30*time.Second)
	if second.AppliedLSN() < target {
		t.Fatalf("standby at %s, want it past %s after taking over", second.AppliedLSN(), target)
	}
	e.assertExact(t)
}

func TestStatsConsumerRebuildsStaleSlot(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, e *statsEnv)
	}{
		{"slot without counts (creation interrupted)", func(t *testing.T, e *statsEnv) {
			createTestSlot(t, e, e.slot)
		}},
		{"counts without slot (slot dropped)", func(t *testing.T, e *statsEnv) {
			setStatsProgress(t, e, e.slot, "0/1")
		}},
		{"slot confirmed past the counts", func(t *testing.T, e *statsEnv) {
			createTestSlot(t, e, e.slot)
			setStatsProgress(t, e, e.slot, "0/1")
		}},
		{"counts fed by another slot", func(t *testing.T, e *statsEnv) {
			createTestSlot(t, e, e.slot+"_old")
			setStatsProgress(t, e, e.slot+"_old", "0/1")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newStatsEnv(t, 1)
			e.insert(t, e.repeaters[0], store.StatePending, 40)
			tt.setup(t, e)
			// Wrong counts that only a recount removes.
			storetest.Exec(t, e.url, `INSERT INTO repeat_record_stats VALUES ('d0', $1, 4, 99)`, e.repeaters[1].id)
			e.consumer(t, StatsConfig{})
			e.waitApplied(t, e.mark(t), 30*time.Second)
			e.assertExact(t)
			if _, err := e.st.GetReplicationSlot(context.Background(), e.slot+"_old"); store.ErrorCode(err) != store.ENOTFOUND {
				t.Errorf("the replaced slot is still there (%v)", err)
			}
		})
	}
}

func createTestSlot(t *testing.T, e *statsEnv, name string) {
	t.Helper()
	storetest.Exec(t, e.url, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, name)
	t.Cleanup(func() { _ = e.st.DropReplicationSlot(context.Background(), name) })
}

func setStatsProgress(t *testing.T, e *statsEnv, slot, lsn string) {
	t.Helper()
	storetest.Exec(t, e.url, `INSERT INTO stats_progress (slot_name, applied_lsn) VALUES ($1, $2::pg_lsn)`, slot, lsn)
}

func statsExec(t testing.TB, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestStatsConsumerTruncateRecounts(t *testing.T) {
	e := newStatsEnv(t, 2)
	for _, r := range e.repeaters {
		e.insert(t, r, store.StatePending, 30)
		e.insert(t, r, store.StateSuccess, 10)
	}
	e.consumer(t, StatsConfig{BatchWait: time.Second}) // truncate lands mid-batch
	e.waitApplied(t, e.mark(t), 30*time.Second)
	e.assertExact(t)

	conn := e.conn(t)
	r := e.repeaters[2]
	statsExec(t, conn, `UPDATE repeat_records SET state = 2 WHERE repeater_id = $1`, r.id) // before: discarded
	// A truncate followed, in the same transaction, by new records.
	statsExec(t, conn, `BEGIN`)
	statsExec(t, conn, `INSERT INTO repeat_records (domain, repeater_id, payload_id) VALUES ($1, $2, $3)`,
		r.domain, r.id, r.payload)
	statsExec(t, conn, `TRUNCATE repeat_records CASCADE`)
	statsExec(t, conn, statsInsertSQL, r.domain, r.id, r.payload, 1, 7)
	statsExec(t, conn, `COMMIT`)
	e.insert(t, e.repeaters[0], store.StateFail, 3)
	e.waitApplied(t, e.mark(t), 30*time.Second)
	e.assertExact(t)
	got, _ := e.st.StatsCounts(context.Background(), "")
	if len(got) != 2 {
		t.Fatalf("counts after truncate = %v, want only what followed it", got)
	}
}

func TestStatsConsumerNoReplicationPrivilege(t *testing.T) {
	e := newStatsEnv(t, 1)
	ctx := context.Background()
	role := "norepl_" + strings.TrimPrefix(e.slot, "st_rt_")
	storetest.Exec(t, e.url, fmt.Sprintf(`CREATE ROLE %s LOGIN NOREPLICATION`, role))
	t.Cleanup(func() { storetest.Exec(t, e.url, fmt.Sprintf(`DROP ROLE IF EXISTS %s`, role)) })
	url := strings.Replace(e.url, "postgres@", role+"@", 1)
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := NewStatsConsumer(st, StatsConfig{DatabaseURL: url, SlotName: e.slot})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Start(ctx)
	if !errors.Is(err, ErrWALUnavailable) || !strings.Contains(err.Error(), "WITH REPLICATION") {
		t.Fatalf("Start as a role without REPLICATION: err = %v, want ErrWALUnavailable naming the fix", err)
	}
	t.Log(err)
	// The replication connection's own refusal names the fix too.
	_, err = c.connect(ctx)
	if !errors.Is(err, ErrWALUnavailable) || !strings.Contains(err.Error(), "REPLICATION") {
		t.Fatalf("replication connection as a role without REPLICATION: err = %v", err)
	}
	t.Log(err)
}

func TestStatsSetupErrorsNameTheFix(t *testing.T) {
	ready := store.StatsSetup{WALLevel: "logical", User: "app", CanReplicate: true, Publication: true, ReplicaIdentityFull: true}
	tests := []struct {
		name  string
		setup func(*store.StatsSetup)
		want  string
	}{
		{"wal_level", func(s *store.StatsSetup) { s.WALLevel = "replica" }, "set wal_level = logical in postgresql.conf and restart"},
		{"replication", func(s *store.StatsSetup) { s.CanReplicate = false }, "ALTER ROLE app WITH REPLICATION"},
		{"publication", func(s *store.StatsSetup) { s.Publication = false }, "repeaterd migrate"},
		{"replica identity", func(s *store.StatsSetup) { s.ReplicaIdentityFull = false }, "REPLICA IDENTITY FULL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ready
			tt.setup(&s)
			err := checkStatsSetup(&s, "repeaterd_stats")
			if !errors.Is(err, ErrWALUnavailable) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrWALUnavailable mentioning %q", err, tt.want)
			}
		})
	}
	if err := checkStatsSetup(&ready, "repeaterd_stats"); err != nil {
		t.Fatalf("ready setup: %v", err)
	}
	// The server's own refusal when wal_level is too low.
	err := classify(fmt.Errorf("create slot: %w", &pgconn.PgError{Code: "55000",
		Message: "logical decoding requires wal_level >= logical"}), "app")
	if !errors.Is(err, ErrWALUnavailable) || !strings.Contains(err.Error(), "wal_level = logical") {
		t.Fatalf("classify(wal_level) = %v", err)
	}
}

func TestStatsConfigDefaultsAndValidation(t *testing.T) {
	c := StatsConfig{DatabaseURL: "postgres://x@127.0.0.1/db"}.WithDefaults()
	if c.SlotName != DefaultStatsSlotName || c.Publication != DefaultStatsPublication ||
		c.StandbyInterval != DefaultStandbyInterval || c.BatchSize != DefaultStatsBatchSize ||
		c.BatchWait != DefaultStatsBatchWait || c.Logger == nil {
		t.Fatalf("WithDefaults = %+v", c)
	}
	for _, bad := range []StatsConfig{
		{},
		{DatabaseURL: c.DatabaseURL, SlotName: "Bad-Name"},
		{DatabaseURL: c.DatabaseURL, Publication: "x'; DROP"},
		{DatabaseURL: c.DatabaseURL, BatchSize: -1},
	} {
		if _, err := NewStatsConsumer(nil, bad); err == nil {
			t.Errorf("NewStatsConsumer(%+v) accepted", bad)
		}
	}
}

func statsMetricValue(t testing.TB, m prometheus.Metric) float64 {
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

// Decoder: pgoutput messages in, summed count changes out, whole
// transactions at a time.

func walText(v string) *pglogrepl.TupleDataColumn {
	return &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeText, Length: uint32(len(v)), Data: []byte(v)}
}

// walRow is a repeat_records row as pgoutput sends it (id, domain, repeater_id,
// payload_id, state).
func walRow(domain string, repeater int, state store.State) *pglogrepl.TupleData {
	return &pglogrepl.TupleData{ColumnNum: 5, Columns: []*pglogrepl.TupleDataColumn{
		walText("1"), walText(domain), walText(strconv.Itoa(repeater)), walText("9"), walText(strconv.Itoa(int(state)))}}
}

func walRelation(id uint32, name string) *pglogrepl.RelationMessage {
	m := &pglogrepl.RelationMessage{RelationID: id, Namespace: "public", RelationName: name}
	for _, c := range []string{"id", "domain", "repeater_id", "payload_id", "state"} {
		m.Columns = append(m.Columns, &pglogrepl.RelationMessageColumn{Name: c})
	}
	m.ColumnNum = uint16(len(m.Columns))
	return m
}

func walInsert(t *pglogrepl.TupleData) *pglogrepl.InsertMessage {
	return &pglogrepl.InsertMessage{RelationID: 1, Tuple: t}
}

func walUpdate(old, new *pglogrepl.TupleData) *pglogrepl.UpdateMessage {
	return &pglogrepl.UpdateMessage{RelationID: 1, OldTupleType: pglogrepl.UpdateMessageTupleTypeOld, OldTuple: old, NewTuple: new}
}

func walDelete(old *pglogrepl.TupleData) *pglogrepl.DeleteMessage {
	return &pglogrepl.DeleteMessage{RelationID: 1, OldTupleType: pglogrepl.DeleteMessageTupleTypeOld, OldTuple: old}
}

func walCommit(end pglogrepl.LSN) *pglogrepl.CommitMessage {
	return &pglogrepl.CommitMessage{CommitLSN: end - 8, TransactionEndLSN: end, CommitTime: time.Now()}
}

// feedTx runs one transaction through d and reports whether it joined the batch.
func feedTx(t *testing.T, d *walDecoder, end pglogrepl.LSN, msgs ...pglogrepl.Message) bool {
	t.Helper()
	if _, err := d.add(&pglogrepl.BeginMessage{FinalLSN: end - 8}); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if _, err := d.add(m); err != nil {
			t.Fatal(err)
		}
	}
	committed, err := d.add(walCommit(end))
	if err != nil {
		t.Fatal(err)
	}
	return committed
}

func statDelta(domain string, repeater int64, state store.State, n int64) store.StatCount {
	return store.StatCount{StatKey: store.StatKey{Domain: domain, RepeaterID: repeater, State: state}, Count: n}
}

func TestWALDecoder(t *testing.T) {
	d := newWALDecoder(1000)
	for _, m := range []pglogrepl.Message{walRelation(1, "repeat_records"), walRelation(2, "other")} {
		if _, err := d.add(m); err != nil {
			t.Fatal(err)
		}
	}
	pending, success := walRow("a", 7, store.StatePending), walRow("a", 7, store.StateSuccess)
	if feedTx(t, d, 900, walInsert(pending)) {
		t.Fatal("a transaction ending below the applied LSN joined the batch")
	}
	if feedTx(t, d, 1000, walInsert(pending)) {
		t.Fatal("a transaction ending at the applied LSN joined the batch")
	}
	toasted := walRow("a", 7, store.StateFail)
	toasted.Columns[1] = &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeToast}
	ok := feedTx(t, d, 1100,
		walInsert(pending), walInsert(pending), walInsert(walRow("b", 8, store.StatePending)),
		walUpdate(pending, success),                             // moves one
		walUpdate(success, success),                             // no state change: no count change
		walUpdate(pending, toasted),                             // domain unchanged (TOAST): taken from the old row
		walDelete(success),                                      // purge
		&pglogrepl.InsertMessage{RelationID: 2, Tuple: pending}, // not repeat_records
	)
	if !ok || !feedTx(t, d, 1200, walInsert(pending)) {
		t.Fatal("transactions above the applied LSN were skipped")
	}
	p := d.params("s")
	want := []store.StatCount{statDelta("a", 7, store.StatePending, 1), statDelta("a", 7, store.StateFail, 1),
		statDelta("b", 8, store.StatePending, 1)}
	if p.EndLSN != 1200 || p.Truncated || !slices.Equal(p.Deltas, want) || d.batch.changes != 8 || d.batchTxs != 2 {
		t.Fatalf("params = %+v (changes %d, txs %d), want end 1200 and %v", p, d.batch.changes, d.batchTxs, want)
	}

	// A truncate drops what came before it, in the batch and the transaction.
	feedTx(t, d, 1300, walInsert(pending), &pglogrepl.TruncateMessage{RelationNum: 1, RelationIDs: []uint32{1}},
		walInsert(success))
	feedTx(t, d, 1400, walInsert(success))
	p = d.params("s")
	if !p.Truncated || !slices.Equal(p.Deltas, []store.StatCount{statDelta("a", 7, store.StateSuccess, 2)}) {
		t.Fatalf("after truncate params = %+v", p)
	}
	d.reset(p.EndLSN)
	if d.applied != 1400 || d.batchTxs != 0 || len(d.params("s").Deltas) != 0 || d.params("s").Truncated {
		t.Fatalf("reset left %+v", d)
	}
}

func TestWALDecoderNeedsOldRows(t *testing.T) {
	d := newWALDecoder(0)
	d.add(walRelation(1, "repeat_records"))
	d.add(&pglogrepl.BeginMessage{})
	for _, m := range []pglogrepl.Message{
		&pglogrepl.UpdateMessage{RelationID: 1, NewTuple: walRow("a", 1, store.StateSuccess)},
		&pglogrepl.DeleteMessage{RelationID: 1, OldTupleType: pglogrepl.DeleteMessageTupleTypeKey, OldTuple: walRow("a", 1, 1)},
	} {
		if _, err := d.add(m); err == nil || !strings.Contains(err.Error(), "REPLICA IDENTITY FULL") {
			t.Errorf("%T without the old row: err = %v, want one naming REPLICA IDENTITY FULL", m, err)
		}
	}
	if _, err := d.add(walInsert(walRow("a", 1, 1))); err != nil {
		t.Fatal(err)
	}
	if _, err := d.add(&pglogrepl.InsertMessage{RelationID: 3, Tuple: walRow("a", 1, 1)}); err == nil {
		t.Error("a change for an undescribed relation was accepted")
	}
}

// Crash test: the consumer runs as a subprocess (this test binary re-run with
// the child variables set) and is killed with SIGKILL again and again while
// records are inserted, moved and purged.

const (
	childEnvURL   = "REPEATERD_STATS_CHILD_URL"
	childEnvSlot  = "REPEATERD_STATS_CHILD_SLOT"
	childEnvBatch = "REPEATERD_STATS_CHILD_BATCH"
)

// TestStatsConsumerChild is the crash test's consumer process; it does
// nothing in a normal run.
func TestStatsConsumerChild(t *testing.T) {
	url := os.Getenv(childEnvURL)
	if url == "" {
		t.Skip("runs only as TestStatsExactAcrossKills's subprocess")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	batch, _ := strconv.Atoi(os.Getenv(childEnvBatch))
	c, err := NewStatsConsumer(st, StatsConfig{DatabaseURL: url, SlotName: os.Getenv(childEnvSlot),
		BatchSize: batch, BatchWait: 20 * time.Millisecond, StandbyInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-ctx.Done()
	_ = c.Stop(context.Background())
}

type statsChild struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	exited chan struct{}
}

func (e *statsEnv) startChild(t *testing.T, batch int) *statsChild {
	t.Helper()
	c := &statsChild{exited: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestStatsConsumerChild$", "-test.count=1", "-test.v")
	c.cmd.Env = append(os.Environ(), childEnvURL+"="+e.url, childEnvSlot+"="+e.slot,
		childEnvBatch+"="+strconv.Itoa(batch))
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.cmd.Wait(); close(c.exited) }()
	return c
}

// kill SIGKILLs the child and fails the test if it had already exited.
func (c *statsChild) kill(t *testing.T) {
	t.Helper()
	select {
	case <-c.exited:
		t.Fatalf("consumer process exited by itself:\n%s", c.out.String())
	default:
	}
	_ = c.cmd.Process.Kill()
	<-c.exited
	t.Logf("killed consumer process; its output:\n%s", c.out.String())
}

// waitUntil polls cond until it holds, failing on timeout or if the child
// exits.
func (c *statsChild) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		select {
		case <-c.exited:
			t.Fatalf("consumer process exited while waiting for %s:\n%s", what, c.out.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = c.cmd.Process.Kill()
			<-c.exited // c.out is the copying goroutine's until then
			t.Fatalf("timed out waiting for %s:\n%s", what, c.out.String())
		}
	}
}

const (
	loadRandomIDs = `SELECT id FROM repeat_records
		WHERE id >= (SELECT min(id) + floor($1 * (max(id) - min(id)))::bigint FROM repeat_records)`
	loadMoveSQL = `UPDATE repeat_records SET state = (ARRAY[1, 2, 4, 8, 16, 32])[1 + floor(random() * 6)::int],
		attempt_count = attempt_count + 1 WHERE id IN (` + loadRandomIDs + ` ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)`
	loadTouchSQL = `UPDATE repeat_records SET attempt_count = attempt_count + 1
		WHERE id IN (` + loadRandomIDs + ` ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)`
	loadPurgeSQL = `DELETE FROM repeat_records WHERE id IN (` + loadRandomIDs + `
		AND state IN (4, 8, 16, 32) ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)`
)

// load changes records until ctx ends: inserts, state changes, updates
// that keep the state, purges, and mixed transactions, some rolled back.
// Rows are picked SKIP LOCKED so two loaders seldom wait on each other; an
// error (a rare deadlock, cancellation) only skips an op.
func (e *statsEnv) load(ctx context.Context, conn *pgx.Conn, rng *rand.Rand, ops *atomic.Int64) {
	for ctx.Err() == nil {
		r := e.repeaters[rng.IntN(len(e.repeaters))]
		n := 1 + rng.IntN(10)
		var err error
		switch p := rng.IntN(100); {
		case p < 35:
			_, err = conn.Exec(ctx, statsInsertSQL, r.domain, r.id, r.payload, 1, n)
		case p < 65:
			_, err = conn.Exec(ctx, loadMoveSQL, rng.Float64(), n)
		case p < 75:
			_, err = conn.Exec(ctx, loadTouchSQL, rng.Float64(), n)
		case p < 90:
			_, err = conn.Exec(ctx, loadPurgeSQL, rng.Float64(), n)
		default:
			err = loadMixedTx(ctx, conn, rng, r, n)
		}
		if err == nil {
			ops.Add(1)
		}
	}
}

func loadMixedTx(ctx context.Context, conn *pgx.Conn, rng *rand.Rand, r statsRepeater, n int) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{statsInsertSQL, []any{r.domain, r.id, r.payload, 2, n}},
		{loadMoveSQL, []any{rng.Float64(), n}},
		{loadPurgeSQL, []any{rng.Float64(), n}},
		{statsInsertSQL, []any{r.domain, r.id, r.payload, 4, n}},
	} {
		if _, err := tx.Exec(ctx, q.sql, q.args...); err != nil {
			return err
		}
	}
	if rng.IntN(5) == 0 {
		return tx.Rollback(ctx) // must count nothing
	}
	return tx.Commit(ctx)
}

func TestStatsExactAcrossKills(t *testing.T) {
	e := newStatsEnv(t, 4)
	for _, r := range e.repeaters {
		e.insert(t, r, store.StatePending, 300)
	}
	ctx, stopLoad := context.WithCancel(context.Background())
	var ops atomic.Int64
	var wg sync.WaitGroup
	for i := range 2 {
		conn := e.conn(t)
		wg.Go(func() { e.load(ctx, conn, rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano()))), &ops) })
	}
	t.Cleanup(func() { stopLoad(); wg.Wait() })

	const kills = 7
	batchSizes := []int{1, 20, 500, 5000}
	for i := range kills {
		before, _ := e.st.AppliedLSN(ctx, e.slot)
		c := e.startChild(t, batchSizes[i%len(batchSizes)])
		if i == 0 {
			// Right after the slot appears: likely mid-backfill.
			c.waitUntil(t, "the slot", func() bool {
				_, err := e.st.GetReplicationSlot(ctx, e.slot)
				return err == nil
			})
		} else {
			c.waitUntil(t, "the consumer to apply changes", func() bool {
				lsn, err := e.st.AppliedLSN(ctx, e.slot)
				return err == nil && lsn > before
			})
			time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond) // a random point in the stream
		}
		c.kill(t)
	}
	stopLoad()
	wg.Wait()
	if ops.Load() < 100 {
		t.Fatalf("only %d load operations succeeded", ops.Load())
	}

	e.consumer(t, StatsConfig{})
	e.waitApplied(t, e.mark(t), 60*time.Second)
	t.Logf("%d SIGKILLs under %d load operations", kills, ops.Load())
	e.assertExact(t)
}

// Lag and throughput.

func TestStatsLagUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("takes seconds")
	}
	r := measureStatsLag(t, 2000, 5*time.Second)
	t.Logf("stats lag at %.0f changes/s (%d transactions): commit→applied p50 %s, p99 %s, max %s; lag_bytes max %d",
		r.rate, r.txs, r.p50, r.p99, r.max, r.maxLagBytes)
}

func BenchmarkStatsLag(b *testing.B) {
	for range b.N {
		r := measureStatsLag(b, 2000, 10*time.Second)
		b.ReportMetric(float64(r.p50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(r.p99.Microseconds())/1000, "p99-ms")
		b.ReportMetric(r.rate, "changes/s")
	}
}

type statsLag struct {
	rate          float64
	txs           int
	p50, p99, max time.Duration
	maxLagBytes   int64
}

// measureStatsLag writes `rate` changes/s (every 10 ms a transaction inserting
// half and moving half) for d, and collects each transaction's delay from
// commit to applied.
func measureStatsLag(tb testing.TB, rate int, d time.Duration) statsLag {
	e := newStatsEnv(tb, 2)
	var mu sync.Mutex
	var delays []time.Duration
	c := e.newConsumer(tb, StatsConfig{StandbyInterval: DefaultStandbyInterval})
	c.observeDelay = func(d time.Duration) { mu.Lock(); delays = append(delays, d); mu.Unlock() }
	if err := c.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Stop(context.Background()) })
	e.waitApplied(tb, e.mark(tb), 30*time.Second)
	mu.Lock()
	delays = nil
	mu.Unlock()

	conn := e.conn(tb)
	// scripts/services.sh runs Postgres with synchronous_commit = off, where
	// the WAL writer flushes commits (and so wakes the walsender) only every
	// wal_writer_delay (200 ms); production commits flush at once.
	statsExec(tb, conn, `SET synchronous_commit = on`)
	ctx := context.Background()
	perTx := rate / 100 / 2
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var res statsLag
	began := time.Now()
	for i := 0; time.Since(began) < d; i++ {
		<-tick.C
		r := e.repeaters[i%len(e.repeaters)]
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, statsInsertSQL, r.domain, r.id, r.payload, 1, perTx); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE repeat_records SET state = 4 WHERE id IN
				(SELECT id FROM repeat_records WHERE state = 1 ORDER BY id LIMIT $1)`, perTx)
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
		res.txs++
		if i%10 == 0 {
			if lag, err := e.st.StatsLagBytes(ctx, e.slot); err == nil {
				res.maxLagBytes = max(res.maxLagBytes, lag)
			}
		}
	}
	res.rate = float64(res.txs*perTx*2) / time.Since(began).Seconds()
	e.waitApplied(tb, e.mark(tb), 30*time.Second)
	e.assertExact(tb)
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(delays)
	if len(delays) < res.txs {
		tb.Fatalf("observed %d transactions, wrote %d", len(delays), res.txs)
	}
	res.p50, res.p99, res.max = delays[len(delays)/2], delays[len(delays)*99/100], delays[len(delays)-1]
	return res
}

func TestStatsApplyThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("takes seconds")
	}
	for _, perTx := range []int{10, 1000} {
		rate := measureStatsApply(t, 20_000, perTx)
		t.Logf("stats apply: 20000 updates in transactions of %d: %.0f changes/s", perTx, rate)
	}
}

func BenchmarkStatsApply(b *testing.B) {
	for _, perTx := range []int{10, 1000} {
		b.Run(fmt.Sprintf("updates=100k/tx=%d", perTx), func(b *testing.B) {
			for range b.N {
				b.ReportMetric(measureStatsApply(b, 100_000, perTx), "changes/s")
			}
		})
	}
}

// measureStatsApply writes n record updates, perTx to a transaction, while the
// consumer is stopped, then times its catching up: the apply throughput,
// server-side decoding included.
func measureStatsApply(tb testing.TB, n, perTx int) float64 {
	e := newStatsEnv(tb, 2)
	ctx := context.Background()
	for i, r := range e.repeaters {
		e.insert(tb, r, store.StatePending, n/len(e.repeaters)+i)
	}
	first := e.newConsumer(tb, StatsConfig{})
	if err := first.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	e.waitApplied(tb, e.mark(tb), 60*time.Second)
	_ = first.Stop(context.Background())

	conn := e.conn(tb)
	statsExec(tb, conn, `SET synchronous_commit = off`)
	var lo int64
	if err := conn.QueryRow(ctx, `SELECT min(id) FROM repeat_records`).Scan(&lo); err != nil {
		tb.Fatal(err)
	}
	for from := lo; from < lo+int64(n); from += int64(perTx) {
		statsExec(tb, conn, `UPDATE repeat_records SET state = 4 WHERE id >= $1 AND id < $2`, from, from+int64(perTx))
	}
	target := e.mark(tb)

	c := e.newConsumer(tb, StatsConfig{})
	began := time.Now()
	if err := c.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	defer c.Stop(context.Background())
	e.waitApplied(tb, target, 5*time.Minute)
	rate := statsMetricValue(tb, c.metrics.appliedChanges) / time.Since(began).Seconds()
	e.assertExact(tb)
	return rate
}
