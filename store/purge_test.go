package store_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

func TestPurgeRemovesOnlyOldTerminalRecords(t *testing.T) {
	s := storetest.NewStore(t)
	r := newRepeater(t, s, "d")
	other := newRepeater(t, s, "d")
	old := []*store.RepeatRecord{register(t, s, r.ID), register(t, s, r.ID), register(t, s, r.ID)}
	recent := register(t, s, r.ID)
	// A fanned-out payload shared by an old record and a ready one stays.
	shared, err := s.FanOut(ctx, "d", "", []byte("shared"))
	if err != nil {
		t.Fatal(err)
	}
	outcomes := []store.Outcome{
		{RecordID: old[0].ID, State: store.StateSuccess},
		{RecordID: old[1].ID, State: store.StatePayloadRejected},
		{RecordID: recent.ID, State: store.StateSuccess},
		{RecordID: shared[0].ID, State: store.StateSuccess},
	}
	if _, err := s.RecordOutcomes(ctx, outcomes, nil); err != nil {
		t.Fatal(err)
	}
	_ = other
	if _, err := s.Pool().Exec(ctx, `UPDATE repeat_records SET registered_at = now() - interval '40 days' WHERE id = ANY($1)`,
		[]int64{old[0].ID, old[1].ID, old[2].ID, shared[0].ID, shared[1].ID}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Purge(ctx, time.Now().Add(-30*24*time.Hour), 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	// old[0], old[1] and shared[0] are old and terminal; old[2] and shared[1] are still ready.
	if got.Records != 3 || got.Payloads != 2 {
		t.Fatalf("purged %+v, want 3 records and 2 payloads (the shared one still feeds a ready record)", got)
	}
	for _, id := range []int64{old[2].ID, recent.ID, shared[1].ID} {
		if _, _, err := s.GetRecord(ctx, id); err != nil {
			t.Fatalf("record %d should survive: %v", id, err)
		}
	}
	if n := count(t, s, `SELECT count(*) FROM repeat_record_attempts WHERE record_id = $1`, old[0].ID); n != 0 {
		t.Fatalf("%d attempts of a purged record remain", n)
	}
}

// The readiness query reads about the same pages however much history
// there is: purging 90 % of it leaves its cost where it was.
func TestReadinessCostIndependentOfPurgedHistory(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 200k records")
	}
	s := storetest.NewStore(t)
	seedHistory(t, s, 300, 2000, 200_000)
	before := readinessBuffers(t, s)
	if _, err := s.Pool().Exec(ctx, `UPDATE repeat_records SET registered_at = now() - interval '40 days'
		WHERE state = 4 AND id % 10 <> 0`); err != nil {
		t.Fatal(err)
	}
	purged, err := s.Purge(ctx, time.Now().Add(-30*24*time.Hour), 5000, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, `VACUUM ANALYZE repeat_records`); err != nil {
		t.Fatal(err)
	}
	after := readinessBuffers(t, s)
	t.Logf("purged %d records; readiness query touched %d buffers before, %d after", purged.Records, before, after)
	if purged.Records < 150_000 {
		t.Fatalf("purged only %d records", purged.Records)
	}
	// The planner may pick another join after ANALYZE, so the counts differ
	// a little; a query that read history would touch ~10× more before.
	if before > 2*after || after > 2*before {
		t.Fatalf("readiness query touched %d buffers with the full history, %d after purging 90%% of it", before, after)
	}
}

// readinessBuffers returns the shared buffers one readiness query touches.
func readinessBuffers(t *testing.T, s *store.Store) int {
	t.Helper()
	sql, args := s.ReadyRepeatersSQL(time.Now())
	rows, err := s.Pool().Query(ctx, "EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) "+sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		// The top node's line carries the whole query's total.
		if i := strings.Index(line, "Buffers: shared "); i >= 0 {
			total := 0
			for _, f := range strings.Fields(line[i+len("Buffers: shared "):]) {
				if _, v, ok := strings.Cut(f, "="); ok {
					n, _ := strconv.Atoi(strings.TrimRight(v, ","))
					total += n
				}
			}
			return total
		}
	}
	t.Fatal("no Buffers line in the plan")
	return 0
}
