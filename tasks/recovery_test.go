package tasks_test

import (
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"repeaterd/repeaters"
	"repeaterd/repeaters/repeatertest"
	"repeaterd/store"
	"repeaterd/tasks"
)

func TestWorkerKilledMidBatchLosesNothing(t *testing.T) {
	h := newHarness(t)
	sk := repeatertest.NewServer(t, repeatertest.Config{Delay: 20 * time.Millisecond})
	rep := h.repeater("d", sk.URL("/crash"))
	ids := h.load(rep, 200)
	h.start("dispatcher")
	victim := h.spawn("worker")
	h.waitFor("a batch in flight", 20*time.Second, func() bool { return sk.Count("/crash") >= 10 })
	victim.kill() // SIGKILL mid-batch
	killedAt := time.Now()
	h.spawn("worker")
	h.waitFor("every record delivered", 60*time.Second, func() bool {
		return h.countSQL(`SELECT count(*) FROM repeat_records WHERE state = 4`) == len(ids)
	})
	t.Logf("recovered %s after the kill; %d ids delivered twice (the batch in flight)", time.Since(killedAt), sk.Stats().DuplicatedIDs)
	if sk.Stats().Unique != len(ids) {
		t.Fatalf("sink saw %d distinct ids, want %d", sk.Stats().Unique, len(ids))
	}
	if sk.Stats().DuplicatedIDs > 50 {
		t.Fatalf("%d duplicates; at most one batch may be resent", sk.Stats().DuplicatedIDs)
	}
}

func TestLeaderFailover(t *testing.T) {
	h := newHarness(t)
	sk := repeatertest.NewServer(t, repeatertest.Config{})
	rep := h.repeater("d", sk.URL("/failover"))
	h.start("worker")
	leader, standby := h.spawnDispatchers()
	h.load(rep, 10)
	h.waitFor("delivered under the first leader", 10*time.Second, func() bool { return sk.Count("/failover") >= 10 })
	leader.kill()
	killed := time.Now()
	h.load(rep, 10)
	h.waitFor("delivered under the new leader", 10*time.Second, func() bool { return sk.Count("/failover") >= 20 })
	took := time.Since(killed)
	t.Logf("standby took over and delivered %s after the leader died (lease 1.5s)", took)
	if !standby.isLeading() {
		t.Fatal("the standby never led")
	}
	if took > 3*time.Second+h.cfg.Dispatcher.LeaseTTL {
		t.Fatalf("failover took %s", took)
	}
	if sk.Stats().DuplicatedIDs != 0 {
		t.Fatalf("%d records delivered twice across the failover", sk.Stats().DuplicatedIDs)
	}
}

func TestIdleLatency(t *testing.T) {
	h := newHarness(t)
	sk := repeatertest.NewServer(t, repeatertest.Config{})
	rep := h.repeater("d", sk.URL("/latency"))
	h.start("dispatcher", "worker")
	var lat []time.Duration
	for i := range 50 {
		before := sk.Count("/latency")
		start := time.Now()
		if _, _, err := h.eng.Store.RegisterRecord(ctx, store.RegisterParams{RepeaterID: rep.ID, Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
		h.waitFor("delivery", 10*time.Second, func() bool { return sk.Count("/latency") > before })
		lat = append(lat, sk.Times("/latency")[before].Sub(start))
	}
	p50, p99 := percentile(lat, 0.5), percentile(lat, 0.99)
	t.Logf("idle registration → first attempt: p50 %s, p99 %s (n=50)", p50, p99)
	if p50 > 300*time.Millisecond {
		t.Fatalf("p50 %s: new records should wake the dispatcher, not wait for a poll", p50)
	}
}

func TestGracefulShutdownReleasesLocksAndClaims(t *testing.T) {
	h := newHarness(t, func(c *tasks.EngineConfig) { c.LockTTL = 30 * time.Second })
	sk := repeatertest.NewServer(t, repeatertest.Config{Delay: 50 * time.Millisecond})
	rep := h.repeater("d", sk.URL("/drain"))
	ids := h.load(rep, 500)
	d := h.eng.NewDispatcher()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	w := h.spawn("worker")
	h.waitFor("a batch in flight", 20*time.Second, func() bool { return sk.Count("/drain") >= 5 })
	_ = d.Stop(ctx) // so no new batch takes the lock after the drained one releases it
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- w.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("worker exited badly on SIGTERM: %v", err)
		}
	case <-time.After(h.cfg.Worker.DrainTimeout + 5*time.Second):
		t.Fatal("worker did not stop within its drain timeout")
	}
	if n, _ := h.eng.Redis.Exists(ctx, repeaters.LockKey(rep.ID)).Result(); n != 0 {
		t.Fatal("the repeater lock outlived a graceful shutdown (it would wait for its 30s TTL)")
	}
	if n := h.countSQL(`SELECT count(*) FROM repeat_records WHERE state IN (1, 2) AND next_check > now()`); n != 0 {
		t.Fatalf("%d records left claimed after shutdown", n)
	}
	delivered := h.countSQL(`SELECT count(*) FROM repeat_records WHERE state = 4`)
	if delivered == 0 || delivered != sk.Stats().Unique {
		t.Fatalf("recorded %d successes, the sink saw %d ids", delivered, sk.Stats().Unique)
	}
	h.start("dispatcher")
	h.spawn("worker") // the rest is delivered by the next worker, at once
	h.waitFor("the rest delivered", 30*time.Second, func() bool { return sk.Count("/drain") >= len(ids) })
}

