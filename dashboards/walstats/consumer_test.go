package walstats

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

func TestConsumerBackfillsExistingRecords(t *testing.T) {
	e := newEnv(t, 3)
	for i, r := range e.repeaters {
		for j, state := range store.AllStates {
			e.insert(t, r, state, 50+i*37+j*11)
		}
	}
	c := e.consumer(t, Config{})
	e.waitApplied(t, e.mark(t), 30*time.Second)
	e.assertExact(t)

	// Then the stream: inserts, state changes, a purge.
	conn := e.conn(t)
	ctx := context.Background()
	e.insert(t, e.repeaters[1], store.StatePending, 25)
	execOn(t, conn, `UPDATE repeat_records SET state = 4 WHERE id IN
		(SELECT id FROM repeat_records WHERE state = 1 ORDER BY id LIMIT 40)`)
	execOn(t, conn, `DELETE FROM repeat_records WHERE state = 4 AND repeater_id = $1`, e.repeaters[0].id)
	e.waitApplied(t, e.mark(t), 30*time.Second)
	e.assertExact(t)

	if n := metricValue(t, c.metrics.appliedChanges); n < 25+40+1 {
		t.Errorf("applied_changes_total = %v, want at least the changes made", n)
	}
	if got := metricValue(t, c.metrics.appliedLSN); got != float64(c.AppliedLSN()) || got == 0 {
		t.Errorf("applied_lsn gauge = %v, consumer at %v", got, c.AppliedLSN())
	}
	if rc, err := e.st.RecordCounts(ctx, ""); err != nil || rc.Live {
		t.Errorf("RecordCounts live = %v (%v), want the aggregate while the slot feeds it", rc.Live, err)
	}
	if len(c.Collectors()) != 5 {
		t.Errorf("Collectors() = %d collectors, want 5", len(c.Collectors()))
	}
}

// OnApplied is the signal tests wait on, so it must only report what
// stats_progress already holds, in order.
func TestConsumerOnAppliedFollowsProgress(t *testing.T) {
	e := newEnv(t, 1)
	e.insert(t, e.repeaters[0], store.StatePending, 10)
	var (
		mu       sync.Mutex
		reported []pglogrepl.LSN
		problems []error
	)
	e.consumer(t, Config{OnApplied: func(lsn pglogrepl.LSN) {
		stored, err := e.st.AppliedLSN(context.Background(), e.slot)
		mu.Lock()
		defer mu.Unlock()
		if err != nil || stored < lsn {
			problems = append(problems, fmt.Errorf("reported %s while stats_progress holds %s (%v)", lsn, stored, err))
		}
		reported = append(reported, lsn)
	}})
	for range 3 {
		e.insert(t, e.repeaters[1], store.StateFail, 5)
		e.waitApplied(t, e.mark(t), 30*time.Second)
	}
	mu.Lock()
	defer mu.Unlock()
	if err := errors.Join(problems...); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(reported); i++ {
		if reported[i] < reported[i-1] {
			t.Fatalf("OnApplied went back from %s to %s", reported[i-1], reported[i])
		}
	}
	if len(reported) < 2 {
		t.Fatalf("OnApplied reported %v, want the start and the batches", reported)
	}
}

func TestConsumerStandbyTakesOver(t *testing.T) {
	e := newEnv(t, 1)
	e.insert(t, e.repeaters[0], store.StatePending, 10)
	first := e.consumer(t, Config{})
	e.waitApplied(t, e.mark(t), 30*time.Second)
	second := e.consumer(t, Config{}) // stands by: the first holds the slot
	e.insert(t, e.repeaters[1], store.StateFail, 5)
	e.waitApplied(t, e.mark(t), 30*time.Second)
	if second.AppliedLSN() != 0 {
		t.Fatalf("the standby applied changes (to %s) while the first consumer ran", second.AppliedLSN())
	}
	_ = first.Stop(context.Background())
	e.insert(t, e.repeaters[1], store.StatePending, 3)
	target := e.mark(t)
	e.waitApplied(t, target, 30*time.Second)
	if second.AppliedLSN() < target {
		t.Fatalf("standby at %s, want it past %s after taking over", second.AppliedLSN(), target)
	}
	e.assertExact(t)
}

func TestConsumerRebuildsStaleSlot(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, e *env)
	}{
		{"slot without counts (creation interrupted)", func(t *testing.T, e *env) {
			createTestSlot(t, e, e.slot)
		}},
		{"counts without slot (slot dropped)", func(t *testing.T, e *env) {
			setProgress(t, e, e.slot, "0/1")
		}},
		{"slot confirmed past the counts", func(t *testing.T, e *env) {
			createTestSlot(t, e, e.slot)
			setProgress(t, e, e.slot, "0/1")
		}},
		{"counts fed by another slot", func(t *testing.T, e *env) {
			createTestSlot(t, e, e.slot+"_old")
			setProgress(t, e, e.slot+"_old", "0/1")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, 1)
			e.insert(t, e.repeaters[0], store.StatePending, 40)
			tt.setup(t, e)
			// Wrong counts that only a recount removes.
			storetest.Exec(t, e.url, `INSERT INTO repeat_record_stats VALUES ('d0', $1, 4, 99)`, e.repeaters[1].id)
			e.consumer(t, Config{})
			e.waitApplied(t, e.mark(t), 30*time.Second)
			e.assertExact(t)
			if _, err := e.st.GetReplicationSlot(context.Background(), e.slot+"_old"); store.ErrorCode(err) != store.ENOTFOUND {
				t.Errorf("the replaced slot is still there (%v)", err)
			}
		})
	}
}

func createTestSlot(t *testing.T, e *env, name string) {
	t.Helper()
	storetest.Exec(t, e.url, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, name)
	t.Cleanup(func() { _ = e.st.DropReplicationSlot(context.Background(), name) })
}

func setProgress(t *testing.T, e *env, slot, lsn string) {
	t.Helper()
	storetest.Exec(t, e.url, `INSERT INTO stats_progress (slot_name, applied_lsn) VALUES ($1, $2::pg_lsn)`, slot, lsn)
}

func TestConsumerTruncateRecounts(t *testing.T) {
	e := newEnv(t, 2)
	for _, r := range e.repeaters {
		e.insert(t, r, store.StatePending, 30)
		e.insert(t, r, store.StateSuccess, 10)
	}
	e.consumer(t, Config{BatchWait: time.Second}) // truncate lands mid-batch
	e.waitApplied(t, e.mark(t), 30*time.Second)
	e.assertExact(t)

	conn := e.conn(t)
	r := e.repeaters[2]
	execOn(t, conn, `UPDATE repeat_records SET state = 2 WHERE repeater_id = $1`, r.id) // before: discarded
	// A truncate followed, in the same transaction, by new records.
	execOn(t, conn, `BEGIN`)
	execOn(t, conn, `INSERT INTO repeat_records (domain, repeater_id, payload_id) VALUES ($1, $2, $3)`,
		r.domain, r.id, r.payload)
	execOn(t, conn, `TRUNCATE repeat_records CASCADE`)
	execOn(t, conn, insertSQL, r.domain, r.id, r.payload, 1, 7)
	execOn(t, conn, `COMMIT`)
	e.insert(t, e.repeaters[0], store.StateFail, 3)
	e.waitApplied(t, e.mark(t), 30*time.Second)
	e.assertExact(t)
	got, _ := e.st.StatsCounts(context.Background(), "")
	if len(got) != 2 {
		t.Fatalf("counts after truncate = %v, want only what followed it", got)
	}
}
