package tasks_test

import (
	"fmt"
	"net"
	"net/http"
	"strings"
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
	onDeadVerdict, deadVerdicts := signalInto[store.BatchDecision]()
	h.eng.Processor.OnApplied = func(id int64, d store.BatchDecision) {
		if id == dead.ID {
			onDeadVerdict(d)
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
	// The next two batches: one request each, none before the window the
	// batch before it set (1.5 s, less jitter) was over.
	window := h.cfg.Backoff.Min - time.Duration(float64(h.cfg.Backoff.Min)*h.cfg.Backoff.Jitter)
	verdict := awaitEvent(t, deadVerdicts, "the first batch's verdict", 10*time.Second)
	for prev, i := first, 0; i < 2; i++ {
		probe := awaitEvent(t, deadBatches, "a probe on the dead endpoint", 10*time.Second)
		var sentAt time.Time
		if err := h.eng.Store.Pool().QueryRow(ctx, `SELECT max(a.created_at) FROM repeat_record_attempts a
			JOIN repeat_records r ON r.id = a.record_id WHERE r.repeater_id = $1`, dead.ID).Scan(&sentAt); err != nil {
			t.Fatal(err)
		}
		if verdict.NextAttemptAt == nil || verdict.NextAttemptAt.Sub(prev.at) < window-time.Second/10 {
			t.Fatalf("batch %d: the verdict before it set no backoff window: %+v", i, verdict)
		}
		if probe.sum.Attempted != 1 || sentAt.Before(verdict.NextAttemptAt.Truncate(time.Microsecond)) {
			t.Fatalf("batch %d after the first: %d requests, sent %s before its backoff window ended; want one probe per window",
				i+1, probe.sum.Attempted, verdict.NextAttemptAt.Sub(sentAt))
		}
		t.Logf("probe %d: %s after the batch before it", i+1, probe.at.Sub(prev.at))
		prev = probe
		verdict = awaitEvent(t, deadVerdicts, "the probe's verdict", 10*time.Second)
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
