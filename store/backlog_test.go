package store_test

import (
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

func TestBacklog(t *testing.T) {
	s := storetest.NewStore(t)
	get := func() *store.Backlog {
		t.Helper()
		b, err := s.GetBacklog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if b := get(); *b != (store.Backlog{}) {
		t.Fatalf("empty backlog = %+v", b)
	}
	live := newRepeater(t, s, "d")
	dead := newRepeater(t, s, "d")
	paused := newRepeater(t, s, "d")
	ids := storetest.Records(t, s, live, 3)
	storetest.Records(t, s, dead, 2)
	storetest.Records(t, s, paused, 1)
	invExec(t, s, `UPDATE repeat_records SET state = 2 WHERE id = $1`, ids[0])
	// Due for 10 minutes on a sendable repeater; older records on a backed
	// off and a paused one do not count towards the age.
	invExec(t, s, `UPDATE repeat_records SET next_check = now() - interval '10 minutes' WHERE repeater_id = $1`, live.ID)
	invExec(t, s, `UPDATE repeat_records SET next_check = now() - interval '3 days' WHERE repeater_id = ANY($1)`,
		[]int64{dead.ID, paused.ID})
	if err := s.SetBackoff(ctx, dead.ID, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPaused(ctx, paused.ID, true); err != nil {
		t.Fatal(err)
	}
	b := get()
	if b.Pending != 5 || b.Fail != 1 {
		t.Fatalf("backlog %+v, want 5 pending and 1 fail", b)
	}
	if b.OldestReadyAge < 10*time.Minute || b.OldestReadyAge > 11*time.Minute {
		t.Fatalf("oldest ready age %s, want about 10m (the backed-off and paused records left out)", b.OldestReadyAge)
	}
	// A backoff that ended an hour ago: eligible since its end, not since
	// the records' 3-day-old due time.
	if err := s.SetBackoff(ctx, dead.ID, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if b := get(); b.OldestReadyAge < time.Hour || b.OldestReadyAge > time.Hour+time.Minute {
		t.Fatalf("oldest ready age %s, want about 1h", b.OldestReadyAge)
	}
	// Counted from the aggregate when a consumer keeps it (here: by hand).
	syncStats(t, s)
	invExec(t, s, `SELECT pg_create_logical_replication_slot('test_slot', 'pgoutput')`)
	t.Cleanup(func() { _ = s.DropReplicationSlot(ctx, "test_slot") })
	invExec(t, s, `UPDATE repeat_record_stats SET count = count + 100 WHERE state = 1 AND repeater_id = $1`, live.ID)
	if b := get(); b.Pending != 105 {
		t.Fatalf("pending %d, want the aggregate's 105", b.Pending)
	}
}
