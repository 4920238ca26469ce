package tasks_test

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"repeaterd/repeaters"
	"repeaterd/repeaters/repeatertest"
	"repeaterd/store"
	"repeaterd/tasks"
)

func TestDeliversEveryRecordExactlyOnce(t *testing.T) {
	h := newHarness(t)
	sk := repeatertest.NewServer(t, repeatertest.Config{})
	total := 0
	for d := range 3 {
		for r := range 3 {
			rep := h.repeater(fmt.Sprintf("d%d", d), sk.URL(fmt.Sprintf("/d%d/r%d", d, r)))
			total += len(h.load(rep, 200))
		}
	}
	h.start("dispatcher", "worker")
	h.waitFor("every record delivered", 60*time.Second, func() bool {
		return h.countSQL(`SELECT count(*) FROM repeat_records WHERE state = 4`) == total
	})
	if n := h.countSQL(`SELECT count(*) FROM repeat_record_attempts WHERE state = 4`); n != total {
		t.Fatalf("%d success attempts for %d records", n, total)
	}
	if sk.Stats().Unique != total || sk.Stats().DuplicatedIDs != 0 {
		t.Fatalf("sink saw %d ids, %d duplicated; want %d, 0", sk.Stats().Unique, sk.Stats().DuplicatedIDs, total)
	}
}

func TestRoundRobinServesQuietDomainsFirst(t *testing.T) {
	h := newHarness(t, func(c *tasks.EngineConfig) { c.Worker.Concurrency = 4 })
	sk := repeatertest.NewServer(t, repeatertest.Config{Delay: 2 * time.Millisecond})
	var busy []*store.Repeater
	for i := range 10 {
		busy = append(busy, h.repeater("A", sk.URL(fmt.Sprintf("/A/%d", i))))
	}
	for _, r := range busy {
		h.load(r, 500)
	}
	quietB := h.repeater("B", sk.URL("/B"))
	quietC := h.repeater("C", sk.URL("/C"))
	h.load(quietB, 10)
	h.load(quietC, 10)
	h.start("dispatcher", "worker")
	h.waitFor("quiet domains delivered", 30*time.Second, func() bool {
		return sk.Count("/B") >= 10 && sk.Count("/C") >= 10
	})
	doneA := h.countSQL(`SELECT count(*) FROM repeat_records WHERE domain = 'A' AND state = 4`)
	t.Logf("when B and C were done, A had %d of 5000 delivered", doneA)
	if doneA >= 2500 {
		t.Fatalf("A delivered %d of 5000 before the quiet domains finished", doneA)
	}
}

func TestConcurrencyCapHoldsAcrossTwoWorkerProcesses(t *testing.T) {
	h := newHarness(t)
	sk := repeatertest.NewServer(t, repeatertest.Config{Delay: 15 * time.Millisecond})
	rep := h.repeater("d", sk.URL("/capped"), func(r *store.Repeater) { r.MaxWorkers = 3 })
	h.load(rep, 300)
	h.spawn("worker")
	h.spawn("worker")
	h.start("dispatcher")
	h.waitFor("delivered", 60*time.Second, func() bool { return sk.Count("/capped") >= 300 })
	peak := sk.Peak("/capped")
	if peak > 3 || peak < 2 {
		t.Fatalf("peak concurrency %d, want 2..3 (max_workers 3)", peak)
	}
}

func TestRateLimitIsHeldAtTheSink(t *testing.T) {
	h := newHarness(t)
	sk := repeatertest.NewServer(t, repeatertest.Config{})
	rep := h.repeater("d", sk.URL("/limited"), func(r *store.Repeater) { r.RateLimitPerS, r.RateBurst = 20, 5 })
	h.load(rep, 400)
	h.start("dispatcher", "worker")
	h.waitFor("first delivery", 10*time.Second, func() bool { return sk.Count("/limited") > 0 })
	first := sk.Times("/limited")[0]
	time.Sleep(5 * time.Second) // the measurement window itself: a rate is what arrives in a fixed time
	n := 0
	for _, at := range sk.Times("/limited") {
		if at.Sub(first) < 5*time.Second {
			n++
		}
	}
	t.Logf("%d requests in 5s at 20/s, burst 5", n)
	// Tokens are taken at dispatch, a moment before the first arrival that
	// opens the window: one more token may refill in that moment.
	if limit := 20*5 + 5 + 1; n > limit || n < 60 {
		t.Fatalf("%d requests in 5s; want at most %d (and the limiter should not starve it)", n, limit)
	}
}

func deadAddress(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/dead"
}

