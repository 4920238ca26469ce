package tasks_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"repeaterd/repeaters"
	"repeaterd/repeaters/repeatertest"
	"repeaterd/store"
	"repeaterd/tasks"
)

// senders notes which process sent each webhook-id (by its User-Agent), so
// the invariants can excuse exactly the arrivals a killed worker never got
// to record.
type senders struct {
	mu sync.Mutex
	by map[string]map[string]int // webhook-id → user agent → arrivals
}

func (s *senders) note(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := r.Header.Get(repeaters.HeaderWebhookID)
	if s.by[id] == nil {
		s.by[id] = map[string]int{}
	}
	s.by[id][r.UserAgent()]++
}

// interleavingSeed is REPEATERD_SEED when set (to replay a failure), else
// a fresh one; it is logged either way.
func interleavingSeed(t *testing.T) uint64 {
	if v := os.Getenv("REPEATERD_SEED"); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("REPEATERD_SEED=%q: %v", v, err)
		}
		return seed
	}
	return uint64(time.Now().UnixNano())
}

// TestRandomInterleavingsKeepTheGuarantees runs both paths under random
// flag flips, requeues, cancels, lock expiries, Redis FLUSHDBs and worker
// kills (-9), against a receiver that answers slowly and sometimes fails;
// then, quiet, checks the invariants: every record terminal, no webhook-id
// ever sent by two senders at once, every arrival from a worker that was
// not killed has its attempt row, attempt_count equals the attempt rows, no
// Success without a success attempt. Replay a failure with
// REPEATERD_SEED=<seed>; REPEATERD_CHAOS=1 runs it longer.
func TestRandomInterleavingsKeepTheGuarantees(t *testing.T) {
	seed := interleavingSeed(t)
	t.Logf("seed %d (replay with REPEATERD_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	h := newHarness(t, func(c *tasks.EngineConfig) {
		c.LockTTL = time.Second
		c.Legacy.Claim = time.Second
		c.Scheduler.CheckInterval = 100 * time.Millisecond
	})
	from := &senders{by: map[string]map[string]int{}}
	var answerMu sync.Mutex
	answerRng := rand.New(rand.NewPCG(seed^0x9e37, seed))
	sk := repeatertest.NewServer(t, repeatertest.Config{Respond: func(w http.ResponseWriter, r *http.Request) {
		from.note(r)
		answerMu.Lock()
		delay, fail := time.Duration(answerRng.IntN(20))*time.Millisecond, answerRng.IntN(10) == 0
		answerMu.Unlock()
		select {
		case <-time.After(delay): // holds requests in flight, widening every race
		case <-r.Context().Done():
		}
		if fail {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}})
	domains := []string{"alpha", "beta"}
	var reps []*store.Repeater
	for i := range 6 {
		reps = append(reps, h.repeater(domains[i%2], sk.URL(fmt.Sprintf("/r%d", i)), func(r *store.Repeater) { r.MaxAttempts = 8 }))
	}
	h.start("dispatcher", "scheduler")
	h.cfg.Sender.Version = "stable" // the one worker never killed
	h.spawn("worker")

	killed := map[string]bool{}
	var victim *process
	spawnVictim := func() {
		h.cfg.Sender.Version = fmt.Sprintf("victim-%d", len(killed))
		killed["repeaterd/"+h.cfg.Sender.Version] = true
		victim = h.spawn("worker")
	}
	spawnVictim()

	var ids []int64
	steps := 60
	if chaos() {
		steps = 600
	}
	killAt := [2]int{5 + rng.IntN(20), 30 + rng.IntN(20)}
	flushAt := 10 + rng.IntN(40)
	counts := map[string]int{}
	for step := range steps {
		ids = append(ids, h.load(reps[rng.IntN(len(reps))], 1+rng.IntN(8))...)
		action := rng.IntN(10)
		switch {
		case action < 3:
			d := domains[rng.IntN(len(domains))]
			if err := h.eng.Store.SetDomainFlag(ctx, d, store.FlagProcessRepeaters, rng.IntN(2) == 0); err != nil {
				t.Fatal(err)
			}
			counts["flip"]++
		case action < 5:
			_, _ = h.eng.Store.RequeueRecord(ctx, ids[rng.IntN(len(ids))]) // a refusal (409) is fine
			counts["requeue"]++
		case action < 6:
			_, _ = h.eng.Store.CancelRecord(ctx, ids[rng.IntN(len(ids))])
			counts["cancel"]++
		case action < 7:
			keys, err := h.eng.Redis.Keys(ctx, "{repeaterd}:lock:*").Result()
			if err == nil && len(keys) > 0 {
				h.eng.Redis.Del(ctx, keys...) // every repeater lock lapses at once
			}
			counts["lock expiry"]++
		case action < 8 && chaos():
			flushRedis(t, h)
			counts["flushdb"]++
		case action < 9 && chaos():
			victim.kill()
			spawnVictim()
			counts["kill -9"]++
		}
		// The short form kills a worker twice and empties Redis once, at
		// random steps of their own.
		switch step {
		case killAt[0], killAt[1]:
			victim.kill()
			spawnVictim()
			counts["kill -9"]++
		case flushAt:
			flushRedis(t, h)
			counts["flushdb"]++
		}
		time.Sleep(time.Duration(50+rng.IntN(100)) * time.Millisecond) // paces the chaos: records and actions over a few seconds
	}
	t.Logf("%d records; actions %v", len(ids), counts)
	quiet := time.Now()
	h.waitFor("every record terminal", 120*time.Second, func() bool {
		return h.countSQL(`SELECT count(*) FROM repeat_records WHERE state IN (1, 2)`) == 0
	})
	t.Logf("drained %s after the chaos stopped", time.Since(quiet).Round(time.Millisecond))
	checkInvariants(t, h, sk, from, killed, len(ids))
}

