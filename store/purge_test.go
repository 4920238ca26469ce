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
	// Registered long ago, completed just now: retention counts from completion.
	lateDone := register(t, s, other.ID)
	if _, err := s.Pool().Exec(ctx, `UPDATE repeat_records SET registered_at = now() - interval '40 days' WHERE id = $1`,
		lateDone.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordOutcomes(ctx, []store.Outcome{{RecordID: lateDone.ID, State: store.StateSuccess}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, `UPDATE repeat_records SET registered_at = now() - interval '40 days',
		state_changed_at = now() - interval '40 days' WHERE id = ANY($1)`,
		[]int64{old[0].ID, old[1].ID, old[2].ID, shared[0].ID, shared[1].ID}); err != nil {
		t.Fatal(err)
	}
	cutoff := time.Now().Add(-30 * 24 * time.Hour)
	dry, err := s.PurgeCandidates(ctx, cutoff)
	if err != nil {
		t.Fatal(err)
	}
	var progress []store.PurgeResult
	got, err := s.Purge(ctx, store.PurgeParams{Cutoff: cutoff, Batch: 1,
		Progress: func(total store.PurgeResult) { progress = append(progress, total) }})
	if err != nil {
		t.Fatal(err)
	}
	// old[0], old[1] and shared[0] are old and terminal; old[2] and shared[1]
	// are still ready; lateDone completed a moment ago. Each terminal one
	// had its one attempt.
	want := store.PurgeResult{Records: 3, Attempts: 3, Payloads: 2}
	if got != want {
		t.Fatalf("purged %+v, want %+v (the shared payload still feeds a ready record)", got, want)
	}
	if dry != want {
		t.Fatalf("dry run counted %+v, the purge removed %+v", dry, got)
	}
	if len(progress) != 3 || progress[2] != want || progress[0].Records != 1 {
		t.Fatalf("progress reports %+v, want one running total per batch of 1", progress)
	}
	if again, err := s.PurgeCandidates(ctx, cutoff); err != nil || again != (store.PurgeResult{}) {
		t.Fatalf("dry run after the purge: %+v %v, want nothing", again, err)
	}
	for _, id := range []int64{old[2].ID, recent.ID, shared[1].ID, lateDone.ID} {
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
	if _, err := s.Pool().Exec(ctx, `UPDATE repeat_records SET state_changed_at = now() - interval '40 days'
		WHERE state = 4 AND id % 10 <> 0`); err != nil {
		t.Fatal(err)
	}
	purged, err := s.Purge(ctx, store.PurgeParams{Cutoff: time.Now().Add(-30 * 24 * time.Hour), Batch: 5000})
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

// With nothing to purge, finding that out is an index probe, not a scan of
// every record: the purge's own query, planned on a table of 50k records
// all completed recently.
func TestPurgeNothingToDoUsesIndex(t *testing.T) {
	s := storetest.NewStore(t)
	r := newRepeater(t, s, "d")
	if _, err := s.Pool().Exec(ctx, `WITH p AS (INSERT INTO payloads (domain, body) VALUES ('d', '') RETURNING id)
		INSERT INTO repeat_records (domain, repeater_id, payload_id, state, attempt_count)
		SELECT 'd', $1, p.id, CASE WHEN g % 10 = 0 THEN 1 ELSE 4 END, 0 FROM p, generate_series(1, 50000) g`, r.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, `ANALYZE repeat_records`); err != nil {
		t.Fatal(err)
	}
	sql, args := store.PurgeBatchSQL(time.Now().Add(-30*24*time.Hour), 1000)
	// ANALYZE runs the statement: with nothing to purge it deletes nothing.
	rows, err := s.Pool().Query(ctx, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) "+sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(lines, "\n")
	// Parts of the plan that only run once something is doomed (the
	// orphaned-payload test) say "never executed"; what ran must be the probe.
	for _, line := range lines {
		if strings.Contains(line, "Seq Scan on repeat_records") && !strings.Contains(line, "never executed") {
			t.Fatalf("the purge scanned repeat_records with nothing to purge:\n%s", text)
		}
	}
	if !strings.Contains(text, "repeat_records_completed_idx") {
		t.Fatalf("the purge does not probe repeat_records_completed_idx:\n%s", text)
	}
	if n := count(t, s, `SELECT count(*) FROM repeat_records`); n != 50000 {
		t.Fatalf("EXPLAIN ANALYZE deleted records: %d left", n)
	}
}
