package store_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// The ingest paths wake the dispatcher after their commit, coalesced: a
// burst of registrations costs fewer NOTIFYs than records, and the last
// registration is still followed by one.
func TestRegistrationsWakeTheDispatcherCoalesced(t *testing.T) {
	st := storetest.NewStore(t)
	r := storetest.Repeater(t, st, storetest.RepeaterOpts{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got atomic.Int64
	woke := make(chan struct{}, 1024)
	listening := make(chan struct{})
	go func() {
		close(listening)
		_ = st.Listen(ctx, store.NotifyChannel, func(*pgconn.Notification) {
			got.Add(1)
			woke <- struct{}{}
		})
	}()
	<-listening
	// Listen has subscribed once a NOTIFY of our own comes back.
	deadline := time.After(10 * time.Second)
	for subscribed := false; !subscribed; {
		if _, err := st.Pool().Exec(ctx, `SELECT pg_notify($1, '')`, store.NotifyChannel); err != nil {
			t.Fatal(err)
		}
		select {
		case <-woke:
			subscribed = true
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal("LISTEN never started")
		}
	}
	got.Store(0)

	if _, _, err := st.RegisterRecord(ctx, store.RegisterParams{RepeaterID: r.ID, Body: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woke:
	case <-time.After(10 * time.Second):
		t.Fatal("a registration woke nobody")
	}

	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			items := []store.BatchItem{{RepeaterID: r.ID, Body: []byte(`{"i":1}`)}}
			if i%2 == 0 {
				_, _, err := st.RegisterRecord(ctx, store.RegisterParams{RepeaterID: r.ID, Body: items[0].Body})
				if err != nil {
					t.Error(err)
				}
				return
			}
			if _, err := st.RegisterBatch(ctx, items, func(string) bool { return true }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	before := got.Load()
	select { // every registration has committed: a NOTIFY still follows
	case <-woke:
	case <-time.After(10 * time.Second):
		t.Fatal("the burst's last registrations woke nobody")
	}
	for len(woke) > 0 {
		<-woke
	}
	if total := got.Load(); total >= n || total < 1 {
		t.Errorf("%d NOTIFYs for %d registrations (%d before the burst ended), want coalesced", total, n, before)
	}
}
