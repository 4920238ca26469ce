package repeaters

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// newLegacy returns a legacy sender on e retrying after 1m, ×3 each time,
// timed by e's fake clock, and a channel of the attempts it records.
func (e *engineEnv) newLegacy() (*Legacy, chan store.Outcome) {
	sent := make(chan store.Outcome, 16)
	return &Legacy{
		Store: e.st, Sender: e.sender, Clock: e.clock,
		Schedule: LegacySchedule{Min: time.Minute, Max: time.Hour},
		OnSent:   func(o store.Outcome) { sent <- o },
	}, sent
}

func TestLegacySendsOneRecord(t *testing.T) {
	e := newEngineEnv(t)
	rc, r := e.receivingRepeater(t, "old", nil)
	ids := storetest.Records(t, e.st, r, 3)
	l, sent := e.newLegacy()

	sendRecord(t, l, ids[1])
	if out := awaitSignal(t, sent, "the attempt recorded"); out.RecordID != ids[1] || out.State != store.StateSuccess {
		t.Fatalf("recorded %+v, want a success for record %d", out, ids[1])
	}
	if got, want := rc.received(), webhookIDs(ids[1]); !slices.Equal(got, want) {
		t.Fatalf("receiver got %v, want just %v", got, want)
	}
	for i, want := range []store.State{store.StatePending, store.StateSuccess, store.StatePending} {
		if rec := e.getRecord(t, ids[i]); rec.State != want {
			t.Errorf("record %d: %s, want %s", i, rec.State, want)
		}
	}
}

func TestLegacyFailureSchedulesTheNextTry(t *testing.T) {
	e := newEngineEnv(t)
	clock := e.clock
	rc, r := e.receivingRepeater(t, "old", answering(http.StatusServiceUnavailable), func(r *store.Repeater) { r.MaxAttempts = 10 })
	id := storetest.Records(t, e.st, r, 1)[0]
	l, sent := e.newLegacy()

	for attempt, wait := range []time.Duration{time.Minute, 3 * time.Minute, 9 * time.Minute} {
		sendRecord(t, l, id)
		awaitSignal(t, sent, "the failed attempt recorded")
		rec := e.getRecord(t, id)
		if want := clock.Now().Add(wait); rec.State != store.StateFail || rec.AttemptCount != attempt+1 || !rec.NextCheck.Equal(want) {
			t.Fatalf("after attempt %d: %s, %d attempts, next check %s; want fail, %d, %s (+%s)",
				attempt+1, rec.State, rec.AttemptCount, rec.NextCheck, attempt+1, want, wait)
		}
		clock.Advance(time.Hour)
	}

	// A Retry-After beyond the schedule's next delay (27m) wins.
	rc.answerHeader("Retry-After", "7200")
	sendRecord(t, l, id)
	awaitSignal(t, sent, "the throttled attempt recorded")
	if rec, want := e.getRecord(t, id), clock.Now().Add(2*time.Hour); !rec.NextCheck.Equal(want) {
		t.Fatalf("after a Retry-After of 2h: next check %s, want %s", rec.NextCheck, want)
	}
}

func TestLegacyPostponesARecordOfAPausedRepeater(t *testing.T) {
	e := newEngineEnv(t)
	clock := e.clock
	rc, r := e.receivingRepeater(t, "old", nil)
	id := storetest.Records(t, e.st, r, 1)[0]
	if err := e.st.SetPaused(context.Background(), r.ID, true); err != nil {
		t.Fatal(err)
	}
	l, _ := e.newLegacy()

	sendRecord(t, l, id)
	if n := len(rc.received()); n != 0 {
		t.Fatalf("a paused repeater's record was sent (%d requests)", n)
	}
	if rec, want := e.getRecord(t, id), clock.Now().Add(time.Minute); rec.State != store.StatePending || !rec.NextCheck.Equal(want) {
		t.Fatalf("paused: %s, next check %s; want pending until %s", rec.State, rec.NextCheck, want)
	}
}

func TestLegacySkipsARecordTheOtherPathDelivered(t *testing.T) {
	e := newEngineEnv(t)
	rc, r := e.receivingRepeater(t, "flip", nil)
	id := storetest.Records(t, e.st, r, 1)[0]
	p, ev := e.newProcessor()
	l, sent := e.newLegacy()

	// check_repeaters queued a send task that waited past its claim; the
	// flag flipped and a batch of the new path claimed and delivered the
	// record before that task ran.
	stale := claimForLegacy(t, e.st, id, -time.Second)
	processBatch(t, p, e.lockedBatch(t, r, 10))
	awaitSignal(t, ev.recorded, "the new path's batch recorded")
	runSend(t, l, stale)
	if got, want := rc.received(), webhookIDs(id); !slices.Equal(got, want) {
		t.Fatalf("receiver got %v; want the record once, from the new path", got)
	}
	if len(sent) != 0 {
		t.Fatal("the legacy path recorded an attempt on a delivered record")
	}
	if n := storetest.Count(t, e.st, `SELECT count(*) FROM repeat_record_attempts WHERE record_id = $1`, id); n != 1 {
		t.Fatalf("%d attempts recorded, want the new path's one", n)
	}
}

// sendRecord claims id as check_repeaters does and runs its send task.
func sendRecord(t *testing.T, l *Legacy, id int64) {
	t.Helper()
	runSend(t, l, claimForLegacy(t, l.Store, id, time.Minute))
}

func runSend(t *testing.T, l *Legacy, c LegacyClaim) {
	t.Helper()
	if err := l.SendRecord(context.Background(), c); err != nil {
		t.Fatalf("send record %d: %v", c.RecordID, err)
	}
}

// claimForLegacy takes check_repeaters' claim on id, lasting claimFor from
// Postgres's now (negative: a claim that already lapsed).
func claimForLegacy(t *testing.T, st *store.Store, id int64, claimFor time.Duration) LegacyClaim {
	t.Helper()
	c := LegacyClaim{RecordID: id, Owner: "legacy:" + t.Name()}
	if _, err := st.Pool().Exec(context.Background(), `UPDATE repeat_records
		SET claim_owner = $2, next_check = now() + $3::interval WHERE id = $1`, id, c.Owner, claimFor); err != nil {
		t.Fatal(err)
	}
	return c
}
