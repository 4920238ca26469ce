package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// Registrations queued while the writers are busy share one transaction,
// and each keeps its own outcome: refusals, a key's replays and conflicts,
// and a caller leaving while queued change nothing for the others.
func TestConcurrentRegistrationsShareATransaction(t *testing.T) {
	st := storetest.NewStore(t)
	r := newRepeater(t, st, "d1")
	hidden := newRepeater(t, st, "d2")
	gone := newRepeater(t, st, "d1")
	if err := st.DeleteRepeater(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}

	// Hold every writer on its first record: the rest queue behind them.
	blocker, err := st.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(ctx)
	if _, err := blocker.Exec(ctx, `LOCK TABLE repeaters IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		rec     *store.RepeatRecord
		created bool
		err     error
	}
	done := make(chan outcome, 100)
	launch := func(ctx context.Context, p store.RegisterParams) {
		go func() {
			rec, created, err := st.RegisterRecord(ctx, p)
			done <- outcome{rec, created, err}
		}()
	}
	const writers, plain = 4, 40
	for i := range writers { // one at a time, so that each starts a writer of its own
		launch(ctx, store.RegisterParams{RepeaterID: r.ID, Body: []byte(`{"first":true}`)})
		waitForLockWaiters(t, st, i+1)
	}

	for range plain {
		launch(ctx, store.RegisterParams{RepeaterID: r.ID, Body: []byte(`{}`)})
	}
	for range 3 {
		launch(ctx, store.RegisterParams{RepeaterID: r.ID, Body: []byte(`"same"`), IdempotencyKey: "k"})
	}
	launch(ctx, store.RegisterParams{RepeaterID: r.ID, Body: []byte(`"a"`), IdempotencyKey: "k2"})
	launch(ctx, store.RegisterParams{RepeaterID: r.ID, Body: []byte(`"b"`), IdempotencyKey: "k2"})
	launch(ctx, store.RegisterParams{RepeaterID: 999999, Body: []byte(`{}`)})
	launch(ctx, store.RegisterParams{RepeaterID: gone.ID, Body: []byte(`{}`)})
	launch(ctx, store.RegisterParams{RepeaterID: hidden.ID, Body: []byte(`{}`), Sees: func(d string) bool { return d == "d1" }})
	leaving, leave := context.WithCancel(ctx)
	launch(leaving, store.RegisterParams{RepeaterID: r.ID, Body: []byte(`{}`), IdempotencyKey: "left"})
	const queued = plain + 3 + 2 + 4
	waitUntil(t, "every registration queued", func() bool { return store.QueuedRegistrations(st) == queued })
	leave()
	waitUntil(t, "the cancelled one withdrawn", func() bool { return store.QueuedRegistrations(st) == queued-1 })
	if err := blocker.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	codes := map[string]int{}
	created, replays, keyIDs := 0, 0, map[int64]bool{}
	for range writers + queued {
		o := <-done
		switch {
		case errors.Is(o.err, context.Canceled):
			codes["cancelled"]++
		case o.err != nil:
			codes[store.ErrorCode(o.err)]++
			if store.ErrorCode(o.err) == store.ECONFLICT && o.rec != nil {
				codes["conflict naming the record"]++
			}
		case o.created:
			created++
		default:
			replays++
			keyIDs[o.rec.ID] = true
		}
	}
	if created != writers+plain+2 || replays != 2 || len(keyIDs) != 1 {
		t.Errorf("created %d (want %d), replays %d of %d records (want 2 of 1)", created, writers+plain+2, replays, len(keyIDs))
	}
	want := map[string]int{"cancelled": 1, store.ENOTFOUND: 2, store.ECONFLICT: 2, "conflict naming the record": 1}
	for k, n := range want {
		if codes[k] != n {
			t.Errorf("%s: %d, want %d (all: %v)", k, codes[k], n, codes)
		}
	}
	if n := count(t, st, `SELECT count(*) FROM repeat_records WHERE idempotency_key = 'left'`); n != 0 {
		t.Errorf("the registration withdrawn while queued was written")
	}
	if n := count(t, st, `SELECT count(*) FROM repeat_records`); n != writers+plain+2 {
		t.Errorf("%d records stored, want %d", n, writers+plain+2)
	}
	// The records queued behind the writers went in one transaction (the
	// keyed ones may have gone in the next group's, which can commit first).
	if n := count(t, st, `SELECT count(DISTINCT r.xmin::text) FROM repeat_records r JOIN payloads p ON p.id = r.payload_id
		WHERE r.idempotency_key IS NULL AND p.body = '{}'`); n != 1 {
		t.Errorf("%d queued records were written in %d transactions, want 1", plain, n)
	}
	if n := count(t, st, `SELECT count(*) FROM payloads p WHERE NOT EXISTS (SELECT 1 FROM repeat_records r WHERE r.payload_id = p.id)`); n != 0 {
		t.Errorf("%d payloads without their record", n)
	}
}

// waitForLockWaiters returns once n sessions of st's database wait on a lock.
func waitForLockWaiters(t *testing.T, st *store.Store, n int) {
	t.Helper()
	waitUntil(t, "sessions waiting on a lock", func() bool {
		return count(t, st, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`) >= n
	})
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling state that has no signal to await
	}
}

