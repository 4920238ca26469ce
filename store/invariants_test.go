package store_test

import (
	"maps"
	"sync"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

func invExec(t *testing.T, s *store.Store, sql string, args ...any) {
	t.Helper()
	if _, err := s.Pool().Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// invRefresh refreshes the view and returns the per-check counts.
func invRefresh(t *testing.T, s *store.Store) map[string]int64 {
	t.Helper()
	if err := s.RefreshInvariants(ctx); err != nil {
		t.Fatal(err)
	}
	return invCounts(t, s)
}

func invCounts(t *testing.T, s *store.Store) map[string]int64 {
	t.Helper()
	got, err := s.InvariantCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// invWant is every check at 0 but those given.
func invWant(nonzero map[string]int64) map[string]int64 {
	want := map[string]int64{}
	for _, c := range store.InvariantChecks {
		want[c] = 0
	}
	maps.Copy(want, nonzero)
	return want
}

func assertInvariants(t *testing.T, got, want map[string]int64) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Fatalf("invariant counts:\n got %v\nwant %v", got, want)
	}
}

// settle makes every repeater and record look untouched for an hour, as if
// the WAL consumer had long caught up, and sets the aggregate to the exact
// counts (what a consumer keeps it at).
func settle(t *testing.T, s *store.Store) {
	t.Helper()
	invExec(t, s, `UPDATE repeaters SET updated_at = now() - interval '1 hour'`)
	invExec(t, s, `UPDATE repeat_records SET registered_at = least(registered_at, now() - interval '1 hour'),
		next_check = least(next_check, now() - interval '1 hour'),
		state_changed_at = least(state_changed_at, now() - interval '1 hour')`)
	syncStats(t, s)
}

// addAttempts records n failed attempts of record id, by hand.
func addAttempts(t *testing.T, s *store.Store, id int64, n int) {
	t.Helper()
	invExec(t, s, `INSERT INTO repeat_record_attempts (record_id, state, status_code)
		SELECT $1, 2, 503 FROM generate_series(1, $2)`, id, n)
}

// syncStats sets the aggregate to the exact counts and says a consumer has
// applied everything committed until now.
func syncStats(t *testing.T, s *store.Store) {
	t.Helper()
	invExec(t, s, `DELETE FROM repeat_record_stats`)
	invExec(t, s, `INSERT INTO repeat_record_stats (domain, repeater_id, state, count)
		SELECT domain, repeater_id, state, count(*) FROM repeat_records GROUP BY 1, 2, 3`)
	caughtUp(t, s)
}

// caughtUp says a consumer has applied everything committed until now.
func caughtUp(t *testing.T, s *store.Store) {
	t.Helper()
	invExec(t, s, `INSERT INTO stats_progress (slot_name, applied_lsn, applied_through) VALUES ('test_slot', '0/1', now())
		ON CONFLICT (one) DO UPDATE SET applied_through = now()`)
}

func TestInvariantsCatchEachViolationAndClear(t *testing.T) {
	s := storetest.NewStore(t)
	const d = "inv"

	// Healthy history every check must pass over: a delivered record with its
	// attempt, a fresh pending one, a cancelled one past its tries.
	healthy := newRepeater(t, s, d)
	done := register(t, s, healthy.ID)
	if n, err := s.RecordOutcomes(ctx, []store.Outcome{{RecordID: done.ID, State: store.StateSuccess, StatusCode: 200}}, nil); err != nil || n != 1 {
		t.Fatalf("record outcome: %d %v", n, err)
	}
	register(t, s, healthy.ID)
	cancelled := register(t, s, healthy.ID)
	invExec(t, s, `UPDATE repeat_records SET state = 8, attempt_count = max_possible_tries WHERE id = $1`, cancelled.ID)
	addAttempts(t, s, cancelled.ID, 6)

	// ready_on_deleted_repeater: deleted behind DeleteRepeater's back, which
	// would have cancelled the records.
	deleted := newRepeater(t, s, d)
	register(t, s, deleted.ID)
	register(t, s, deleted.ID)
	invExec(t, s, `UPDATE repeaters SET is_deleted = true WHERE id = $1`, deleted.ID)

	// starved_ready_records: three old records on a repeater free to send;
	// the same on a paused and on a backed-off repeater are not starved.
	starved := newRepeater(t, s, d)
	paused := newRepeater(t, s, d)
	backedOff := newRepeater(t, s, d)
	for _, r := range []*store.Repeater{starved, starved, starved, paused, backedOff} {
		register(t, s, r.ID)
	}
	invExec(t, s, `UPDATE repeat_records SET registered_at = now() - interval '2 days', next_check = now() - interval '2 days'
		WHERE repeater_id = ANY($1)`, []int64{starved.ID, paused.ID, backedOff.ID})
	if err := s.SetPaused(ctx, paused.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBackoff(ctx, backedOff.ID, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	// success_without_attempt: two records marked Success by hand.
	succ := newRepeater(t, s, d)
	noAttempt := []int64{register(t, s, succ.ID).ID, register(t, s, succ.ID).ID}
	invExec(t, s, `UPDATE repeat_records SET state = 4, attempt_count = 1 WHERE id = ANY($1)`, noAttempt)

	// fail_past_max_attempts: a Fail with no tries left.
	pastMax := newRepeater(t, s, d)
	spent := register(t, s, pastMax.ID)
	invExec(t, s, `UPDATE repeat_records SET state = 2, attempt_count = max_possible_tries WHERE id = $1`, spent.ID)
	addAttempts(t, s, spent.ID, 6)

	// attempt_count_mismatch: a record claiming two attempts it has not.
	miscount := newRepeater(t, s, d)
	counted := register(t, s, miscount.ID)
	invExec(t, s, `UPDATE repeat_records SET state = 2, attempt_count = 2 WHERE id = $1`, counted.ID)

	// pending_with_attempts: a Fail record put back to Pending by hand
	// (RecordOutcomes made it Fail; requeue keeps it Fail).
	repending := newRepeater(t, s, d)
	tried := register(t, s, repending.ID)
	if n, err := s.RecordOutcomes(ctx, []store.Outcome{{RecordID: tried.ID, State: store.StateFail, StatusCode: 503}}, nil); err != nil || n != 1 {
		t.Fatalf("record outcome: %d %v", n, err)
	}
	invExec(t, s, `UPDATE repeat_records SET state = 1 WHERE id = $1`, tried.ID)

	// stale_pending_batch: a batch recorded 20 minutes ago, never applied; a
	// batch recorded just now is in flight, not stale.
	stuck := newRepeater(t, s, d)
	inFlight := newRepeater(t, s, d)
	invExec(t, s, `UPDATE repeaters SET pending_batch = 'tok', last_attempt_at = now() - interval '20 minutes' WHERE id = $1`, stuck.ID)
	invExec(t, s, `UPDATE repeaters SET pending_batch = 'tok', last_attempt_at = now() WHERE id = $1`, inFlight.ID)

	// stats_drift: a hand-corrupted aggregate (+5 on pending, and a count of 2
	// for a state with no records). A zero row with no records is no drift.
	drifted := newRepeater(t, s, d)
	register(t, s, drifted.ID)
	settle(t, s)
	invExec(t, s, `UPDATE repeat_record_stats SET count = count + 5 WHERE repeater_id = $1 AND state = 1`, drifted.ID)
	invExec(t, s, `INSERT INTO repeat_record_stats (domain, repeater_id, state, count) VALUES ($1, $2, 32, 2), ($1, $2, 16, 0)`,
		d, drifted.ID)
	// negative_stats_count: a count of -3 (its drift counts too: 3).
	negative := newRepeater(t, s, d)
	invExec(t, s, `INSERT INTO repeat_record_stats (domain, repeater_id, state, count) VALUES ($1, $2, 4, -3)`, d, negative.ID)

	// The view, not the tables, is what is read: nothing shows before a refresh.
	assertInvariants(t, invCounts(t, s), invWant(nil))
	before, err := s.LastInvariantsRefresh(ctx)
	if err != nil || before.IsZero() {
		t.Fatalf("last refresh before: %v %v (the migration populates the view)", before, err)
	}

	want := map[string]int64{
		store.CheckStatsDrift:             7 + 3,
		store.CheckReadyOnDeletedRepeater: 2,
		store.CheckStarvedReadyRecords:    3,
		store.CheckSuccessWithoutAttempt:  2,
		store.CheckFailPastMaxAttempts:    1,
		store.CheckAttemptCountMismatch:   1 + 2, // the miscounted record and the two hand-made Success records
		store.CheckNegativeStatsCount:     3,
		store.CheckStalePendingBatch:      1,
		store.CheckPendingWithAttempts:    1,
	}
	assertInvariants(t, invRefresh(t, s), invWant(want))

	after, err := s.LastInvariantsRefresh(ctx)
	if err != nil || !after.After(before) {
		t.Fatalf("last refresh %v not after %v (%v)", after, before, err)
	}

	rows, err := s.InvariantRows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantRows := []store.InvariantViolation{
		{store.CheckStatsDrift, d, drifted.ID, 7},
		{store.CheckStatsDrift, d, negative.ID, 3},
		{store.CheckReadyOnDeletedRepeater, d, deleted.ID, 2},
		{store.CheckStarvedReadyRecords, d, starved.ID, 3},
		{store.CheckSuccessWithoutAttempt, d, succ.ID, 2},
		{store.CheckFailPastMaxAttempts, d, pastMax.ID, 1},
		{store.CheckAttemptCountMismatch, d, succ.ID, 2},
		{store.CheckAttemptCountMismatch, d, miscount.ID, 1},
		{store.CheckNegativeStatsCount, d, negative.ID, 3},
		{store.CheckStalePendingBatch, d, stuck.ID, 1},
		{store.CheckPendingWithAttempts, d, repending.ID, 1},
	}
	if len(rows) != len(wantRows) {
		t.Fatalf("rows:\n got %+v\nwant %+v", rows, wantRows)
	}
	for i := range rows {
		if rows[i] != wantRows[i] {
			t.Fatalf("row %d: got %+v, want %+v", i, rows[i], wantRows[i])
		}
	}

	// Repair each, let the aggregate catch up, refresh: all clear.
	invExec(t, s, `UPDATE repeat_records SET state = 8 WHERE repeater_id = ANY($1)`, []int64{deleted.ID, starved.ID})
	invExec(t, s, `INSERT INTO repeat_record_attempts (record_id, state, status_code) SELECT unnest($1::bigint[]), 4, 200`, noAttempt)
	invExec(t, s, `UPDATE repeat_records SET state = 8 WHERE id = $1`, spent.ID)
	invExec(t, s, `UPDATE repeat_records SET attempt_count = 0 WHERE id = $1`, counted.ID)
	invExec(t, s, `UPDATE repeat_records SET state = 2 WHERE id = $1`, tried.ID)
	invExec(t, s, `UPDATE repeaters SET pending_batch = NULL WHERE id = $1`, stuck.ID)
	syncStats(t, s)
	assertInvariants(t, invRefresh(t, s), invWant(nil))
	if rows, err := s.InvariantRows(ctx); err != nil || len(rows) != 0 {
		t.Fatalf("rows after repair: %+v %v", rows, err)
	}
}

func TestStatsDriftOnlyWhenFedCaughtUpAndSettled(t *testing.T) {
	s := storetest.NewStore(t)
	r := newRepeater(t, s, "d")
	register(t, s, r.ID)
	old := func() {
		invExec(t, s, `UPDATE repeat_records SET registered_at = now() - interval '1 hour',
			state_changed_at = now() - interval '1 hour'`)
	}
	old()

	// No consumer ever fed the aggregate: an empty one is not drift.
	assertInvariants(t, invRefresh(t, s), invWant(nil))

	// Once fed and caught up, the missing count is.
	caughtUp(t, s)
	assertInvariants(t, invRefresh(t, s), invWant(map[string]int64{store.CheckStatsDrift: 1}))

	// A consumer more than a minute behind: the aggregate may just lag.
	invExec(t, s, `UPDATE stats_progress SET applied_through = now() - interval '5 minutes'`)
	assertInvariants(t, invRefresh(t, s), invWant(nil))
	invExec(t, s, `UPDATE stats_progress SET applied_through = NULL`) // just recounted
	assertInvariants(t, invRefresh(t, s), invWant(nil))
	caughtUp(t, s)

	// A record that changed state a moment ago may still be on its way to
	// the aggregate: its repeater is not judged until it settles.
	rec := register(t, s, r.ID)
	old()
	invExec(t, s, `UPDATE repeat_records SET state = 2 WHERE id = $1`, rec.ID) // the trigger stamps the change
	caughtUp(t, s)
	assertInvariants(t, invRefresh(t, s), invWant(nil))
	old()
	assertInvariants(t, invRefresh(t, s), invWant(map[string]int64{store.CheckStatsDrift: 2}))

	// 00020's blind spot: a legacy retry due in an hour (a future
	// next_check) hid the whole repeater's drift. It no longer does.
	storetest.Records(t, s, r, 993)
	old()
	invExec(t, s, `UPDATE repeat_records SET next_check = now() + interval '1 hour' WHERE id = $1`, rec.ID)
	caughtUp(t, s)
	assertInvariants(t, invRefresh(t, s), invWant(map[string]int64{store.CheckStatsDrift: 995}))

	// A purge deleting after the consumer's position: the deletions are not
	// counted out yet, so drift waits for the consumer to pass them.
	invExec(t, s, `INSERT INTO purge_progress (last_deleted_at) VALUES (now() + interval '1 second')`)
	assertInvariants(t, invRefresh(t, s), invWant(nil))
	invExec(t, s, `UPDATE purge_progress SET last_deleted_at = now() - interval '10 seconds'`)
	assertInvariants(t, invRefresh(t, s), invWant(map[string]int64{store.CheckStatsDrift: 995}))

	// Counted exactly: no drift.
	syncStats(t, s)
	assertInvariants(t, invRefresh(t, s), invWant(nil))
}

func TestRefreshInvariantsConcurrently(t *testing.T) {
	s := storetest.NewStore(t)
	r := newRepeater(t, s, "d")
	register(t, s, r.ID)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- s.RefreshInvariants(ctx) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestRepeatersInBackoff(t *testing.T) {
	s := storetest.NewStore(t)
	later, earlier := time.Now().Add(time.Hour), time.Now().Add(-time.Minute)
	n := func() int64 {
		t.Helper()
		n, err := s.RepeatersInBackoff(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	newRepeater(t, s, "d") // never backed off
	if got := n(); got != 0 {
		t.Fatalf("in backoff = %d, want 0", got)
	}
	for i, c := range []struct {
		next           time.Time
		paused, delete bool
	}{
		{next: later},               // counted
		{next: later},               // counted
		{next: earlier},             // backoff over
		{next: later, paused: true}, // paused
		{next: later, delete: true}, // deleted
	} {
		r := newRepeater(t, s, "d")
		if err := s.SetBackoff(ctx, r.ID, c.next); err != nil {
			t.Fatal(i, err)
		}
		if c.paused {
			if err := s.SetPaused(ctx, r.ID, true); err != nil {
				t.Fatal(err)
			}
		}
		if c.delete {
			if err := s.DeleteRepeater(ctx, r.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := n(); got != 2 {
		t.Fatalf("in backoff = %d, want 2", got)
	}
}

func TestPgCronNotInstalled(t *testing.T) {
	s := storetest.NewStore(t)
	var available bool
	if err := s.Pool().QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron')`).
		Scan(&available); err != nil {
		t.Fatal(err)
	}
	if available {
		t.Skip("pg_cron is installed here")
	}
	if s.PgCronAvailable(ctx) {
		t.Fatal("PgCronAvailable = true without the extension")
	}
	if err := s.SchedulePgCron(ctx, 30*time.Minute); store.ErrorCode(err) != store.ENOTFOUND {
		t.Fatalf("SchedulePgCron without pg_cron: %v, want %s", err, store.ENOTFOUND)
	}
	if err := s.SchedulePgCron(ctx, 7*time.Minute); store.ErrorCode(err) != store.EINVALID {
		t.Fatalf("SchedulePgCron(7m): %v, want %s", err, store.EINVALID)
	}
}

func TestCronSchedule(t *testing.T) {
	for _, c := range []struct {
		in   time.Duration
		want string // "" = EINVALID
	}{
		{10 * time.Second, "10 seconds"},
		{time.Minute, "*/1 * * * *"},
		{30 * time.Minute, "*/30 * * * *"},
		{time.Hour, "0 */1 * * *"},
		{6 * time.Hour, "0 */6 * * *"},
		{24 * time.Hour, "0 0 * * *"},
		{0, ""},
		{500 * time.Millisecond, ""},
		{90 * time.Second, ""},
		{7 * time.Minute, ""},
		{5 * time.Hour, ""},
		{48 * time.Hour, ""},
	} {
		got, err := store.CronSchedule(c.in)
		if c.want == "" {
			if store.ErrorCode(err) != store.EINVALID {
				t.Errorf("CronSchedule(%s) = %q, %v; want EINVALID", c.in, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("CronSchedule(%s) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}
