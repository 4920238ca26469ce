package tasks_test

import (
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"repeaterd/repeaters"
	"repeaterd/repeaters/repeatertest"
	"repeaterd/store"
	"repeaterd/tasks"
	"repeaterd/tasks/internal/chaostest"
)

// TestEngineOnRedisCluster runs every engine role on a three-node Redis
// Cluster through a redis+cluster:// REDIS_URL: asynq's queues, the leader
// lease, the repeater locks (their scripts and the one-round-trip lock
// check span hash slots) and the wake-up pub/sub all have to work there.
func TestEngineOnRedisCluster(t *testing.T) {
	cluster := chaostest.StartCluster(t, 3)
	h := newHarness(t, func(c *tasks.EngineConfig) { c.RedisURL = cluster.URL() })
	if kind := h.eng.RedisOptions().Kind(); kind != tasks.RedisCluster {
		t.Fatalf("REDIS_URL %s parsed as %s", cluster.URL(), kind)
	}
	sk := repeatertest.NewServer(t, repeatertest.Config{})
	if err := h.eng.Store.SetDomainFlag(ctx, "old", store.FlagProcessRepeaters, false); err != nil {
		t.Fatal(err)
	}
	var reps []*store.Repeater
	total := 0
	for _, d := range []string{"a", "b", "c", "old"} {
		r := h.repeater(d, sk.URL("/"+d))
		reps = append(reps, r)
		total += len(h.load(r, 100))
	}

	// Locks on keys in different slots: checked in one round trip, and a
	// release wakes the dispatcher (its script publishes on the channel).
	ids := []int64{reps[0].ID, reps[1].ID, reps[2].ID}
	token, ok, err := h.eng.Locker.Acquire(ctx, ids[1])
	if err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	if held, err := h.eng.Locker.Locked(ctx, ids); err != nil || !slices.Equal(held, []bool{false, true, false}) {
		t.Fatalf("Locked = %v, %v; want [false true false]", held, err)
	}
	sub := h.eng.Redis.Subscribe(ctx, repeaters.WakeChannel)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if released, err := h.eng.Locker.Release(ctx, ids[1], token); err != nil || !released {
		t.Fatalf("release: %v %v", released, err)
	}
	awaitEvent(t, sub.Channel(), "the release's wake-up", 5*time.Second)

	h.start("dispatcher", "worker", "scheduler")
	h.waitFor("every record delivered on the cluster", 60*time.Second, func() bool {
		return h.countSQL(`SELECT count(*) FROM repeat_records WHERE state = 4`) == total
	})
	if s := sk.Stats(); s.Unique != total || s.DuplicatedIDs != 0 {
		t.Fatalf("sink saw %d ids, %d duplicated; want %d, 0", s.Unique, s.DuplicatedIDs, total)
	}
	insp := asynq.NewInspector(h.eng.RedisOptions()) // as asynqmon and /metrics open it
	defer insp.Close()
	queues, err := insp.Queues()
	if err != nil || !slices.Contains(queues, tasks.QueueRepeaters) || !slices.Contains(queues, tasks.QueueLegacy) {
		t.Fatalf("inspector queues %v, %v", queues, err)
	}
}