// flushRedis empties this test's Redis DB: every task, lock, lease and
// uniqueness key is gone.
func flushRedis(t *testing.T, h *harness) {
	t.Helper()
	if err := h.eng.Redis.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
}

func checkInvariants(t *testing.T, h *harness, sk *repeatertest.Server, from *senders, killed map[string]bool, registered int) {
	t.Helper()
	if n := h.countSQL(`SELECT count(*) FROM repeat_records`); n != registered {
		t.Errorf("%d records stored, %d registered", n, registered)
	}
	if n := h.countSQL(`SELECT count(*) FROM repeat_records WHERE claim_owner IS NOT NULL OR requested_state IS NOT NULL`); n != 0 {
		t.Errorf("%d terminal records still claimed or with a request waiting", n)
	}
	if st := sk.Stats(); st.Overlaps != 0 {
		t.Errorf("%d deliveries arrived while the same webhook-id was in flight: two senders at once", st.Overlaps)
	}
	if n := h.countSQL(`SELECT count(*) FROM repeat_records r
		WHERE attempt_count <> (SELECT count(*) FROM repeat_record_attempts a WHERE a.record_id = r.id)`); n != 0 {
		t.Errorf("%d records whose attempt_count differs from their attempt rows", n)
	}
	if n := h.countSQL(`SELECT count(*) FROM repeat_records r WHERE state = 4 AND NOT EXISTS
		(SELECT 1 FROM repeat_record_attempts a WHERE a.record_id = r.id AND a.state = 4)`); n != 0 {
		t.Errorf("%d Success records without a success attempt", n)
	}
	unrecorded := 0
	from.mu.Lock()
	defer from.mu.Unlock()
	for id, byAgent := range from.by {
		recordID, err := strconv.ParseInt(strings.TrimPrefix(id, "msg_"), 10, 64)
		if err != nil {
			t.Fatalf("webhook-id %q", id)
		}
		stable := 0
		for agent, n := range byAgent {
			if !killed[agent] {
				stable += n
			}
		}
		if attempts := h.countSQL(`SELECT count(*) FROM repeat_record_attempts WHERE record_id = $1`, recordID); attempts < stable {
			unrecorded++
			t.Errorf("record %d arrived %d times from workers never killed (%v) but has %d attempt rows", recordID, stable, byAgent, attempts)
		}
	}
	t.Logf("receiver: %+v; %d webhook-ids; arrivals without an attempt only from killed workers", sk.Stats(), len(from.by))
}
