package store_test

import (
	"strings"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

func TestDeliveriesPerMinute(t *testing.T) {
	s := storetest.NewStore(t)
	r := storetest.Repeater(t, s, storetest.RepeaterOpts{Domain: "a.example"})
	ids := storetest.Records(t, s, r, 7)
	base := time.Date(2031, 5, 6, 7, 8, 0, 0, time.FixedZone("odd", 5*3600+30*60))
	at := []struct {
		offset time.Duration
		state  store.State
	}{
		{-time.Second, store.StateSuccess},                             // before the window
		{10 * time.Second, store.StateSuccess},                         // minute 0
		{50 * time.Second, store.StateFail},                            // minute 0
		{55 * time.Second, store.StateSuccess},                         // minute 0
		{time.Minute, store.StateEmpty},                                // minute 1
		{2*time.Minute - time.Millisecond, store.StatePayloadRejected}, // minute 1
		{2 * time.Minute, store.StateSuccess},                          // at Until: excluded
	}
	var outcomes []store.Outcome
	for i, a := range at {
		outcomes = append(outcomes, store.Outcome{RecordID: ids[i], State: a.state, AttemptedAt: base.Add(a.offset)})
	}
	if _, err := s.RecordOutcomes(ctx, outcomes, nil); err != nil {
		t.Fatal(err)
	}

	got, err := s.DeliveriesPerMinute(ctx, store.DeliveriesParams{Since: base.Add(30 * time.Second), Until: base.Add(2 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.DeliveryCount{
		{Minute: base, State: store.StateFail, Count: 1},
		{Minute: base, State: store.StateSuccess, Count: 2},
		{Minute: base.Add(time.Minute), State: store.StateEmpty, Count: 1},
		{Minute: base.Add(time.Minute), State: store.StatePayloadRejected, Count: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("DeliveriesPerMinute = %+v, want %+v", got, want)
	}
	for i := range want {
		if !got[i].Minute.Equal(want[i].Minute) || got[i].State != want[i].State || got[i].Count != want[i].Count {
			t.Errorf("bucket %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if got, err := s.DeliveriesPerMinute(ctx, store.DeliveriesParams{Since: base, Until: base}); err != nil || len(got) != 0 {
		t.Errorf("empty window: %+v, %v", got, err)
	}
}

// TestDeliveriesUseCreatedIndex: the chart's hourly count must read the
// created_at index, not the table, whose size is the whole retention.
func TestDeliveriesUseCreatedIndex(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 200k attempts")
	}
	s := storetest.NewStore(t)
	r := storetest.Repeater(t, s, storetest.RepeaterOpts{Domain: "a.example"})
	rec := storetest.Record(t, s, r, nil)
	// The rows and the window share one instant, so however long the load
	// and VACUUM take, the same rows are in the window.
	now := time.Now().Truncate(time.Second)
	for _, sql := range []string{
		`INSERT INTO repeat_record_attempts (record_id, state, created_at)
			SELECT $1, CASE WHEN i % 10 = 0 THEN 2 ELSE 4 END, $2::timestamptz - i * interval '1 second'
			FROM generate_series(1, 200000) i`,
		`VACUUM ANALYZE repeat_record_attempts`,
	} {
		var args []any
		if strings.Contains(sql, "$1") {
			args = append(args, rec.ID, now)
		}
		if _, err := s.Pool().Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	sql, args := s.DeliveriesPerMinuteSQL(store.DeliveriesParams{Since: now.Add(-time.Hour), Until: now})
	rows, err := s.Pool().Query(ctx, "EXPLAIN "+sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	var plan strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(line + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan.String(), "Index Only Scan using repeat_record_attempts_created_idx") {
		t.Errorf("delivery-rate plan does not read only the created_at index:\n%s", plan.String())
	}

	got, err := s.DeliveriesPerMinute(ctx, store.DeliveriesParams{Since: now.Add(-time.Hour), Until: now})
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, c := range got {
		total += c.Count
	}
	// One attempt a second; Since is truncated to its minute, which adds up
	// to 59 seconds.
	if total < 3600 || total > 3660 {
		t.Errorf("attempts in the window = %d, want 3600 to 3660", total)
	}
}
