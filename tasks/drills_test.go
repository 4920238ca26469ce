package tasks_test

import (
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"repeaterd/repeaters/repeatertest"
	"repeaterd/store"
	"repeaterd/tasks"
	"repeaterd/tasks/internal/chaostest"
)

// Drills run the system under a steady load and break something mid-run.
// `make test` runs them short; `make chaos` (REPEATERD_CHAOS=1) runs them long.
func chaos() bool { return os.Getenv("REPEATERD_CHAOS") != "" }

func drillLength(short, long time.Duration) time.Duration {
	if chaos() {
		return long
	}
	return short
}

// steadyLoad registers records on every repeater until stop is closed, as
// a careful client does: two records a call, each with an idempotency key,
// and a call that failed is retried with the same keys until it succeeds.
// A failed call may still have committed (an outage can cut the answer
// after the commit); the retry then finds the records instead of writing
// them again, so total counts every record stored, once.
type steadyLoad struct {
	h     *harness
	reps  []*store.Repeater
	stop  chan struct{}
	done  sync.WaitGroup
	total atomic.Int64
}

// loadRetryFor bounds how long the load retries a failed call after stop
// (the drills stop it once the system is back).
const loadRetryFor = 30 * time.Second

func startLoad(h *harness, reps ...*store.Repeater) *steadyLoad {
	l := &steadyLoad{h: h, reps: reps, stop: make(chan struct{})}
	l.done.Add(1)
	go func() {
		defer l.done.Done()
		var stoppedAt time.Time
		for n, pending := 0, false; ; {
			time.Sleep(10 * time.Millisecond)
			if stoppedAt.IsZero() {
				select {
				case <-l.stop:
					stoppedAt = time.Now()
				default:
				}
			}
			if !stoppedAt.IsZero() && (!pending || time.Since(stoppedAt) > loadRetryFor) {
				return // stopped, with nothing pending (or given up on)
			}
			if l.register(reps[n%len(reps)], n) {
				n, pending = n+1, false
			} else {
				pending = true // retried with the same keys
			}
		}
	}()
	return l
}

// register stores call n's two records on r, keyed by n; false when the
// call failed (the client's to retry).
func (l *steadyLoad) register(r *store.Repeater, n int) bool {
	items := make([]store.BatchItem, 2)
	for j := range items {
		items[j] = store.BatchItem{RepeaterID: r.ID, IdempotencyKey: fmt.Sprintf("load-%d-%d", n, j),
			Body: []byte(fmt.Sprintf(`{"i":%d,"b":%d}`, n, j))}
	}
	if _, err := l.h.eng.Store.RegisterBatch(ctx, items, func(string) bool { return true }); err != nil {
		return false
	}
	l.total.Add(2)
	return true
}

// lastID is the newest record's id: what is registered after it came later.
func lastID(h *harness) int {
	return h.countSQL(`SELECT coalesce(max(id), 0) FROM repeat_records`)
}

// steadyDeliveries is how many records of each domain a drill sees
// delivered before it calls the load steady, or the system recovered.
const steadyDeliveries = 50

// deliveringAfter waits, with the load on, until steadyDeliveries records
// registered after the record since are delivered in each of domains.
// Before a break (since 0) that makes the break land mid-flight; after one
// (since = lastID at the break) it means the system is back. It reads
// through a pool that may be cut off meanwhile, so a failed count is only
// "not yet". A chaos run then soaks for the long window: there, the time
// under load is the point.
func deliveringAfter(h *harness, since, domains int, soak time.Duration) {
	h.t.Helper()
	h.waitFor(fmt.Sprintf("%d deliveries in each domain after record %d", steadyDeliveries, since), 60*time.Second, func() bool {
		var n int
		err := h.eng.Store.Pool().QueryRow(ctx, `SELECT count(*) FROM (SELECT domain FROM repeat_records
			WHERE id > $1 AND state = 4 GROUP BY domain HAVING count(*) >= $2) d`, since, steadyDeliveries).Scan(&n)
		return err == nil && n == domains
	})
	if chaos() {
		time.Sleep(soak)
	}
}

