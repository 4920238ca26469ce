package store_test

import (
	"strings"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

func TestPageListRepeatersInBackoff(t *testing.T) {
	s := storetest.NewStore(t)
	now := time.Now()
	later := newRepeater(t, s, "a.example")   // backed off for 10 minutes, with a failure
	soon := newRepeater(t, s, "b.example")    // backed off for 1 minute, no records
	paused := newRepeater(t, s, "a.example")  // backed off but paused: not listed
	deleted := newRepeater(t, s, "a.example") // backed off but deleted: not listed
	past := newRepeater(t, s, "a.example")    // backoff over
	newRepeater(t, s, "a.example")            // never backed off
	for _, b := range []struct {
		id int64
		at time.Time
	}{
		{later.ID, now.Add(10 * time.Minute)}, {soon.ID, now.Add(time.Minute)},
		{paused.ID, now.Add(time.Minute)}, {deleted.ID, now.Add(time.Minute)}, {past.ID, now.Add(-time.Minute)},
	} {
		if err := s.SetBackoff(ctx, b.id, b.at); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetPaused(ctx, paused.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRepeater(ctx, deleted.ID); err != nil {
		t.Fatal(err)
	}
	oldest, newer := register(t, s, later.ID), register(t, s, later.ID)
	for _, o := range []store.Outcome{
		{RecordID: oldest.ID, State: store.StateFail, StatusCode: 500, Message: "first"},
		{RecordID: newer.ID, State: store.StateFail, StatusCode: 502, Message: "newer record"},
	} {
		if _, err := s.RecordOutcomes(ctx, []store.Outcome{o}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RecordOutcomes(ctx, []store.Outcome{{RecordID: oldest.ID, State: store.StateFail,
		StatusCode: 503, Message: "<script>still down</script>"}}, nil); err != nil {
		t.Fatal(err)
	}

	got, err := s.ListRepeatersInBackoff(ctx, store.RepeatersInBackoffParams{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != soon.ID || got[1].ID != later.ID {
		t.Fatalf("in backoff = %+v, want repeaters %d then %d", got, soon.ID, later.ID)
	}
	if got[0].LastAttempt != nil {
		t.Errorf("repeater without records: LastAttempt = %+v, want nil", got[0].LastAttempt)
	}
	r := got[1]
	if r.Domain != "a.example" || r.BackoffCount != 1 || r.LastAttemptAt == nil ||
		!r.NextAttemptAt.Round(time.Millisecond).Equal(now.Add(10*time.Minute).Round(time.Millisecond)) {
		t.Errorf("backed-off repeater = %+v", r)
	}
	// The latest attempt at the oldest ready record, not the newest attempt.
	if a := r.LastAttempt; a == nil || a.RecordID != oldest.ID || a.StatusCode != 503 ||
		a.Message != "<script>still down</script>" || a.State != store.StateFail {
		t.Errorf("LastAttempt = %+v, want the 503 on record %d", a, oldest.ID)
	}

	got, err = s.ListRepeatersInBackoff(ctx, store.RepeatersInBackoffParams{Limit: 1})
	if err != nil || len(got) != 1 || got[0].ID != soon.ID {
		t.Errorf("Limit 1: %+v, %v; want repeater %d", got, err, soon.ID)
	}
	got, err = s.ListRepeatersInBackoff(ctx, store.RepeatersInBackoffParams{Now: now.Add(5 * time.Minute)})
	if err != nil || len(got) != 1 || got[0].ID != later.ID {
		t.Errorf("Now+5m: %+v, %v; want repeater %d", got, err, later.ID)
	}
	n, err := s.RepeatersInBackoff(ctx)
	if err != nil || n != 2 {
		t.Errorf("RepeatersInBackoff = %d, %v; want 2 (the same set)", n, err)
	}
}

func TestPageDeliveriesPerMinute(t *testing.T) {
	s := storetest.NewStore(t)
	r := newRepeater(t, s, "a.example")
	bodies := make([][]byte, 7)
	for i := range bodies {
		bodies[i] = []byte(`{}`)
	}
	ids, err := s.RegisterMany(ctx, r.ID, "", bodies)
	if err != nil {
		t.Fatal(err)
	}
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

// TestPageDeliveriesUseCreatedIndex: the chart's hourly count must read the
// created_at index, not the table, whose size is the whole retention.
func TestPageDeliveriesUseCreatedIndex(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 200k attempts")
	}
	s := storetest.NewStore(t)
	r := newRepeater(t, s, "a.example")
	rec := register(t, s, r.ID)
	for _, sql := range []string{
		`INSERT INTO repeat_record_attempts (record_id, state, created_at)
			SELECT $1, CASE WHEN i % 10 = 0 THEN 2 ELSE 4 END, now() - i * interval '1 second'
			FROM generate_series(1, 200000) i`,
		`VACUUM ANALYZE repeat_record_attempts`,
	} {
		var args []any
		if strings.Contains(sql, "$1") {
			args = append(args, rec.ID)
		}
		if _, err := s.Pool().Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	now := time.Now()
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
