package repeaters

import (
	"context"
	"testing"
	"time"

	"repeaterd/store/storetest"
)

// A pass takes a repeater whose work ended out of the work set, leaves the
// one with work in it, and a new record puts the first back: it is
// dispatched on the next pass.
func TestDispatcherPrunesRepeatersWhoseWorkEnded(t *testing.T) {
	e := newEngineEnv(t)
	names, byName := e.readyRepeaters(t, "a1", "b1")
	e.startClock()
	if _, err := e.st.Pool().Exec(context.Background(), `UPDATE repeat_records SET state = 4 WHERE repeater_id = $1`, byName["a1"].ID); err != nil {
		t.Fatal(err)
	}
	inSet := func() int {
		return storetest.Count(t, e.st, `SELECT count(*) FROM repeater_work WHERE repeater_id = $1`, byName["a1"].ID)
	}
	if inSet() != 1 {
		t.Fatal("a1 should still be in the work set before a pass")
	}
	d := e.newDispatcher(DispatcherConfig{DomainMaxInFlight: 10}, &fakeEnqueuer{})
	if got := batchNames(runPass(t, d).Batches, names); got != "[b1]" {
		t.Fatalf("first pass dispatched %s, want [b1]", got)
	}
	if inSet() != 0 {
		t.Fatal("a1, without ready records, is still in the work set after a pass")
	}
	if n := storetest.Count(t, e.st, `SELECT count(*) FROM repeater_work WHERE repeater_id = $1`, byName["b1"].ID); n != 1 {
		t.Fatal("b1, with a record in flight, left the work set")
	}
	storetest.Records(t, e.st, byName["a1"], 1)
	e.clock.Set(time.Now().Add(time.Millisecond)) // the record is due
	if got := batchNames(runPass(t, d).Batches, names); got != "[a1]" {
		t.Fatalf("second pass dispatched %s, want [a1] (b1 is in flight)", got)
	}
}