func (l *steadyLoad) finish() int {
	close(l.stop)
	l.done.Wait()
	return int(l.total.Load())
}

// assertNothingLost: every record terminal and a Success, each received at
// least once, duplicates bounded (a duplicate is by construction the same
// webhook-id: the sink counts ids).
func assertNothingLost(h *harness, sk *repeatertest.Server, registered, maxDuplicates int) {
	h.t.Helper()
	h.waitFor("every record delivered", 90*time.Second, func() bool {
		return h.countSQL(`SELECT count(*) FROM repeat_records WHERE state = 4`) == registered
	})
	if n := h.countSQL(`SELECT count(*) FROM repeat_records`); n != registered {
		h.t.Fatalf("%d records in the database, %d registered", n, registered)
	}
	distinct := sk.Stats().Unique
	if distinct != registered {
		h.t.Fatalf("sink received %d distinct ids for %d records", distinct, registered)
	}
	if d := sk.Stats().DuplicatedIDs; d > maxDuplicates {
		h.t.Fatalf("%d ids delivered more than once (bound %d)", d, maxDuplicates)
	}
	h.t.Logf("%d records delivered, %d duplicates", registered, sk.Stats().DuplicatedIDs)
}

func TestDrillWorkerKilledRepeatedly(t *testing.T) {
	h := newHarness(t)
	sk := repeatertest.NewServer(t, repeatertest.Config{Delay: 5 * time.Millisecond})
	reps := []*store.Repeater{h.repeater("a", sk.URL("/a")), h.repeater("b", sk.URL("/b"))}
	h.start("dispatcher")
	load := startLoad(h, reps...)
	for range 5 {
		w := h.spawn("worker")
		before := len(sk.Times("/a")) + len(sk.Times("/b"))
		h.waitFor("deliveries under this worker", 20*time.Second, func() bool {
			return len(sk.Times("/a"))+len(sk.Times("/b")) > before+20
		})
		w.kill()
	}
	h.spawn("worker")
	assertNothingLost(h, sk, load.finish(), 5*2*50) // at most the batches in flight at each kill
}

func TestDrillRedisLosesEverything(t *testing.T) {
	h := newHarness(t, func(c *tasks.EngineConfig) { c.Legacy.Claim = 2 * time.Second })
	sk := repeatertest.NewServer(t, repeatertest.Config{})
	if err := h.eng.Store.SetDomainFlag(ctx, "old", store.FlagProcessRepeaters, false); err != nil {
		t.Fatal(err)
	}
	reps := []*store.Repeater{h.repeater("new", sk.URL("/new")), h.repeater("old", sk.URL("/old"))}
	h.start("dispatcher", "worker", "scheduler")
	load := startLoad(h, reps...)
	deliveringAfter(h, 0, len(reps), 10*time.Second)
	// Every task, lock, lease and uniqueness key vanishes (this test's DB only).
	before := lastID(h)
	if err := h.eng.Redis.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	lost := time.Now()
	deliveringAfter(h, before, len(reps), 10*time.Second)
	registered := load.finish()
	assertNothingLost(h, sk, registered, registered)
	t.Logf("recovered and drained %s after Redis lost everything (reconcile: lock TTL 2s, legacy claim 2s)", time.Since(lost))
}

