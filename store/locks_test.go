package store_test

import (
	"context"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// A registration in flight holds its repeater FOR KEY SHARE. DeleteRepeater
// waits for it, then cancels its record too; the engine's writes of the
// repeater's batch state do not wait for it.
func TestRegistrationLocksAgainstDeleteNotTheEngine(t *testing.T) {
	st := storetest.NewStore(t)
	r := storetest.Repeater(t, st, storetest.RepeaterOpts{})
	ctx := context.Background()
	inFlight, err := st.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer inFlight.Rollback(ctx)
	// What RegisterRecord and RegisterBatch do before they commit.
	var recordID int64
	if _, err := inFlight.Exec(ctx, `SELECT 1 FROM repeaters WHERE id = $1 FOR KEY SHARE`, r.ID); err != nil {
		t.Fatal(err)
	}
	if err := inFlight.QueryRow(ctx, `WITH p AS (INSERT INTO payloads (domain, body) VALUES ($1, '{}') RETURNING id)
		INSERT INTO repeat_records (domain, repeater_id, payload_id) SELECT $1, $2, id FROM p RETURNING id`,
		r.Domain, r.ID).Scan(&recordID); err != nil {
		t.Fatal(err)
	}

	// The engine: a batch's mark and its application go through at once.
	quick, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := st.Pool().Exec(quick, `UPDATE repeaters SET pending_batch = 't', last_attempt_at = now() WHERE id = $1`, r.ID); err != nil {
		t.Fatalf("a batch mark waited for the registration: %v", err)
	}
	applied, err := st.ApplyBatch(quick, r.ID, "t", func(*store.Repeater, store.BatchSummary) store.BatchDecision {
		return store.BatchDecision{EffectiveWorkers: 1}
	})
	if err != nil || !applied {
		t.Fatalf("applying a batch waited for the registration or failed: applied=%v err=%v", applied, err)
	}

	// A delete waits for the registration, then cancels its record.
	deleted := make(chan error, 1)
	go func() { deleted <- st.DeleteRepeater(ctx, r.ID) }()
	waitForLockWait(t, st)
	select {
	case err := <-deleted:
		t.Fatalf("the delete did not wait for the registration in flight: %v", err)
	default:
	}
	if err := inFlight.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	rec, _, err := st.GetRecord(ctx, recordID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != store.StateCancelled {
		t.Fatalf("the record registered while the repeater was deleted is %s, want cancelled", rec.State)
	}
}

// waitForLockWait returns once a session of st's database waits on a lock.
func waitForLockWait(t *testing.T, st *store.Store) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var waiting int
		if err := st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond) // polling the server's own view: there is no signal to await
	}
	t.Fatal("no session ever waited on a lock")
}