func TestRetriedBatchResendsNothingAndUpdateIsIdempotent(t *testing.T) {
	h := newHarness(t)
	sk := repeatertest.NewServer(t, repeatertest.Config{Status: http.StatusServiceUnavailable})
	rep := h.repeater("d", sk.URL("/retry"))
	h.load(rep, 20)
	token, ok, err := h.eng.Locker.Acquire(ctx, rep.ID)
	if err != nil || !ok {
		t.Fatal("lock", err)
	}
	b := repeaters.Batch{RepeaterID: rep.ID, Domain: "d", Token: token, Limit: 20}
	if _, err := h.eng.Processor.ProcessBatch(ctx, b); err != nil {
		t.Fatal(err)
	}
	sent := sk.Stats().Unique
	attempts := h.countSQL(`SELECT count(*) FROM repeat_record_attempts`)
	// The worker "crashed" before enqueueing update_repeater; asynq retries
	// the task. The failed records are ready again, yet nothing is resent.
	h.countSQL(`WITH due AS (UPDATE repeat_records SET next_check = now() WHERE state IN (1, 2) RETURNING 1) SELECT count(*) FROM due`)
	end, err := h.eng.Processor.ProcessBatch(ctx, b)
	if err != nil || end != repeaters.EndRelease {
		t.Fatalf("retry: %v, end=%v", err, end)
	}
	if sk.Stats().Unique != sent || h.countSQL(`SELECT count(*) FROM repeat_record_attempts`) != attempts {
		t.Fatalf("the retried batch resent: sink %d→%d", sent, sk.Stats().Unique)
	}
	for range 2 { // update_repeater twice: one backoff step, not two
		if err := h.eng.Processor.UpdateRepeater(ctx, rep.ID, token); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := h.eng.Store.GetRepeater(ctx, rep.ID)
	if got.BackoffCount != 1 || got.NextAttemptAt == nil || got.EffectiveWorkers != 3 {
		t.Fatalf("after one failed, throttled batch applied twice: backoff_count %d, next %v, workers %d; want 1, set, 3",
			got.BackoffCount, got.NextAttemptAt, got.EffectiveWorkers)
	}
	if held, _ := h.eng.Locker.Holds(ctx, rep.ID, token); held {
		t.Fatal("update_repeater did not release the lock")
	}
}

func TestEmptyPayloadIsDoneWithoutARequest(t *testing.T) {
	h := newHarness(t)
	sk := repeatertest.NewServer(t, repeatertest.Config{})
	rep := h.repeater("d", sk.URL("/empty"))
	ids, err := h.eng.Store.RegisterMany(ctx, rep.ID, "", [][]byte{{}, {}, []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	h.start("dispatcher", "worker")
	h.waitFor("all done", 15*time.Second, func() bool {
		return h.countSQL(`SELECT count(*) FROM repeat_records WHERE state IN (1, 2)`) == 0
	})
	for i, want := range []store.State{store.StateEmpty, store.StateEmpty, store.StateSuccess} {
		if r, _, _ := h.eng.Store.GetRecord(ctx, ids[i]); r.State != want {
			t.Errorf("record %d: %s, want %s", i, r.State, want)
		}
	}
	if sk.Count("/empty") != 1 {
		t.Fatalf("the sink got %d requests; empty payloads send none", sk.Count("/empty"))
	}
}