func TestDrillPostgresRestart(t *testing.T) {
	var proxy *chaostest.Proxy
	h := newHarness(t, func(c *tasks.EngineConfig) {
		proxy = chaostest.NewProxy(t, "127.0.0.1:0", chaostest.TargetOf(c.DatabaseURL))
		c.DatabaseURL = proxy.URL(c.DatabaseURL)
	})
	sk := repeatertest.NewServer(t, repeatertest.Config{})
	reps := []*store.Repeater{h.repeater("a", sk.URL("/a")), h.repeater("b", sk.URL("/b"))}
	h.start("dispatcher", "worker", "scheduler")
	load := startLoad(h, reps...) // registers through the proxy too: refused while down
	deliveringAfter(h, 0, len(reps), 5*time.Second)
	before := lastID(h)
	proxy.Cut(drillLength(3*time.Second, 20*time.Second))
	restarted := time.Now()
	// Records registered after the cut can only be once Postgres is back, so
	// this wait spans the whole outage.
	deliveringAfter(h, before, len(reps), 10*time.Second)
	registered := load.finish()
	assertNothingLost(h, sk, registered, registered/10)
	t.Logf("drained %s after Postgres went away for %s", time.Since(restarted), drillLength(3*time.Second, 20*time.Second))
	if n := h.countSQL(`SELECT count(*) FROM (SELECT record_id FROM repeat_record_attempts WHERE state = 4 GROUP BY 1 HAVING count(*) > 1) x`); n != 0 {
		t.Fatalf("%d records have two success attempts: double-recorded", n)
	}
}

func TestDrillEndpointFlaps(t *testing.T) {
	h := newHarness(t, func(c *tasks.EngineConfig) { c.Backoff.Min, c.Backoff.Max = 500*time.Millisecond, 2*time.Second })
	flapUntil := time.Now().Add(drillLength(3*time.Second, 30*time.Second))
	sk := repeatertest.NewServer(t, repeatertest.Config{Respond: func(w http.ResponseWriter, r *http.Request) {
		if time.Now().Before(flapUntil) {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}})
	rep := h.repeater("d", sk.URL("/flap"), func(r *store.Repeater) { r.MaxAttempts = 100 })
	h.start("dispatcher", "worker")
	load := startLoad(h, rep)
	// The flap is a window of time; the load runs through all of it.
	time.Sleep(time.Until(flapUntil))
	deliveringAfter(h, lastID(h), 1, 0)
	registered := load.finish()
	h.waitFor("every record delivered", 60*time.Second, func() bool {
		return h.countSQL(`SELECT count(*) FROM repeat_records WHERE state = 4`) == registered
	})
	got, _ := h.eng.Store.GetRepeater(ctx, rep.ID)
	if got.BackoffCount != 0 || got.NextAttemptAt != nil {
		t.Fatalf("the repeater did not recover: backoff_count %d", got.BackoffCount)
	}
	failed := h.countSQL(`SELECT count(*) FROM repeat_record_attempts WHERE state = 2`)
	t.Logf("%d records delivered after the flap; %d failed attempts while it lasted", registered, failed)
}

func TestDrillSlowEndpointDoesNotSlowOthers(t *testing.T) {
	h := newHarness(t)
	slowFor := drillLength(3*time.Second, 10*time.Second)
	sk := repeatertest.NewServer(t, repeatertest.Config{Respond: func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(slowFor)
		}
	}})
	slow := h.repeater("s", sk.URL("/slow"), func(r *store.Repeater) { r.TimeoutMS = 500 })
	fast := h.repeater("f", sk.URL("/fast"))
	h.load(slow, 50)
	h.load(fast, 1000)
	h.start("dispatcher", "worker")
	start := time.Now()
	h.waitFor("the fast repeater delivered", 30*time.Second, func() bool { return sk.Count("/fast") >= 1000 })
	took := time.Since(start)
	t.Logf("fast repeater: 1000 records in %s beside a 500ms-timeout endpoint", took)
	if took > slowFor {
		t.Fatalf("the fast repeater took %s: the slow endpoint held it up", took)
	}
	// The fast repeater can finish inside the first 500 ms, before any
	// timeout fires, so the slow one's failures are awaited, not sampled.
	h.waitFor("a timeout recorded as a failure", 10*time.Second, func() bool {
		return h.countSQL(`SELECT count(*) FROM repeat_record_attempts a JOIN repeat_records r ON r.id = a.record_id
		WHERE r.repeater_id = $1 AND a.state = 2 AND a.message ILIKE '%timeout%'`, slow.ID) > 0
	})
}
