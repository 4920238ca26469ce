package tasks_test

import (
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"repeaterd/store"
	"repeaterd/tasks"
)

// The scheduler refreshes the invariants once, InvariantsStartupDelay after
// it starts, long before the first periodic refresh (30 minutes).
func TestSchedulerRefreshesInvariantsAfterStart(t *testing.T) {
	h := newHarness(t, func(c *tasks.EngineConfig) { c.Scheduler.InvariantsStartupDelay = 300 * time.Millisecond })
	before, err := h.eng.Store.LastInvariantsRefresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h.start(tasks.RoleWorker, tasks.RoleScheduler)
	h.waitFor("the refresh after start", 30*time.Second, func() bool {
		at, err := h.eng.Store.LastInvariantsRefresh(ctx)
		return err == nil && at.After(before)
	})
}

// A scheduled purge counts what it removed in repeaterd_purged_total.
func TestScheduledPurgeCountsInMetrics(t *testing.T) {
	h := newHarness(t)
	r := h.repeater("acme", "http://127.0.0.1:1/hook")
	ids := h.load(r, 2)
	if _, err := h.eng.Store.RecordOutcomes(ctx, []store.Outcome{{RecordID: ids[0], State: store.StateSuccess}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := h.eng.Store.Pool().Exec(ctx, `UPDATE repeat_records SET state_changed_at = now() - interval '40 days'
		WHERE id = $1`, ids[0]); err != nil {
		t.Fatal(err)
	}
	before := purgedRecords(t)
	h.start(tasks.RoleWorker)
	client := asynq.NewClientFromRedisClient(h.eng.Redis)
	if _, err := client.Enqueue(tasks.NewPurgeTask()); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the purge", 30*time.Second, func() bool { return purgedRecords(t) == before+1 })
	if n := h.countSQL(`SELECT count(*) FROM repeat_records`); n != 1 {
		t.Fatalf("%d records left, want the ready one", n)
	}
}

func purgedRecords(t *testing.T) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(tasks.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "repeaterd_purged_total" && m.GetLabel()[0].GetValue() == "records" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
