package benchdb_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"repeaterd/store"
	"repeaterd/store/benchdb"
	"repeaterd/store/storetest"
)

var ctx = context.Background()

func TestDatabaseURL(t *testing.T) {
	got, err := benchdb.DatabaseURL("postgres://u:p@127.0.0.1:5432/main?sslmode=disable", "repeaterd_bench_x")
	if err != nil || got != "postgres://u:p@127.0.0.1:5432/repeaterd_bench_x?sslmode=disable" {
		t.Fatalf("DatabaseURL = %q, %v", got, err)
	}
	if _, err := benchdb.DatabaseURL("postgres://%zz", "x"); store.ErrorCode(err) != store.EINVALID {
		t.Fatalf("a bad URL: %v", err)
	}
}

func TestRecreateAndDropDatabase(t *testing.T) {
	server := storetest.DatabaseURL()
	name := fmt.Sprintf("repeaterd_benchdb_test_%d", time.Now().UnixNano())
	t.Cleanup(func() { _ = benchdb.DropDatabase(ctx, server, name) })
	for range 2 { // the second time drops what the first made
		dbURL, err := benchdb.RecreateDatabase(ctx, server, name)
		if err != nil {
			t.Fatal(err)
		}
		st, err := store.Open(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		// Migrated and empty.
		if n := storetest.Count(t, st, `SELECT count(*) FROM repeaters`); n != 0 {
			t.Fatalf("%d repeaters in a fresh database", n)
		}
		storetest.Repeater(t, st, storetest.RepeaterOpts{})
		st.Close()
	}
	if err := benchdb.DropDatabase(ctx, server, name); err != nil {
		t.Fatal(err)
	}
	if exists(t, server, name) {
		t.Fatal("the database survived DropDatabase")
	}
	if err := benchdb.DropDatabase(ctx, server, name); err != nil {
		t.Fatalf("dropping a missing database: %v", err)
	}
	if err := benchdb.DropDatabase(ctx, server, "x; DROP DATABASE postgres"); store.ErrorCode(err) != store.EINVALID {
		t.Fatalf("a bad name was accepted: %v", err)
	}
}

func exists(t *testing.T, server, name string) bool {
	t.Helper()
	adminURL, _ := benchdb.DatabaseURL(server, "postgres")
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname = $1`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func TestSeedHistory(t *testing.T) {
	st := storetest.NewStore(t)
	var progress []int
	err := benchdb.SeedHistory(ctx, st.Pool(), benchdb.HistoryParams{Domains: 3, Repeaters: 20, Records: 1000,
		ReadyFraction: 0.5, Chunk: 300, Progress: func(n int) { progress = append(progress, n) }})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(progress, []int{300, 600, 900, 1000}) {
		t.Errorf("progress %v", progress)
	}
	if n := storetest.Count(t, st, `SELECT count(*) FROM repeat_records`); n != 1000 {
		t.Fatalf("%d records, want 1000", n)
	}
	records, repeaters, err := benchdb.CountReady(ctx, st.Pool())
	if err != nil {
		t.Fatal(err)
	}
	// Half ready, give or take the randomness of 1,000 draws.
	if records < 400 || records > 600 || repeaters == 0 || repeaters > 20 {
		t.Fatalf("CountReady = %d records on %d repeaters", records, repeaters)
	}
	ids, err := benchdb.RepeaterIDs(ctx, st.Pool(), 5)
	if err != nil || len(ids) != 5 || !slices.IsSorted(ids) {
		t.Fatalf("RepeaterIDs = %v, %v", ids, err)
	}
}

func TestLoadReadyAndCounts(t *testing.T) {
	st := storetest.NewStore(t)
	a := storetest.Repeater(t, st, storetest.RepeaterOpts{Domain: "a"})
	b := storetest.Repeater(t, st, storetest.RepeaterOpts{Domain: "b"})
	n, err := benchdb.LoadReady(ctx, st.Pool(), []int64{a.ID, b.ID}, 3, 256)
	if err != nil || n != 6 {
		t.Fatalf("LoadReady = %d, %v; want 6", n, err)
	}
	if size := storetest.Count(t, st, `SELECT min(length(body)) FROM payloads`); size < 200 || size > 300 {
		t.Errorf("payloads of %d bytes, want about 256", size)
	}
	if _, err := st.Pool().Exec(ctx, `UPDATE repeat_records SET state = 4, attempt_count = 1 WHERE id IN
		(SELECT id FROM repeat_records WHERE repeater_id = $1 ORDER BY id LIMIT 2)`, a.ID); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ids  []int64
		want int64
	}{{nil, 2}, {[]int64{a.ID}, 2}, {[]int64{b.ID}, 0}} {
		if got, err := benchdb.CountSuccess(ctx, st.Pool(), tc.ids); err != nil || got != tc.want {
			t.Errorf("CountSuccess(%v) = %d, %v; want %d", tc.ids, got, err, tc.want)
		}
	}
	att, err := benchdb.RepeaterAttempts(ctx, st.Pool(), a.ID)
	if err != nil || att.Records != 2 || att.Attempts != 0 || att.BackoffCount != 0 || att.NextAttemptAt != nil {
		t.Fatalf("RepeaterAttempts = %+v, %v", att, err)
	}
	var recIDs []int64
	rows, _ := st.Pool().Query(ctx, `SELECT id FROM repeat_records WHERE repeater_id = $1`, b.ID)
	if recIDs, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
		t.Fatal(err)
	}
	registered, firstAttempt, err := benchdb.RecordTimes(ctx, st.Pool(), recIDs)
	if err != nil || len(registered) != 3 || len(firstAttempt) != 0 {
		t.Fatalf("RecordTimes = %v, %v, %v", registered, firstAttempt, err)
	}
}

func TestQueryAndExplain(t *testing.T) {
	st := storetest.NewStore(t)
	r := storetest.Repeater(t, st, storetest.RepeaterOpts{})
	storetest.Records(t, st, r, 3)
	if n, err := benchdb.Query(ctx, st.Pool(), benchdb.OrJoinReadinessSQL); err != nil || n != 3 {
		t.Fatalf("the OR-join returned %d rows, %v; want one per ready record", n, err)
	}
	sql, args := st.ReadyRepeatersSQL(time.Now())
	if n, err := benchdb.QueryCustomPlan(ctx, st.Pool(), sql, args...); err != nil || n != 1 {
		t.Fatalf("the readiness query returned %d rows, %v; want 1", n, err)
	}
	plan, text, err := benchdb.Explain(ctx, st.Pool(), benchdb.OrJoinReadinessSQL)
	if err != nil || plan.Plan.NodeType == "" || !strings.Contains(text, "Execution Time") {
		t.Fatalf("Explain = %+v, %q, %v", plan, text, err)
	}
	for range 2 { // a second PREPARE fails unless the first was deallocated
		plan, text, err = benchdb.ExplainGeneric(ctx, st.Pool(), sql, args...)
		if err != nil || plan.Plan.NodeType == "" || !strings.Contains(text, "Execution Time") {
			t.Fatalf("ExplainGeneric = %+v, %q, %v", plan, text, err)
		}
	}
	if _, _, err := benchdb.ExplainGeneric(ctx, st.Pool(), `SELECT $1::text`, "text"); store.ErrorCode(err) != store.EINVALID {
		t.Fatalf("a string argument to EXECUTE: %v", err)
	}
}

func TestChurnAndLSN(t *testing.T) {
	st := storetest.NewStore(t)
	r := storetest.Repeater(t, st, storetest.RepeaterOpts{})
	storetest.Record(t, st, r, nil) // the payload churn's records share
	if lsn, err := benchdb.AppliedLSN(ctx, st.Pool()); err != nil || lsn != "" {
		t.Fatalf("AppliedLSN before any consumer = %q, %v", lsn, err)
	}
	lsn1, inserted, err := benchdb.Churn(ctx, st.Pool(), benchdb.ChurnParams{RepeaterIDs: []int64{r.ID}, Inserts: 4})
	if err != nil || len(inserted) != 4 || lsn1 == "" {
		t.Fatalf("Churn = %q, %v, %v", lsn1, inserted, err)
	}
	lsn2, none, err := benchdb.Churn(ctx, st.Pool(), benchdb.ChurnParams{Complete: inserted, SyncCommit: true})
	if err != nil || len(none) != 0 {
		t.Fatalf("Churn completing = %v, %v", none, err)
	}
	if n := storetest.Count(t, st, `SELECT count(*) FROM repeat_records WHERE state = 4`); n != 2 {
		t.Fatalf("%d records Success, want the 2 even ids", n)
	}
	if reached, err := benchdb.LSNReached(ctx, st.Pool(), lsn1); err != nil || reached {
		t.Fatalf("LSNReached with no consumer = %v, %v", reached, err)
	}
	if _, err := st.Pool().Exec(ctx, `INSERT INTO stats_progress (slot_name, applied_lsn) VALUES ('t', $1::pg_lsn)`, lsn2); err != nil {
		t.Fatal(err)
	}
	if reached, err := benchdb.LSNReached(ctx, st.Pool(), lsn1); err != nil || !reached {
		t.Fatalf("LSNReached past the applied LSN = %v, %v", reached, err)
	}
	if got, err := benchdb.AppliedLSN(ctx, st.Pool()); err != nil || got != lsn2 {
		t.Fatalf("AppliedLSN = %q, %v; want %q", got, err, lsn2)
	}
}

func TestServerSettings(t *testing.T) {
	st := storetest.NewStore(t)
	if v, err := benchdb.ServerVersion(ctx, st.Pool()); err != nil || v == "" {
		t.Fatalf("ServerVersion = %q, %v", v, err)
	}
	if sc, delay, err := benchdb.CommitSettings(ctx, st.Pool()); err != nil || sc == "" || delay == "" {
		t.Fatalf("CommitSettings = %q, %q, %v", sc, delay, err)
	}
	if err := benchdb.Vacuum(ctx, st.Pool()); err != nil {
		t.Fatal(err)
	}
}

// SeedHistory loads without repeat_records' secondary indexes and builds
// them after: every index is there again, as it was, and valid.
func TestSeedHistoryRebuildsEveryIndex(t *testing.T) {
	st := storetest.NewStore(t)
	indexes := func() []string {
		rows, err := st.Pool().Query(ctx, `SELECT pg_get_indexdef(indexrelid) || CASE WHEN indisvalid THEN '' ELSE ' INVALID' END
			FROM pg_index WHERE indrelid = 'repeat_records'::regclass ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		defs, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return defs
	}
	before := indexes()
	if len(before) < 5 {
		t.Fatalf("only %d indexes on repeat_records before the load", len(before))
	}
	loaded := 0
	err := benchdb.SeedHistory(ctx, st.Pool(), benchdb.HistoryParams{Domains: 3, Repeaters: 10, Records: 5000,
		ReadyFraction: 0.1, Chunk: 2000, Progress: func(n int) { loaded = n }})
	if err != nil {
		t.Fatal(err)
	}
	if after := indexes(); !slices.Equal(after, before) {
		t.Fatalf("indexes after the load:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
	if n := storetest.Count(t, st, `SELECT count(*) FROM repeat_records`); n != 5000 || loaded != 5000 {
		t.Fatalf("%d records (progress %d), want 5000", n, loaded)
	}
}
