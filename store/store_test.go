package store_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

var ctx = context.Background()

func newRepeater(t *testing.T, s *store.Store, domain string) *store.Repeater {
	t.Helper()
	r := &store.Repeater{Domain: domain, Name: "r", URL: "http://127.0.0.1:1/hook"}
	if err := s.CreateRepeater(ctx, r); err != nil {
		t.Fatal(err)
	}
	return r
}

func register(t *testing.T, s *store.Store, repeaterID int64) *store.RepeatRecord {
	t.Helper()
	rec, created, err := s.RegisterRecord(ctx, store.RegisterParams{RepeaterID: repeaterID, Body: []byte(`{}`)})
	if err != nil || !created {
		t.Fatalf("register: %v created=%v", err, created)
	}
	return rec
}

func count(t *testing.T, s *store.Store, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := s.Pool().QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMigrateUpDownUp(t *testing.T) {
	url := storetest.NewEmptyDB(t)
	m, err := store.NewMigrator(url)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := m.Up(ctx) // idempotent
	if err != nil || len(again) != 0 {
		t.Fatalf("second up: %v, applied %d", err, len(again))
	}
	var status strings.Builder
	if err := m.Status(ctx, &status); err != nil || strings.Contains(status.String(), "pending") {
		t.Fatalf("status after up: %v\n%s", err, status.String())
	}
	if _, err := m.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	status.Reset()
	if err := m.Status(ctx, &status); err != nil || strings.Contains(status.String(), "applied") {
		t.Fatalf("status after reset: %v\n%s", err, status.String())
	}
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRegisterErrorsAreTypedAndWriteNothing(t *testing.T) {
	s := storetest.NewStore(t)
	r := newRepeater(t, s, "d1")
	gone := newRepeater(t, s, "d1")
	if err := s.DeleteRepeater(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		p    store.RegisterParams
		code string
	}{
		{"unknown repeater", store.RegisterParams{RepeaterID: 999999, Body: []byte("x")}, store.ENOTFOUND},
		{"deleted repeater", store.RegisterParams{RepeaterID: gone.ID, Body: []byte("x")}, store.ECONFLICT},
		{"a domain the caller does not see", store.RegisterParams{RepeaterID: r.ID, Body: []byte("x"),
			Sees: func(d string) bool { return d == "other" }}, store.ENOTFOUND},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := s.RegisterRecord(ctx, c.p)
			if got := store.ErrorCode(err); got != c.code {
				t.Fatalf("code = %q (%v), want %q", got, err, c.code)
			}
		})
	}
	if n := count(t, s, `SELECT count(*) FROM payloads`) + count(t, s, `SELECT count(*) FROM repeat_records`); n != 0 {
		t.Fatalf("rejected registrations left %d rows", n)
	}
	if _, err := s.GetRepeater(ctx, 424242); store.ErrorCode(err) != store.ENOTFOUND {
		t.Fatalf("GetRepeater unknown: %v", err)
	}
	if err := s.CreateRepeater(ctx, &store.Repeater{Domain: "", URL: "http://x"}); store.ErrorCode(err) != store.EINVALID {
		t.Fatalf("CreateRepeater without domain: %v", err)
	}
	if err := s.SetDomainFlag(ctx, "d1", "nope", true); store.ErrorCode(err) != store.EINVALID {
		t.Fatalf("unknown flag: %v", err)
	}
}

func TestDomainMismatchIsRefusedByTheSchemaToo(t *testing.T) {
	s := storetest.NewStore(t)
	r := newRepeater(t, s, "d1")
	_, err := s.Pool().Exec(ctx, `WITH p AS (INSERT INTO payloads (domain, body) VALUES ('d2', ''::bytea) RETURNING id)
		INSERT INTO repeat_records (domain, repeater_id, payload_id) SELECT 'd2', $1, id FROM p`, r.ID)
	if err == nil || !strings.Contains(err.Error(), "foreign key") {
		t.Fatalf("mismatched domain insert: %v", err)
	}
}

