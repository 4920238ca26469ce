package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"repeaterd/repeaters"
	"repeaterd/store"
	"repeaterd/store/benchdb"
)

// latency: an idle system; records registered one at a time (RegisterRecord,
// as the API does). The figure is registration → first attempt: the sink's
// arrival of the record's webhook-id minus registered_at (and, from the
// attempt row, when the send began).
//
// "idle": each record is registered once the previous one has arrived and its
// batch is over (the repeater lock released), after a random 0-50 ms gap so
// registrations fall at random points of the workers' polling. "back to
// back": the next record is registered as soon as the previous one arrives,
// while its batch still holds the repeater. The legacy side, whose pickup is
// check_repeaters' interval, gets records at a steady pace instead, since
// waiting for each would take an interval apiece.
func runLatency(ctx context.Context, e *env) error {
	n := e.size
	legacyN, backToBackN := min(n, 200), max(n/4, 1)
	const legacyEvery = 100 * time.Millisecond
	e.figure("records_new_back_to_back", backToBackN)
	e.figure("records_legacy", legacyN)

	type phase struct {
		name          string
		newPath       bool
		n             int
		arrival, send Dist
		missed        int
	}
	phases := []phase{{name: "idle", newPath: true}, {name: "back-to-back", newPath: true}, {name: "legacy"}}
	err := eachSide(ctx, e, phases, func(p *phase, st *store.Store, sink *sinkProc) error {
		mode, newPath := p.name, p.newPath
		ids, err := makeRepeaters(ctx, st, []string{"latency"}, 1, func(int) string { return sink.URL("/latency") })
		if err != nil {
			return err
		}
		rid := ids[0]
		sys, err := e.startSystem(ctx, newPath)
		if err != nil {
			return err
		}
		defer sys.stop()
		register := func(i int) (int64, error) {
			rec, _, err := st.RegisterRecord(ctx, store.RegisterParams{RepeaterID: rid,
				Body: fmt.Appendf(nil, `{"latency":true,"n":%d}`, i)})
			if err != nil {
				return 0, err
			}
			return rec.ID, nil
		}
		var recIDs []int64
		if newPath {
			count := n
			if mode == "back-to-back" {
				count = backToBackN
			}
			// Warm up: the dispatcher takes its lease, connections open.
			for i := range 5 {
				id, err := register(-i)
				if err != nil {
					return err
				}
				if _, ok, err := sink.Wait(ctx, repeaters.WebhookID(id), 20*time.Second); err != nil || !ok {
					return fmt.Errorf("warm-up record %d not delivered in 20s (err %v)", id, err)
				}
			}
			for i := range count {
				if mode == "idle" {
					if err := waitFor(ctx, 10*time.Second, func() (bool, error) {
						n, err := sys.eng.Redis.Exists(ctx, repeaters.LockKey(rid)).Result()
						return n == 0, err
					}); err != nil {
						return fmt.Errorf("repeater lock not released: %w", err)
					}
					time.Sleep(time.Duration(rand.Int64N(int64(50 * time.Millisecond))))
				}
				id, err := register(i)
				if err != nil {
					return err
				}
				recIDs = append(recIDs, id)
				if _, ok, err := sink.Wait(ctx, repeaters.WebhookID(id), 10*time.Second); err != nil {
					return err
				} else if !ok {
					p.missed++
				}
				if (i+1)%100 == 0 {
					e.logf("%s: %d/%d registered and delivered", mode, i+1, count)
				}
			}
		} else {
			t := time.NewTicker(legacyEvery)
			for i := range legacyN {
				id, err := register(i)
				if err != nil {
					t.Stop()
					return err
				}
				recIDs = append(recIDs, id)
				<-t.C
			}
			t.Stop()
			deadline := time.Now().Add(time.Minute)
			for _, id := range recIDs {
				if _, ok, err := sink.Wait(ctx, repeaters.WebhookID(id), max(time.Until(deadline), time.Millisecond)); err != nil {
					return err
				} else if !ok {
					p.missed++
				}
			}
		}
		p.n = len(recIDs)
		webhookIDs := make([]string, len(recIDs))
		for i, id := range recIDs {
			webhookIDs[i] = repeaters.WebhookID(id)
		}
		arrived, err := sink.Lookup(ctx, webhookIDs)
		if err != nil {
			return err
		}
		registered, firstAttempt, err := benchdb.RecordTimes(ctx, st.Pool(), recIDs)
		if err != nil {
			return err
		}
		var arr, snd []time.Duration
		for i, id := range recIDs {
			if at, ok := arrived[webhookIDs[i]]; ok {
				arr = append(arr, at.Sub(registered[id]))
			}
			if at, ok := firstAttempt[id]; ok {
				snd = append(snd, at.Sub(registered[id]))
			}
		}
		p.arrival, p.send = Summarize(arr), Summarize(snd)
		e.logf("%s: arrival p50 %.1fms p99 %.1fms", mode, ms(p.arrival.P50), ms(p.arrival.P99))
		return nil
	})
	if err != nil {
		return err
	}

	fmt.Fprintf(e.out, "\nidle system, one repeater; new idle: %d records one at a time, each after the previous batch ended + 0-50 ms; new back to back: %d, each as soon as the previous arrived; legacy: %d, one every %s\n",
		n, backToBackN, legacyN, legacyEvery)
	fmt.Fprintln(e.out, "ARRIVAL = the sink's first arrival of the webhook-id − registered_at; SEND = first attempt row's created_at (send start) − registered_at")
	tw := e.table("PATH", "MODE", "N", "ARRIVAL p50 ms", "ARRIVAL p90 ms", "ARRIVAL p99 ms", "ARRIVAL MAX ms", "SEND p50 ms", "SEND p99 ms", "NOT DELIVERED")
	for _, p := range phases {
		row(tw, pathName(p.newPath), p.name, p.n, fmt.Sprintf("%.1f", ms(p.arrival.P50)), fmt.Sprintf("%.1f", ms(p.arrival.P90)),
			fmt.Sprintf("%.1f", ms(p.arrival.P99)), fmt.Sprintf("%.1f", ms(p.arrival.Max)),
			fmt.Sprintf("%.1f", ms(p.send.P50)), fmt.Sprintf("%.1f", ms(p.send.P99)), p.missed)
	}
	tw.Flush()
	newP, b2b, legacy := phases[0], phases[1], phases[2]
	r := ratio(float64(legacy.arrival.P50), float64(newP.arrival.P50))
	fmt.Fprintf(e.out, "ratio legacy/new p50: %.0f×\n", r)
	for _, p := range phases {
		name := map[string]string{"idle": "new", "back-to-back": "new_back_to_back", "legacy": "legacy"}[p.name]
		e.figure(name, map[string]any{"arrival": p.arrival.JSON(), "send": p.send.JSON(), "not_delivered": p.missed})
	}
	fmt.Fprintf(e.out, "back to back vs idle p50: +%.1f ms (the next batch waits for the previous one's update_repeater to release the repeater)\n",
		ms(b2b.arrival.P50-newP.arrival.P50))
	e.figure("ratio_p50_legacy_new", round2(r))
	e.goal("new p50 registration → first attempt", "≤ 50 ms", fmt.Sprintf("%.1f ms", ms(newP.arrival.P50)), newP.arrival.P50 <= 50*time.Millisecond && newP.missed == 0)
	e.goal("new p99 registration → first attempt", "≤ 250 ms", fmt.Sprintf("%.1f ms", ms(newP.arrival.P99)), newP.arrival.P99 <= 250*time.Millisecond && newP.missed == 0)
	return nil
}
