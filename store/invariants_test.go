package store_test

import (
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
		next_check = least(next_check, now() - interval '1 hour')`)
	syncStats(t, s)
}

func syncStats(t *testing.T, s *store.Store) {
	t.Helper()
	invExec(t, s, `DELETE FROM repeat_record_stats`)
	invExec(t, s, `INSERT INTO repeat_record_stats (domain, repeater_id, state, count)
		SELECT domain, repeater_id, state, count(*) FROM repeat_records GROUP BY 1, 2, 3`)
	invExec(t, s, `INSERT INTO stats_progress (slot_name, applied_lsn) VALUES ('test_slot', '0/1')
		ON CONFLICT DO NOTHING`)
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

	// domain_mismatch: a record in another domain than its repeater's, and
	// one whose repeater does not exist. The foreign key forbids both, so
	// disable its trigger.
	mismatched := newRepeater(t, s, d)
	orphanOf := mismatched.ID + 1000
	var strays []int64
	err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `INSERT INTO repeat_records (domain, repeater_id, payload_id)
			SELECT v.domain, v.repeater_id, r.payload_id FROM repeat_records r,
				(VALUES ('elsewhere', $1::bigint), ($3, $2::bigint)) v (domain, repeater_id)
			WHERE r.id = $4 RETURNING id`, mismatched.ID, orphanOf, d, done.ID)
		if err != nil {
			return err
		}
		strays, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	// stats_drift: a hand-corrupted aggregate (+5 on pending, and a count of 2
	// for a state with no records). A zero row with no records is no drift.
	drifted := newRepeater(t, s, d)
	register(t, s, drifted.ID)
	settle(t, s)
	invExec(t, s, `UPDATE repeat_record_stats SET count = count + 5 WHERE repeater_id = $1 AND state = 1`, drifted.ID)
	invExec(t, s, `INSERT INTO repeat_record_stats (domain, repeater_id, state, count) VALUES ($1, $2, 32, 2), ($1, $2, 16, 0)`,
		d, drifted.ID)

	// The view, not the tables, is what is read: nothing shows before a refresh.
	assertInvariants(t, invCounts(t, s), invWant(nil))
	before, err := s.LastInvariantsRefresh(ctx)
	if err != nil || before.IsZero() {
		t.Fatalf("last refresh before: %v %v (the migration populates the view)", before, err)
	}

	want := map[string]int64{
		store.CheckStatsDrift:             7,
		store.CheckReadyOnDeletedRepeater: 2,
		store.CheckStarvedReadyRecords:    3,
		store.CheckSuccessWithoutAttempt:  2,
		store.CheckFailPastMaxAttempts:    1,
		store.CheckDomainMismatch:         2,
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
		{store.CheckReadyOnDeletedRepeater, d, deleted.ID, 2},
		{store.CheckStarvedReadyRecords, d, starved.ID, 3},
		{store.CheckSuccessWithoutAttempt, d, succ.ID, 2},
		{store.CheckFailPastMaxAttempts, d, pastMax.ID, 1},
		{store.CheckDomainMismatch, "elsewhere", mismatched.ID, 1},
		{store.CheckDomainMismatch, d, orphanOf, 1},
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
	invExec(t, s, `DELETE FROM repeat_records WHERE id = ANY($1)`, strays)
	syncStats(t, s)
	assertInvariants(t, invRefresh(t, s), invWant(nil))
	if rows, err := s.InvariantRows(ctx); err != nil || len(rows) != 0 {
		t.Fatalf("rows after repair: %+v %v", rows, err)
	}
}

func TestStatsDriftOnlyWhenFedAndSettled(t *testing.T) {
	s := storetest.NewStore(t)
	r := newRepeater(t, s, "d")
	register(t, s, r.ID)
	invExec(t, s, `UPDATE repeaters SET updated_at = now() - interval '1 hour'`)
	invExec(t, s, `UPDATE repeat_records SET registered_at = now() - interval '1 hour', next_check = now() - interval '1 hour'`)

	// No consumer ever fed the aggregate: an empty one is not drift.
	assertInvariants(t, invRefresh(t, s), invWant(nil))

	// Once fed, the missing count is.
	invExec(t, s, `INSERT INTO stats_progress (slot_name, applied_lsn) VALUES ('test_slot', '0/1')`)
	assertInvariants(t, invRefresh(t, s), invWant(map[string]int64{store.CheckStatsDrift: 1}))

	// A record registered a moment ago may still be on its way to the
	// aggregate: its repeater is not checked until it settles.
	register(t, s, r.ID)
	assertInvariants(t, invRefresh(t, s), invWant(nil))
	invExec(t, s, `UPDATE repeat_records SET registered_at = now() - interval '1 hour', next_check = now() - interval '1 hour'`)
	assertInvariants(t, invRefresh(t, s), invWant(map[string]int64{store.CheckStatsDrift: 2}))

	// The same for a repeater changed a moment ago (deleting cancels records).
	invExec(t, s, `UPDATE repeaters SET updated_at = now()`)
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
