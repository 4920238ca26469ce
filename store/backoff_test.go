package store_test

import (
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

func TestListRepeatersInBackoff(t *testing.T) {
	s := storetest.NewStore(t)
	now := time.Now()
	later := storetest.Repeater(t, s, storetest.RepeaterOpts{Domain: "a.example"})   // backed off for 10 minutes, with a failure
	soon := storetest.Repeater(t, s, storetest.RepeaterOpts{Domain: "b.example"})    // backed off for 1 minute, no records
	paused := storetest.Repeater(t, s, storetest.RepeaterOpts{Domain: "a.example"})  // backed off but paused: not listed
	deleted := storetest.Repeater(t, s, storetest.RepeaterOpts{Domain: "a.example"}) // backed off but deleted: not listed
	past := storetest.Repeater(t, s, storetest.RepeaterOpts{Domain: "a.example"})    // backoff over
	storetest.Repeater(t, s, storetest.RepeaterOpts{Domain: "a.example"})            // never backed off
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
	oldest, newer := storetest.Record(t, s, later, nil), storetest.Record(t, s, later, nil)
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
