package walstats

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// A slot that falls behind keeps the server's WAL; max_slot_wal_keep_size
// bounds that by invalidating the slot, which can then stream nothing
// again. The consumer must notice, recreate the slot and recount, not retry
// the dead slot forever: after being stopped (the slot left inactive), and
// after stalling mid-batch while the server invalidates the slot under its
// live session. Each case needs a server of its own: the setting and the
// checkpoint reach every slot on a server.
func TestConsumerRecreatesALostSlot(t *testing.T) {
	for _, tt := range []struct {
		name string
		// holdUp keeps the consumer from streaming while the slot is lost;
		// the returned func lets it go on.
		holdUp func(t *testing.T, e *env, c *Consumer) (resume func())
	}{
		{"consumer stopped", func(t *testing.T, e *env, c *Consumer) func() {
			if err := c.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			return func() { e.consumer(t, Config{}) }
		}},
		{"consumer stalled while applying", func(t *testing.T, e *env, c *Consumer) func() {
			ctx := context.Background()
			tx, err := e.conn(t).Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// Every apply and acknowledgement writes stats_progress.
			if _, err := tx.Exec(ctx, `LOCK TABLE stats_progress IN ACCESS EXCLUSIVE MODE`); err != nil {
				t.Fatal(err)
			}
			return func() { _ = tx.Rollback(ctx) }
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnvOn(t, storetest.NewScratchDB(t, "max_slot_wal_keep_size = 16MB"), 2)
			e.insert(t, e.repeaters[0], store.StatePending, 30)
			c := e.consumer(t, Config{})
			e.waitApplied(t, e.mark(t), 30*time.Second)
			e.assertExact(t)

			resume := tt.holdUp(t, e, c)
			// Changes the counts must include, then more WAL than the slot
			// may keep, and a checkpoint that removes it.
			e.insert(t, e.repeaters[1], store.StateSuccess, 20)
			e.insert(t, e.repeaters[2], store.StatePending, 5)
			loseSlot(t, e)
			resume()

			e.waitApplied(t, e.mark(t), 30*time.Second)
			e.assertExact(t)
			if slot, err := e.st.GetReplicationSlot(context.Background(), e.slot); err != nil || slot.Lost {
				t.Fatalf("slot after the restart: %+v, %v; want a new one", slot, err)
			}
		})
	}
}

// loseSlot writes four WAL segments and checkpoints, which invalidates the
// env's slot on a server with max_slot_wal_keep_size = 16MB.
func loseSlot(t *testing.T, e *env) {
	t.Helper()
	conn := e.conn(t)
	for range 4 {
		execOn(t, conn, `SELECT pg_logical_emit_message(false, 'test', 'x'), pg_switch_wal()`)
	}
	execOn(t, conn, `CHECKPOINT`)
	var status *string
	err := conn.QueryRow(context.Background(), `SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1`,
		e.slot).Scan(&status)
	if err != nil && err != pgx.ErrNoRows {
		t.Fatal(err)
	}
	if status == nil || *status != "lost" {
		t.Fatalf("slot status %v after the checkpoint; the test did not set up what it tests", status)
	}
}
