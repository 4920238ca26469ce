package walstats

import (
	"context"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// A slot left behind while its consumer is down keeps the server's WAL;
// max_slot_wal_keep_size bounds that by invalidating the slot, which can
// then stream nothing again. The consumer must notice, recreate the slot
// and recount, not retry the dead slot forever. It needs a server of its
// own: the setting and the checkpoint reach every slot on a server.
func TestConsumerRecreatesALostSlot(t *testing.T) {
	e := newEnvOn(t, storetest.NewScratchDB(t, "max_slot_wal_keep_size = 16MB"), 2)
	ctx := context.Background()
	e.insert(t, e.repeaters[0], store.StatePending, 30)
	first := e.consumer(t, Config{})
	e.waitApplied(t, e.mark(t), 30*time.Second)
	e.assertExact(t)
	if err := first.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	// While nobody consumes: changes the counts must include, then more
	// WAL than the slot may keep, and a checkpoint that removes it.
	e.insert(t, e.repeaters[1], store.StateSuccess, 20)
	e.insert(t, e.repeaters[2], store.StatePending, 5)
	for range 4 {
		storetest.Exec(t, e.url, `SELECT pg_logical_emit_message(false, 'test', 'x'), pg_switch_wal()`)
	}
	storetest.Exec(t, e.url, `CHECKPOINT`)
	slot, err := e.st.GetReplicationSlot(ctx, e.slot)
	if err != nil {
		t.Fatal(err)
	}
	if !slot.Lost {
		t.Fatalf("the slot is not lost after the checkpoint; the test did not set up what it tests")
	}

	e.consumer(t, Config{})
	e.waitApplied(t, e.mark(t), 30*time.Second)
	e.assertExact(t)
	if slot, err := e.st.GetReplicationSlot(ctx, e.slot); err != nil || slot.Lost {
		t.Fatalf("slot after the restart: %+v, %v; want a new one", slot, err)
	}
}
