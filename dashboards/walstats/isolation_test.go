package walstats

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// Two repeaterd databases on one server: the second is configured with the
// first's slot name. It must say so clearly, stay degraded (not take or
// break the first's slot), read no lag of the other database's slot, and
// serve live counts; with a slot of its own it streams beside the first.
func TestSlotOfAnotherDatabase(t *testing.T) {
	prod, staging := newEnv(t, 1), newEnv(t, 1)
	prod.insert(t, prod.repeaters[0], store.StatePending, 7)
	staging.insert(t, staging.repeaters[0], store.StatePending, 3)
	prod.consumer(t, Config{})
	prod.waitApplied(t, prod.mark(t), 30*time.Second)

	ctx := context.Background()
	c, err := New(staging.st, Config{DatabaseURL: staging.url, SlotName: prod.slot, StandbyInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v, want a degraded start", err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	err = waitDegraded(t, c)
	if !errors.Is(err, ErrSlotElsewhere) || !strings.Contains(err.Error(), "REPEATERD_STATS_SLOT") ||
		!strings.Contains(err.Error(), prod.dbName(t)) {
		t.Fatalf("Health = %v, want ErrSlotElsewhere naming the owner and REPEATERD_STATS_SLOT", err)
	}
	t.Log(err)
	if _, err := staging.st.StatsLagBytes(ctx, prod.slot); store.ErrorCode(err) != store.ENOTFOUND {
		t.Errorf("staging's lag of prod's slot: %v, want ENOTFOUND (not the other database's lag)", err)
	}
	rc, err := staging.st.RecordCounts(ctx, "")
	if err != nil || !rc.Live || !strings.Contains(rc.LiveReason, "never run") {
		t.Fatalf("staging counts: live=%v reason=%q (%v), want live with the reason", rc.Live, rc.LiveReason, err)
	}
	// Prod's consumer is untouched.
	prod.insert(t, prod.repeaters[1], store.StateFail, 2)
	prod.waitApplied(t, prod.mark(t), 30*time.Second)
	prod.assertExact(t)

	// With its own slot (the default is per database) staging streams too.
	_ = c.Stop(ctx)
	staging.consumer(t, Config{})
	staging.waitApplied(t, staging.mark(t), 30*time.Second)
	staging.assertExact(t)
	if rc, err := staging.st.RecordCounts(ctx, ""); err != nil || rc.Live {
		t.Fatalf("staging counts live=%v (%v) with its consumer streaming", rc.Live, err)
	}
}

// A stats setup failure degrades the consumer, which retries; once fixed it
// resumes on its own and says so.
func TestConsumerDegradesAndResumes(t *testing.T) {
	e := newEnv(t, 1)
	e.insert(t, e.repeaters[0], store.StatePending, 5)
	storetest.Exec(t, e.url, `DROP PUBLICATION repeaterd_stats`)
	var logs storetest.LogBuffer
	c := e.consumer(t, Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	err := waitDegraded(t, c)
	if !errors.Is(err, ErrWALUnavailable) || !strings.Contains(err.Error(), "repeaterd migrate") {
		t.Fatalf("Health = %v, want ErrWALUnavailable naming `repeaterd migrate`", err)
	}
	if v := metricValue(t, c.metrics.streaming); v != 0 {
		t.Errorf("repeaterd_stats_streaming = %v while degraded", v)
	}
	storetest.Exec(t, e.url, `CREATE PUBLICATION repeaterd_stats FOR TABLE repeat_records`)
	waitState(t, c, StateStreaming)
	e.waitApplied(t, e.mark(t), 60*time.Second)
	e.assertExact(t)
	if err := c.Health(); err != nil || c.Status().State != StateStreaming {
		t.Fatalf("after the fix: %s, %v", c.Status().State, err)
	}
	if v := metricValue(t, c.metrics.streaming); v != 1 {
		t.Errorf("repeaterd_stats_streaming = %v while streaming", v)
	}
	if hb := metricValue(t, c.metrics.heartbeat); time.Since(time.Unix(int64(hb), 0)) > time.Minute {
		t.Errorf("heartbeat %v is not recent", hb)
	}
	if !strings.Contains(logs.String(), "stats: resumed streaming") {
		t.Errorf("no resume event in the log:\n%s", logs.String())
	}
}

func (e *env) dbName(t *testing.T) string {
	t.Helper()
	var db string
	if err := e.st.Pool().QueryRow(context.Background(), `SELECT current_database()`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	return db
}
