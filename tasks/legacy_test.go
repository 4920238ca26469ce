package tasks_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"repeaterd/repeaters"
	"repeaterd/repeaters/repeatertest"
	"repeaterd/store"
	"repeaterd/tasks"
)

func TestLegacyAndNewPathBothDeliverWithDifferentTaskShapes(t *testing.T) {
	h := newHarness(t)
	sk := repeatertest.NewServer(t, repeatertest.Config{})
	if err := h.eng.Store.SetDomainFlag(ctx, "old", store.FlagProcessRepeaters, false); err != nil {
		t.Fatal(err)
	}
	const n = 300
	h.load(h.repeater("old", sk.URL("/old")), n)
	h.load(h.repeater("new", sk.URL("/new")), n)
	h.start("dispatcher", "worker", "scheduler")
	h.waitFor("both paths delivered", 60*time.Second, func() bool {
		return h.countSQL(`SELECT count(*) FROM repeat_records WHERE state = 4`) == 2*n
	})
	if sk.Stats().DuplicatedIDs != 0 || sk.Stats().Unique != 2*n {
		t.Fatalf("sink saw %d ids (%d duplicated), want %d once each", sk.Stats().Unique, sk.Stats().DuplicatedIDs, 2*n)
	}
	insp := asynq.NewInspectorFromRedisClient(h.eng.Redis)
	processed := func(queue string) int {
		var info *asynq.QueueInfo
		h.waitFor("queue "+queue+" drained", 10*time.Second, func() bool {
			var err error
			info, err = insp.GetQueueInfo(queue)
			return err == nil && info.Active == 0 && info.Pending == 0
		})
		return info.ProcessedTotal
	}
	legacy, batches := processed(tasks.QueueLegacy), processed(tasks.QueueRepeaters)
	t.Logf("%d records each: legacy ran %d send tasks, the new path %d batches", n, legacy, batches)
	if legacy < n {
		t.Fatalf("legacy path ran %d tasks for %d records; it makes one per record", legacy, n)
	}
	if batches > n/10 {
		t.Fatalf("new path ran %d tasks for %d records; it makes one per batch", batches, n)
	}
}

func TestFlippingTheFlagUnderLoadDeliversExactlyOnce(t *testing.T) {
	h := newHarness(t)
	sk := repeatertest.NewServer(t, repeatertest.Config{Delay: time.Millisecond})
	var reps []*store.Repeater
	for i := range 4 {
		reps = append(reps, h.repeater("flip", sk.URL(fmt.Sprintf("/flip/%d", i))))
	}
	var legacySends, newBatches atomic.Int32
	h.eng.Legacy.OnSent = func(store.Outcome) { legacySends.Add(1) }
	h.eng.Processor.OnRecorded = func(repeaters.Batch, store.BatchSummary) { newBatches.Add(1) }
	h.start("dispatcher", "worker", "scheduler")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(2)
	registered := 0
	go func() { // load: records keep arriving
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			h.load(reps[i%len(reps)], 5)
			registered += 5
			time.Sleep(5 * time.Millisecond) // paces the load: a steady trickle of records, not a flood
		}
	}()
	var flips atomic.Int32
	go func() { // the toggle, flipped both ways while batches and sends are in flight
		defer wg.Done()
		for on := false; ; on = !on {
			select {
			case <-stop:
				return
			case <-time.After(150 * time.Millisecond):
			}
			if err := h.eng.Store.SetDomainFlag(ctx, "flip", store.FlagProcessRepeaters, on); err != nil {
				t.Error(err)
				return
			}
			flips.Add(1)
		}
	}()
	// Flips go on until each path has delivered a few times under them, and
	// at least twenty times (about 3s): the window of flips is the test.
	h.waitFor("both paths delivering through twenty flips", 30*time.Second, func() bool {
		return flips.Load() >= 20 && legacySends.Load() >= 10 && newBatches.Load() >= 3
	})
	close(stop)
	wg.Wait()
	h.waitFor("every record terminal", 60*time.Second, func() bool {
		return h.countSQL(`SELECT count(*) FROM repeat_records WHERE state IN (1, 2)`) == 0
	})
	t.Logf("%d records, %d flips, %d delivered", registered, flips.Load(), sk.Stats().Unique)
	if n := h.countSQL(`SELECT count(*) FROM repeat_records WHERE state <> 4`); n != 0 {
		t.Fatalf("%d records ended in a state other than Success", n)
	}
	if sk.Stats().Unique != registered || sk.Stats().DuplicatedIDs != 0 {
		t.Fatalf("sink saw %d ids, %d of them twice; want %d exactly once", sk.Stats().Unique, sk.Stats().DuplicatedIDs, registered)
	}
	insp := asynq.NewInspectorFromRedisClient(h.eng.Redis)
	for _, q := range []string{tasks.QueueLegacy, tasks.QueueRepeaters} {
		info, err := insp.GetQueueInfo(q)
		if err != nil || info.ProcessedTotal == 0 {
			t.Fatalf("queue %s ran no task during the flips (%v): both paths must have delivered", q, err)
		}
		t.Logf("queue %s: %d tasks", q, info.ProcessedTotal)
	}
}
