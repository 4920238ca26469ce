package store_test

import (
	"context"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// statsDB returns a store on a fresh database with one repeater per domain
// in domains, and their ids in the same order.
func statsDB(t *testing.T, domains ...string) (*store.Store, string, []int64) {
	t.Helper()
	url := storetest.NewDB(t)
	st, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	var ids []int64
	for _, d := range domains {
		r := &store.Repeater{Domain: d, URL: "http://127.0.0.1:1/hook"}
		if err := st.CreateRepeater(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	return st, url, ids
}

// statsInsert adds n records of repeater id (in domain) in state.
func statsInsert(t *testing.T, url, domain string, id int64, state store.State, n int) {
	t.Helper()
	storetest.Exec(t, url, `WITH p AS (INSERT INTO payloads (domain, body) VALUES ($1, '{}') RETURNING id)
		INSERT INTO repeat_records (domain, repeater_id, payload_id, state)
		SELECT $1, $2, p.id, $3 FROM p, generate_series(1, $4)`, domain, id, int16(state), n)
}

func statsSetProgress(t *testing.T, url, slot string, lsn pglogrepl.LSN) {
	t.Helper()
	storetest.Exec(t, url, `INSERT INTO stats_progress (slot_name, applied_lsn) VALUES ($1, $2::pg_lsn)`,
		slot, lsn.String())
}

func assertStatCounts(t *testing.T, got []store.StatCount, want ...store.StatCount) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("counts = %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("counts = %v, want %v", got, want)
		}
	}
}

func statCount(domain string, id int64, state store.State, n int64) store.StatCount {
	return store.StatCount{StatKey: store.StatKey{Domain: domain, RepeaterID: id, State: state}, Count: n}
}

func TestApplyStatsDeltas(t *testing.T) {
	ctx := context.Background()
	st, url, ids := statsDB(t, "a", "b")
	statsSetProgress(t, url, "s1", 100)

	apply := func(p store.ApplyStatsParams) bool {
		t.Helper()
		ok, err := st.ApplyStatsDeltas(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !apply(store.ApplyStatsParams{Slot: "s1", EndLSN: 200, Deltas: []store.StatCount{
		statCount("a", ids[0], store.StatePending, 3), statCount("b", ids[1], store.StateSuccess, 2)}}) {
		t.Fatal("first batch skipped")
	}
	// A state change: one out of Pending, one into Success.
	if !apply(store.ApplyStatsParams{Slot: "s1", EndLSN: 300, Deltas: []store.StatCount{
		statCount("a", ids[0], store.StatePending, -1), statCount("a", ids[0], store.StateSuccess, 1)}}) {
		t.Fatal("second batch skipped")
	}
	// At or below the stored LSN, or from another slot: skipped, nothing written.
	for _, p := range []store.ApplyStatsParams{
		{Slot: "s1", EndLSN: 300, Deltas: []store.StatCount{statCount("a", ids[0], store.StatePending, 50)}},
		{Slot: "s1", EndLSN: 250, Deltas: []store.StatCount{statCount("a", ids[0], store.StatePending, 50)}},
		{Slot: "other", EndLSN: 900, Deltas: []store.StatCount{statCount("a", ids[0], store.StatePending, 50)}},
	} {
		if apply(p) {
			t.Fatalf("batch %+v applied, want skipped", p)
		}
	}
	got, err := st.StatsCounts(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	assertStatCounts(t, got, statCount("a", ids[0], store.StatePending, 2), statCount("a", ids[0], store.StateSuccess, 1),
		statCount("b", ids[1], store.StateSuccess, 2))
	if lsn, err := st.AppliedLSN(ctx, "s1"); err != nil || lsn != 300 {
		t.Fatalf("AppliedLSN = %v, %v; want 0/12C", lsn, err)
	}
	if _, err := st.AppliedLSN(ctx, "other"); store.ErrorCode(err) != store.ENOTFOUND {
		t.Fatalf("AppliedLSN(other) err = %v, want not found", err)
	}

	// A truncate zeroes everything before the batch's own deltas.
	apply(store.ApplyStatsParams{Slot: "s1", EndLSN: 400, Truncated: true,
		Deltas: []store.StatCount{statCount("b", ids[1], store.StatePending, 1)}})
	got, _ = st.StatsCounts(ctx, "")
	assertStatCounts(t, got, statCount("b", ids[1], store.StatePending, 1))
	got, _ = st.StatsCounts(ctx, "a")
	assertStatCounts(t, got)
}

func TestBackfillStatsUsesSnapshot(t *testing.T) {
	ctx := context.Background()
	st, url, ids := statsDB(t, "a", "b")
	statsInsert(t, url, "a", ids[0], store.StatePending, 5)
	statsInsert(t, url, "b", ids[1], store.StateFail, 2)
	statsSetProgress(t, url, "old_slot", 1)

	// Export a snapshot, then write a record it does not see.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var snapshot string
	if err := tx.QueryRow(ctx, `SELECT pg_export_snapshot()`).Scan(&snapshot); err != nil {
		t.Fatal(err)
	}
	statsInsert(t, url, "a", ids[0], store.StateSuccess, 7)

	err = st.BackfillStats(ctx, store.BackfillStatsParams{Slot: "new_slot", Snapshot: snapshot, ConsistentPoint: 4242})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := st.StatsCounts(ctx, "")
	assertStatCounts(t, got, statCount("a", ids[0], store.StatePending, 5), statCount("b", ids[1], store.StateFail, 2))
	if lsn, err := st.AppliedLSN(ctx, "new_slot"); err != nil || lsn != 4242 {
		t.Fatalf("AppliedLSN = %v, %v", lsn, err)
	}
	if slot, _ := st.StatsFeedSlot(ctx); slot != "new_slot" {
		t.Fatalf("StatsFeedSlot = %q, want the new slot only", slot)
	}
	if err := st.BackfillStats(ctx, store.BackfillStatsParams{Slot: "x", Snapshot: "1'; DROP TABLE x; --"}); store.ErrorCode(err) != store.EINVALID {
		t.Fatalf("bad snapshot name: err = %v, want invalid", err)
	}
}

func TestRecordCountsFallsBackToLive(t *testing.T) {
	ctx := context.Background()
	st, url, ids := statsDB(t, "a", "b")
	statsInsert(t, url, "a", ids[0], store.StatePending, 3)
	statsInsert(t, url, "a", ids[0], store.StateSuccess, 1)
	statsInsert(t, url, "b", ids[1], store.StateCancelled, 2)

	live, err := st.LiveStatsCounts(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	assertStatCounts(t, live, statCount("a", ids[0], store.StatePending, 3), statCount("a", ids[0], store.StateSuccess, 1))

	// No slot feeds the aggregate: live counts, flagged.
	rc, err := st.RecordCounts(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if !rc.Live || len(rc.Counts) != 3 {
		t.Fatalf("RecordCounts = %+v, want 3 live counts", rc)
	}
	// A progress row naming a slot that does not exist is not a feed either.
	statsSetProgress(t, url, "missing_slot", 1)
	if fed, err := st.StatsFed(ctx); err != nil || fed {
		t.Fatalf("StatsFed = %v, %v; want false", fed, err)
	}
	if _, err := st.StatsLagBytes(ctx, "missing_slot"); store.ErrorCode(err) != store.ENOTFOUND {
		t.Fatalf("StatsLagBytes err = %v, want not found", err)
	}
	if _, err := st.GetReplicationSlot(ctx, "missing_slot"); store.ErrorCode(err) != store.ENOTFOUND {
		t.Fatalf("GetReplicationSlot err = %v, want not found", err)
	}
}

func TestRecordCountsReadsAggregateWhenFed(t *testing.T) {
	ctx := context.Background()
	st, url, ids := statsDB(t, "a")
	statsInsert(t, url, "a", ids[0], store.StatePending, 3)
	var dbName string
	if err := st.Pool().QueryRow(ctx, `SELECT current_database()`).Scan(&dbName); err != nil {
		t.Fatal(err)
	}
	slot := "st_" + dbName
	storetest.Exec(t, url, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
	t.Cleanup(func() { _ = st.DropReplicationSlot(context.Background(), slot) })
	statsSetProgress(t, url, slot, 1)
	// The aggregate is empty: reading it proves it is what is read.
	rc, err := st.RecordCounts(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if rc.Live || len(rc.Counts) != 0 {
		t.Fatalf("RecordCounts = %+v, want the (empty) aggregate", rc)
	}
	s, err := st.GetReplicationSlot(ctx, slot)
	if err != nil || s.Active || s.Plugin != "pgoutput" || s.ConfirmedFlush == 0 {
		t.Fatalf("GetReplicationSlot = %+v, %v", s, err)
	}
	if lag, err := st.StatsLagBytes(ctx, slot); err != nil || lag < 0 {
		t.Fatalf("StatsLagBytes = %d, %v", lag, err)
	}
	if err := st.DropReplicationSlot(ctx, slot); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetReplicationSlot(ctx, slot); store.ErrorCode(err) != store.ENOTFOUND {
		t.Fatalf("slot still there after drop: %v", err)
	}
}

func TestLockStatsIsExclusive(t *testing.T) {
	ctx := context.Background()
	st, _, _ := statsDB(t)
	release, err := st.LockStats(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.LockStats(ctx, "s"); store.ErrorCode(err) != store.ECONFLICT {
		t.Fatalf("second LockStats err = %v, want conflict", err)
	}
	other, err := st.LockStats(ctx, "another_slot")
	if err != nil {
		t.Fatalf("a different slot's lock: %v", err)
	}
	other()
	release()
	again, err := st.LockStats(ctx, "s")
	if err != nil {
		t.Fatalf("LockStats after release: %v", err)
	}
	again()
}

func TestGetStatsSetup(t *testing.T) {
	st, _, _ := statsDB(t)
	s, err := st.GetStatsSetup(context.Background(), "repeaterd_stats")
	if err != nil {
		t.Fatal(err)
	}
	if s.WALLevel != "logical" || !s.CanReplicate || !s.Publication || !s.ReplicaIdentityFull || s.User == "" {
		t.Fatalf("GetStatsSetup = %+v, want a ready server (scripts/services.sh)", s)
	}
	s, err = st.GetStatsSetup(context.Background(), "no_such_publication")
	if err != nil || s.Publication {
		t.Fatalf("GetStatsSetup(no_such_publication) = %+v, %v", s, err)
	}
}
