package tasks_test

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"repeaterd/repeaters/repeatertest"
	"repeaterd/store"
	"repeaterd/tasks"
	"repeaterd/tasks/internal/chaostest"
)

// sentinelTimings make a failover take seconds: the master is deemed down
// after 1 s of silence (production's default is 30 s).
var sentinelTimings = chaostest.SentinelTimings{DownAfter: time.Second, FailoverTimeout: 3 * time.Second}

// TestDrillSentinelFailover: a master, a replica and three Sentinels on
// private loopback ports; the engine (a dispatcher+worker process and a
// second worker) reaches them through a redis+sentinel:// URL. Under load
// the master is killed with SIGKILL; the Sentinels promote the replica and
// the engine follows. Every record ends delivered, none was being sent
// twice at once, and deliveries resume within seconds. The long form
// (REPEATERD_CHAOS=1) fails over three times, restarting each killed master
// so that it rejoins as the new master's replica.
func TestDrillSentinelFailover(t *testing.T) {
	master := chaostest.StartRedis(t)
	replica := chaostest.StartRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	sentinels := chaostest.StartSentinels(t, "repeaterd", master, 3, 2, sentinelTimings)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(sentinels.LogTails())
		}
	})
	sentinels.WaitReady(1, 30*time.Second)
	servers := []*chaostest.Redis{master, replica}

	h := newHarness(t, func(c *tasks.EngineConfig) { c.RedisURL = sentinels.URL(0) })
	if kind := h.eng.RedisOptions().Kind(); kind != tasks.RedisSentinel {
		t.Fatalf("REDIS_URL %s parsed as %s", sentinels.URL(0), kind)
	}
	sk := repeatertest.NewServer(t, repeatertest.Config{Delay: 5 * time.Millisecond})
	reps := []*store.Repeater{h.repeater("a", sk.URL("/a")), h.repeater("b", sk.URL("/b"))}
	h.spawn("dispatcher,worker")
	h.spawn("worker")
	load := startLoad(h, reps...)
	deliveringAfter(h, 0, len(reps), 10*time.Second)

	rounds := 1
	if chaos() {
		rounds = 3
	}
	for round := range rounds {
		addr, err := sentinels.MasterAddr(ctx)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(servers, func(r *chaostest.Redis) bool { return r.Addr() == addr })
		if i < 0 {
			t.Fatalf("the Sentinels name %s as master, none of ours", addr)
		}
		switched := sentinels.WatchSwitch()
		before := lastID(h)
		killed := time.Now()
		servers[i].Kill()
		promoted := awaitEvent(t, switched, "the Sentinels' promotion", 30*time.Second)
		promotedAfter := time.Since(killed)
		deliveringAfter(h, before, len(reps), 20*time.Second)
		first, gap := resumption(h, sk, before, killed)
		t.Logf("failover %d: master %s killed; %s promoted after %s; first record registered after the kill delivered %s after it; "+
			"longest pause in deliveries %s", round+1, addr, promoted, promotedAfter.Round(time.Millisecond),
			first.Round(time.Millisecond), gap.Round(time.Millisecond))
		if first > 15*time.Second {
			t.Errorf("deliveries resumed %s after the master died, want seconds", first)
		}
		if round+1 < rounds {
			servers[i].Restart() // empty, as after a crash; the Sentinels make it a replica
			sentinels.WaitReady(1, 30*time.Second)
		}
	}
	registered := load.finish()
	assertNothingLost(h, sk, registered, rounds*len(reps)*50) // at most the batches in flight at each failover
	if s := sk.Stats(); s.Overlaps != 0 {
		t.Fatalf("%d deliveries overlapped another of the same webhook-id: a record was sent twice at once", s.Overlaps)
	}
}

// resumption measures a failover from the receiver's side: how long after
// killed the first record registered after before (that is, after the
// kill) arrived, and the longest pause between two arrivals since killed.
func resumption(h *harness, sk *repeatertest.Server, before int, killed time.Time) (first, gap time.Duration) {
	h.t.Helper()
	rows, err := h.eng.Store.Pool().Query(ctx, `SELECT id FROM repeat_records WHERE id > $1`, before)
	if err != nil {
		h.t.Fatal(err)
	}
	var ids []string
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			h.t.Fatal(err)
		}
		ids = append(ids, fmt.Sprintf("msg_%d", id))
	}
	if err := rows.Err(); err != nil {
		h.t.Fatal(err)
	}
	earliest := time.Time{}
	for _, at := range sk.Lookup(ids) {
		if earliest.IsZero() || at.Before(earliest) {
			earliest = at
		}
	}
	times := append(sk.Times("/a"), sk.Times("/b")...)
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	prev := killed
	for _, at := range times {
		if at.Before(killed) {
			continue
		}
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	return earliest.Sub(killed), gap
}