func TestDeadEndpointCostsOneProbePerBackoffWindow(t *testing.T) {
	h := newHarness(t, func(c *tasks.EngineConfig) {
		c.Backoff.Min, c.Backoff.Max = 1500*time.Millisecond, 1500*time.Millisecond
	})
	sk := repeatertest.NewServer(t, repeatertest.Config{})
	dead := h.repeater("d", deadAddress(t), func(r *store.Repeater) { r.MaxAttempts = 2 })
	healthy := h.repeater("d", sk.URL("/healthy"))
	deadIDs := h.load(dead, 100)
	h.load(healthy, 100)
	type deadBatch struct {
		at  time.Time
		sum store.BatchSummary
	}
	onDeadBatch, deadBatches := signalInto[deadBatch]()
	h.eng.Processor.OnRecorded = func(b repeaters.Batch, sum store.BatchSummary) {
		if b.RepeaterID == dead.ID {
			onDeadBatch(deadBatch{time.Now(), sum})
		}
	}
	h.start("dispatcher", "worker")
	attempts := func() int {
		return h.countSQL(`SELECT count(*) FROM repeat_record_attempts a JOIN repeat_records r ON r.id = a.record_id WHERE r.repeater_id = $1`, dead.ID)
	}
	first := awaitEvent(t, deadBatches, "first batch on the dead endpoint", 10*time.Second)
	firstBatch := first.sum.Attempted
	h.waitFor("healthy repeater delivered", 20*time.Second, func() bool { return sk.Count("/healthy") >= 100 })
	if firstBatch > 7 {
		t.Fatalf("first batch on a dead endpoint made %d requests; want one wave (≤ 7)", firstBatch)
	}
	// The next two batches, each a backoff window (1.5s) after the last.
	window := h.cfg.Backoff.Min - time.Duration(float64(h.cfg.Backoff.Min)*h.cfg.Backoff.Jitter)
	for prev, i := first, 0; i < 2; i++ {
		probe := awaitEvent(t, deadBatches, "a probe on the dead endpoint", 10*time.Second)
		if gap := probe.at.Sub(prev.at); probe.sum.Attempted != 1 || gap < window {
			t.Fatalf("batch %d after the first: %d requests, %s after the one before; want one probe per backoff window (%s)",
				i+1, probe.sum.Attempted, gap, window)
		}
		prev = probe
	}
	later := attempts()
	t.Logf("dead endpoint: %d attempts in the first batch, %d after two probes (two 1.5s windows)", firstBatch, later)
	if later > firstBatch+3 {
		t.Fatalf("%d requests after the first batch in ~2 backoff windows; want at most one probe each", later-firstBatch)
	}
	var rec store.RepeatRecord
	h.waitFor("a record cancelled after max_attempts", 20*time.Second, func() bool {
		r, _, _ := h.eng.Store.GetRecord(ctx, deadIDs[0])
		rec = *r
		return r.State == store.StateCancelled
	})
	if rec.AttemptCount != 2 {
		t.Fatalf("cancelled after %d attempts, want 2", rec.AttemptCount)
	}
	if n := h.countSQL(`SELECT count(*) FROM repeat_records WHERE repeater_id = $1 AND state IN (1, 2)`, dead.ID); n < 90 {
		t.Fatalf("only %d dead-endpoint records still waiting; backoff should keep most unsent", n)
	}
}

func TestRetryAfterDelaysTheNextBatch(t *testing.T) {
	h := newHarness(t, func(c *tasks.EngineConfig) { c.Backoff.Min = 200 * time.Millisecond })
	sk := repeatertest.NewServer(t, repeatertest.Config{Respond: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusTooManyRequests)
	}})
	rep := h.repeater("d", sk.URL("/throttled"))
	h.load(rep, 20)
	h.start("dispatcher", "worker")
	h.waitFor("two batches", 15*time.Second, func() bool {
		return h.countSQL(`SELECT count(DISTINCT date_trunc('second', created_at)) FROM repeat_record_attempts`) >= 2
	})
	times := sk.Times("/throttled")
	var gap time.Duration
	for i := 1; i < len(times); i++ {
		gap = max(gap, times[i].Sub(times[i-1]))
	}
	if gap < 3*time.Second {
		t.Fatalf("largest gap between requests %s; Retry-After: 3 should hold the next batch ≥ 3s", gap)
	}
}

func TestReceiverVerifiesSignature(t *testing.T) {
	h := newHarness(t)
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	sk := repeatertest.NewServer(t, repeatertest.Config{Secret: secret})
	rep := h.repeater("d", sk.URL("/signed"), func(r *store.Repeater) { r.SigningSecret = secret })
	h.load(rep, 20)
	h.start("dispatcher", "worker")
	h.waitFor("delivered", 15*time.Second, func() bool { return sk.Count("/signed") >= 20 })
	if bad := sk.Stats().BadSignatures; bad != 0 {
		t.Fatalf("%d of 20 signatures failed verification", bad)
	}
}

func TestPrivateTargetsAreRefused(t *testing.T) {
	h := newHarness(t, func(c *tasks.EngineConfig) { c.Sender.AllowPrivateTargets = false })
	sk := repeatertest.NewServer(t, repeatertest.Config{})
	port := sk.Port()
	targets := []string{
		fmt.Sprintf("http://127.0.0.1:%d/", port),
		"http://169.254.169.254/latest/meta-data",
		fmt.Sprintf("http://[::1]:%d/", port),
		fmt.Sprintf("http://localhost:%d/", port),
	}
	var ids []int64
	for _, u := range targets {
		ids = append(ids, h.load(h.repeater("d", u, func(r *store.Repeater) { r.MaxAttempts = 1 }), 1)...)
	}
	h.start("dispatcher", "worker")
	for i, id := range ids {
		var attempts []store.Attempt
		h.waitFor("attempt on "+targets[i], 15*time.Second, func() bool {
			_, attempts, _ = h.eng.Store.GetRecord(ctx, id)
			return len(attempts) > 0
		})
		if !strings.Contains(attempts[0].Message, "REPEATERD_ALLOW_PRIVATE_TARGETS") {
			t.Errorf("%s: attempt message %q does not explain the refusal", targets[i], attempts[0].Message)
		}
	}
	if n := sk.Stats().Requests; n != 0 {
		t.Fatalf("the sink received %d requests through the SSRF guard", n)
	}
}

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
	a, b := h.spawn("dispatcher"), h.spawn("dispatcher")
	h.waitFor("a leader", 10*time.Second, func() bool { return a.isLeading() || b.isLeading() })
	leader, standby := a, b
	if b.isLeading() {
		leader, standby = b, a
	}
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
	needsUpdate, err := h.eng.Processor.ProcessBatch(ctx, b)
	if err != nil || !needsUpdate {
		t.Fatalf("retry: %v, needsUpdate=%v", err, needsUpdate)
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