// Randomized: callers register keyed and unkeyed records, some for
// repeaters they may not see, some leaving early, while the store's
// connections are killed under them. Afterwards every answer agrees with
// what is stored: a success is its stored record with its payload, a
// conflict names a record with another payload, a key has one record and
// was created once, a refused or withdrawn record is not stored, every
// stored record was asked for, and no payload is left without its record.
func TestCoalescedRegistrationsAgreeWithTheStoreUnderChaos(t *testing.T) {
	st := storetest.NewStore(t)
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	t.Logf("seed %d", seed)
	visible := []*store.Repeater{newRepeater(t, st, "d1"), newRepeater(t, st, "d1")}
	hidden := newRepeater(t, st, "d2")
	killer, err := pgx.Connect(ctx, st.Pool().Config().ConnConfig.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer killer.Close(ctx)

	type call struct {
		repeaterID   int64
		key, body    string
		hidden, left bool
		rec          *store.RepeatRecord
		created      bool
		err          error
	}
	const n = 400
	calls := make([]*call, n)
	for i := range calls {
		c := &call{repeaterID: visible[rng.IntN(len(visible))].ID, body: fmt.Sprintf(`{"v":%d}`, rng.IntN(2))}
		if rng.IntN(10) < 7 {
			c.key = fmt.Sprintf("k%d", rng.IntN(20))
		} else {
			c.body = fmt.Sprintf(`{"unkeyed":%d}`, i)
		}
		c.hidden = rng.IntN(20) == 0
		if c.hidden {
			c.repeaterID = hidden.ID
		}
		calls[i] = c
	}
	stopKilling := make(chan struct{})
	killed := make(chan int)
	killRng := rand.New(rand.NewPCG(uint64(seed), 2)) // rng is the callers' goroutine's
	go func() {
		kills := 0
		defer func() { killed <- kills }()
		for {
			select {
			case <-stopKilling:
				return
			case <-time.After(time.Duration(50+killRng.IntN(100)) * time.Millisecond):
			}
			if _, err := killer.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`); err == nil {
				kills++
			}
		}
	}()
	var wg sync.WaitGroup
	for _, c := range calls {
		start := time.Duration(rng.IntN(1000)) * time.Millisecond
		leaveAfter := time.Duration(rng.IntN(3000)) * time.Microsecond
		leaves := rng.IntN(10) == 0
		wg.Go(func() {
			time.Sleep(start)
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			if leaves {
				time.AfterFunc(leaveAfter, cancel)
			}
			c.rec, c.created, c.err = st.RegisterRecord(cctx, store.RegisterParams{
				RepeaterID: c.repeaterID, Body: []byte(c.body), IdempotencyKey: c.key,
				Sees: func(d string) bool { return d == "d1" },
			})
			c.left = errors.Is(c.err, context.Canceled)
		})
	}
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(60 * time.Second):
		t.Fatal("registrations still waiting after 60 s")
	}
	close(stopKilling)
	t.Logf("%d kills of every connection while %d callers registered", <-killed, n)

	type stored struct {
		id   int64
		body string
	}
	byKey := map[[2]string]stored{}
	byID := map[int64]stored{}
	// Read through the killer's connection: the pool's may have been killed.
	rows, err := killer.Query(ctx, `SELECT r.id, r.repeater_id, coalesce(r.idempotency_key, ''), convert_from(p.body, 'UTF8')
		FROM repeat_records r JOIN payloads p ON p.id = r.payload_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, rep int64
		var key, body string
		if err := rows.Scan(&id, &rep, &key, &body); err != nil {
			t.Fatal(err)
		}
		byID[id] = stored{id, body}
		if key != "" {
			byKey[[2]string{fmt.Sprint(rep), key}] = stored{id, body}
		}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}

	asked := map[string]bool{}
	createdOnce := map[[2]string]int{}
	outcomes := map[string]int{}
	for _, c := range calls {
		k := [2]string{fmt.Sprint(c.repeaterID), c.key}
		asked[fmt.Sprint(c.repeaterID, c.key, c.body)] = true
		switch code := store.ErrorCode(c.err); {
		case c.err == nil:
			outcomes["ok"]++
			s, ok := byID[c.rec.ID]
			if !ok || s.body != c.body {
				t.Errorf("a success (record %d, key %q, body %s) is not stored as answered: %+v", c.rec.ID, c.key, c.body, s)
			}
			if c.hidden {
				t.Errorf("a caller wrote to a repeater it does not see")
			}
			if c.key != "" && byKey[k].id != c.rec.ID {
				t.Errorf("key %q answered with record %d, stored as %d", c.key, c.rec.ID, byKey[k].id)
			}
			if c.created && c.key != "" {
				createdOnce[k]++
			}
		case c.left:
			outcomes["left"]++
		case code == store.ENOTFOUND:
			outcomes["not found"]++
			if !c.hidden {
				t.Errorf("a visible repeater was not found: %v", c.err)
			}
		case code == store.ECONFLICT:
			outcomes["conflict"]++
			if s := byKey[k]; c.key == "" || s.body == c.body || c.rec == nil || c.rec.ID != s.id {
				t.Errorf("conflict for key %q body %s, but the stored record is %+v (named %v)", c.key, c.body, s, c.rec)
			}
		default:
			outcomes["connection killed"]++ // ambiguous: the record may or may not be stored
		}
	}
	t.Logf("outcomes: %v", outcomes)
	for k, times := range createdOnce {
		if times > 1 {
			t.Errorf("key %v was created %d times", k, times)
		}
	}
	rows, err = killer.Query(ctx, `SELECT r.repeater_id, coalesce(r.idempotency_key, ''), convert_from(p.body, 'UTF8')
		FROM repeat_records r JOIN payloads p ON p.id = r.payload_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var rep int64
		var key, body string
		if err := rows.Scan(&rep, &key, &body); err != nil {
			t.Fatal(err)
		}
		if !asked[fmt.Sprint(rep, key, body)] {
			t.Errorf("a record nobody asked for is stored: repeater %d key %q body %s", rep, key, body)
		}
	}
	var orphans int
	if err := killer.QueryRow(ctx, `SELECT count(*) FROM payloads p
		WHERE NOT EXISTS (SELECT 1 FROM repeat_records r WHERE r.payload_id = p.id)`).Scan(&orphans); err != nil || orphans != 0 {
		t.Errorf("%d payloads without their record (%v)", orphans, err)
	}
	if outcomes["ok"] == 0 || outcomes["connection killed"] == 0 {
		t.Errorf("the run did not exercise both successes and killed connections: %v", outcomes)
	}
}

// The key lookup keeps to its index in a new database too, where the
// planner would rather hash the table, and keeps that plan (generic, per
// connection) while the table grows.
func TestKeyLookupUsesItsIndexOnANewTable(t *testing.T) {
	st := storetest.NewStore(t)
	conn, err := st.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, `RESET plan_cache_mode; DEALLOCATE by_keys`)
	if _, err := conn.Exec(ctx, `PREPARE by_keys(bigint[], text[]) AS `+store.SQLRecordsByKeys); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `EXPLAIN EXECUTE by_keys('{1,2}', '{a,b}')`)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	if !strings.Contains(text, "repeat_records_idempotency_idx") || strings.Contains(text, "Seq Scan on repeat_records") {
		t.Fatalf("the key lookup does not keep to its index:\n%s", text)
	}
}