func TestIdempotencyKeyUnderConcurrency(t *testing.T) {
	s := storetest.NewStore(t)
	r := newRepeater(t, s, "d1")
	var wg sync.WaitGroup
	ids := make([]int64, 50)
	created := make([]bool, 50)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec, c, err := s.RegisterRecord(ctx, store.RegisterParams{RepeaterID: r.ID, Body: []byte("x"), IdempotencyKey: "k1"})
			if err != nil {
				t.Error(err)
				return
			}
			ids[i], created[i] = rec.ID, c
		}()
	}
	wg.Wait()
	nCreated := 0
	for i := range ids {
		if ids[i] != ids[0] {
			t.Fatalf("different records for one key: %v", ids)
		}
		if created[i] {
			nCreated++
		}
	}
	if nCreated != 1 || count(t, s, `SELECT count(*) FROM repeat_records`) != 1 {
		t.Fatalf("created %d times", nCreated)
	}
	if n := count(t, s, `SELECT count(*) FROM payloads`); n != 1 {
		t.Fatalf("%d payloads for one record", n)
	}
}

func TestFanOutSkipsDeletedRepeaters(t *testing.T) {
	s := storetest.NewStore(t)
	a, b, c := newRepeater(t, s, "d1"), newRepeater(t, s, "d1"), newRepeater(t, s, "d1")
	newRepeater(t, s, "d2")
	if err := s.DeleteRepeater(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	recs, err := s.FanOut(ctx, "d1", "application/json", []byte(`{"x":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].RepeaterID != a.ID || recs[1].RepeaterID != b.ID || recs[0].PayloadID != recs[1].PayloadID {
		t.Fatalf("fan-out = %+v", recs)
	}
	if _, err := s.FanOut(ctx, "empty", "", []byte("x")); store.ErrorCode(err) != store.ENOTFOUND {
		t.Fatalf("fan-out to a domain without repeaters: %v", err)
	}
	if n := count(t, s, `SELECT count(*) FROM payloads`); n != 1 {
		t.Fatalf("payloads = %d, want 1 (the empty fan-out writes nothing)", n)
	}
}

func TestReadyRepeatersBranchesAndFlags(t *testing.T) {
	s := storetest.NewStore(t)
	now := time.Now()
	idle := newRepeater(t, s, "a")        // no records: not ready
	fresh := newRepeater(t, s, "a")       // never backed off
	due := newRepeater(t, s, "b")         // backoff over
	later := newRepeater(t, s, "b")       // still backed off
	paused := newRepeater(t, s, "c")      // paused
	legacy := newRepeater(t, s, "legacy") // domain flag off
	for _, r := range []*store.Repeater{fresh, due, later, paused, legacy} {
		for range 5 {
			register(t, s, r.ID)
		}
	}
	_ = idle
	if err := s.SetBackoff(ctx, due.ID, now.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBackoff(ctx, later.ID, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPaused(ctx, paused.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetDomainFlag(ctx, "legacy", store.FlagProcessRepeaters, false); err != nil {
		t.Fatal(err)
	}
	got := readyIDs(t, s, now.Add(time.Second))
	if want := fmt.Sprint([]int64{fresh.ID, due.ID}); fmt.Sprint(got) != want {
		t.Fatalf("ready = %v, want %v", got, want)
	}
	next, err := s.NextAttemptAfter(ctx, now.Add(time.Second))
	if err != nil || next.Sub(now.Add(time.Hour)).Abs() > time.Second {
		t.Fatalf("next attempt = %v, %v", next, err)
	}
	// Claimed records are not ready: a repeater whose records are all claimed drops out.
	if _, err := s.ClaimReadyRecords(ctx, fresh.ID, 100, "batch:t", time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := readyIDs(t, s, now.Add(time.Second)); fmt.Sprint(got) != fmt.Sprint([]int64{due.ID}) {
		t.Fatalf("after claiming, ready = %v", got)
	}
}

func readyIDs(t *testing.T, s *store.Store, now time.Time) []int64 {
	t.Helper()
	groups, err := s.ReadyRepeaters(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, g := range groups {
		for _, r := range g.Repeaters {
			if r.Domain != g.Domain {
				t.Fatalf("repeater %d of %s grouped under %s", r.ID, r.Domain, g.Domain)
			}
			ids = append(ids, r.ID)
		}
	}
	return ids
}

func TestClaimRecordAndApplyBatch(t *testing.T) {
	s := storetest.NewStore(t)
	r := &store.Repeater{Domain: "d", URL: "http://x", MaxAttempts: 2}
	if err := s.CreateRepeater(ctx, r); err != nil {
		t.Fatal(err)
	}
	var recs []*store.RepeatRecord
	for range 4 {
		recs = append(recs, register(t, s, r.ID))
	}
	claimed, err := s.ClaimReadyRecords(ctx, r.ID, 3, "batch:tok", time.Minute)
	if err != nil || len(claimed) != 3 || claimed[0].ID != recs[0].ID || string(claimed[0].Body) != "{}" {
		t.Fatalf("claimed %+v, %v", claimed, err)
	}
	if *claimed[0].ClaimOwner != "batch:tok" {
		t.Fatalf("claim owner %v", claimed[0].ClaimOwner)
	}
	if again, _ := s.ClaimReadyRecords(ctx, r.ID, 3, "batch:other", time.Minute); len(again) != 1 || again[0].ID != recs[3].ID {
		t.Fatalf("second claim took %d records, want only the unclaimed one", len(again))
	}
	outcomes := []store.Outcome{
		{RecordID: recs[0].ID, State: store.StateSuccess, StatusCode: 200, Owner: "batch:tok"},
		{RecordID: recs[1].ID, State: store.StateFail, StatusCode: 500, Message: strings.Repeat("é", 2000), Owner: "batch:tok"},
		{RecordID: recs[2].ID, State: store.StatePayloadRejected, StatusCode: 400, Owner: "batch:tok"},
	}
	mark := &store.BatchMark{RepeaterID: r.ID, Token: "tok", Summary: store.Summarize(outcomes)}
	if n, err := s.RecordOutcomes(ctx, outcomes, mark); err != nil || n != 3 {
		t.Fatalf("record: %d, %v", n, err)
	}
	// The same outcomes again: their claims ended, so they are logged as
	// attempts and change nothing.
	if n, err := s.RecordOutcomes(ctx, outcomes[:2], nil); err != nil || n != 0 {
		t.Fatalf("re-record under an ended claim: %d, %v", n, err)
	}
	if rec, _, _ := s.GetRecord(ctx, recs[1].ID); rec.State != store.StateFail || rec.AttemptCount != 2 {
		t.Fatalf("a stale outcome changed the record: %+v", rec)
	}
	// A second failure under a fresh claim uses up the last try.
	if _, err := s.ClaimReadyRecords(ctx, r.ID, 1, "batch:tok2", time.Minute); err != nil {
		t.Fatal(err)
	}
	second := outcomes[1]
	second.Owner = "batch:tok2"
	if n, _ := s.RecordOutcomes(ctx, []store.Outcome{second}, nil); n != 1 {
		t.Fatalf("second failure recorded %d", n)
	}
	rec, attempts, err := s.GetRecord(ctx, recs[1].ID)
	if err != nil || rec.State != store.StateCancelled || rec.AttemptCount != 3 || len(attempts) != 3 || len(attempts[0].Message) > 1024 {
		t.Fatalf("failed twice with max 2: %+v %d attempts, %v", rec, len(attempts), err)
	}
	calls := 0
	decide := func(r *store.Repeater, sum store.BatchSummary) store.BatchDecision {
		calls++
		if sum.Succeeded != 1 || sum.Failed != 1 || sum.Rejected != 1 {
			t.Errorf("summary = %+v", sum)
		}
		return store.BatchDecision{EffectiveWorkers: 3}
	}
	for range 2 {
		if _, err := s.ApplyBatch(ctx, r.ID, "tok", decide); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 1 {
		t.Fatalf("ApplyBatch applied %d times, want once", calls)
	}
	if got, _ := s.GetRepeater(ctx, r.ID); got.EffectiveWorkers != 3 || got.PendingBatch != nil {
		t.Fatalf("repeater after apply: %+v", got)
	}
}

func TestRequeueAndCancel(t *testing.T) {
	s := storetest.NewStore(t)
	r := newRepeater(t, s, "d")
	rec := register(t, s, r.ID)
	if _, err := s.CancelRecord(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CancelRecord(ctx, rec.ID); store.ErrorCode(err) != store.ECONFLICT {
		t.Fatalf("cancel twice: %v", err)
	}
	got, err := s.RequeueRecord(ctx, rec.ID)
	if err != nil || !got.State.Ready() || got.MaxPossibleTries != got.AttemptCount+r.MaxAttempts {
		t.Fatalf("requeue: %+v, %v", got, err)
	}
	if _, err := s.RequeueRecord(ctx, 987654); store.ErrorCode(err) != store.ENOTFOUND {
		t.Fatalf("requeue unknown: %v", err)
	}
}
