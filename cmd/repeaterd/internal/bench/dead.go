package bench

import (
	"context"
	"fmt"
	"net"
	"time"

	"repeaterd/store"
	"repeaterd/store/benchdb"
)

// dead-endpoint: 10 repeaters of one domain, one pointed at a closed port,
// each with a backlog; for a fixed window, how many requests the dead one
// costs and how fast the other nine deliver, against a control run with the
// nine alone. Both paths, production backoff (5m minimum).
func runDeadEndpoint(ctx context.Context, e *env) error {
	per, window := e.size, e.durationOf(time.Minute, 25*time.Second)
	e.figure("window_s", window.Seconds())
	e.figure("backoff_min", e.opt.Engine.Backoff.Min.String())

	phases := []deadPhase{{newPath: true, withDead: true}, {newPath: true}, {withDead: true}, {}}
	if err := eachSide(ctx, e, phases, func(p *deadPhase, st *store.Store, sink *sinkProc) error {
		return e.runDeadPhase(ctx, p, st, sink, per, window)
	}); err != nil {
		return err
	}

	fmt.Fprintf(e.out, "\n10 repeaters in one domain × %s records, one at a closed port (connection refused); %s window; backoff at production defaults (min %s, doubling, max %s)\n",
		FormatCount(per), window, e.opt.Engine.Backoff.Min, e.opt.Engine.Backoff.Max)
	tw := e.table("PATH", "RUN", "DEAD REQUESTS", "DEAD RECORDS TRIED", "DEAD BATCHES", "NINE DELIVERED", "NINE DRAINED AT s", "NINE SUSTAINED /s", "NINE AVG /s")
	for _, p := range phases {
		run, dead, recs, batches := "with dead", fmt.Sprint(p.attempts), fmt.Sprint(p.records), fmt.Sprint(p.batches)
		if !p.withDead {
			run, dead, recs, batches = "control (nine only)", "-", "-", "-"
		}
		if !p.newPath && p.withDead {
			batches = "n/a (per record)"
		}
		drained := "-"
		if p.drained {
			drained = fmt.Sprintf("%.1f", p.drainAt.Seconds())
		}
		row(tw, pathName(p.newPath), run, dead, recs, batches, p.delivered, drained,
			fmt.Sprintf("%.0f", p.sustained), fmt.Sprintf("%.0f", p.avg))
	}
	tw.Flush()
	newDead, newCtl, legDead, legCtl := phases[0], phases[1], phases[2], phases[3]
	newImpact := ratio(newDead.sustained, newCtl.sustained)
	legImpact := ratio(legDead.sustained, legCtl.sustained)
	reqRatio := ratio(float64(legDead.attempts), float64(newDead.attempts))
	fmt.Fprintf(e.out, "requests on the dead endpoint, legacy/new: %.0f×; the nine's rate with the dead one vs without: new %.2f, legacy %.2f\n",
		reqRatio, newImpact, legImpact)
	e.notef("NINE SUSTAINED is the slope of the nine's delivered count between 10 %% and 90 %% of what they delivered in the window; AVG is delivered / time to drain (or the window)")
	for _, p := range phases {
		name := pathName(p.newPath)
		if !p.withDead {
			name += "_control"
		}
		fig := map[string]any{"nine_delivered": p.delivered, "nine_drained": p.drained,
			"nine_drain_s": round2(p.drainAt.Seconds()), "nine_sustained_per_s": round2(p.sustained),
			"nine_avg_per_s": round2(p.avg)}
		if p.withDead {
			fig["dead_requests"], fig["dead_records_tried"] = p.attempts, p.records
			if p.newPath {
				fig["dead_batches"] = p.batches
			}
			if p.newPath {
				fig["dead_backed_off_for_s"] = round2(p.backedOffFor.Seconds())
			}
		}
		e.figure(name, fig)
	}
	e.figure("ratio_dead_requests_legacy_new", round2(reqRatio))
	e.figure("nine_rate_with_dead_vs_control_new", round2(newImpact))
	e.figure("nine_rate_with_dead_vs_control_legacy", round2(legImpact))
	e.goal("new: batches on the dead endpoint", "≤ 2", fmt.Sprintf("%d (%d requests)", newDead.batches, newDead.attempts), newDead.batches <= 2)
	e.goal("new: the other nine unaffected", "rate ≥ 0.9 × control", fmt.Sprintf("%.2f × control", newImpact), newImpact >= 0.9)
	return nil
}

// deadPhase is one run of the dead-endpoint scenario: a path, with or
// without the dead repeater, and what it measured.
type deadPhase struct {
	newPath, withDead bool
	attempts, records int64
	batches           int
	backedOffFor      time.Duration // how long the dead repeater stays backed off, at the window's end
	delivered         int64
	drained           bool
	drainAt           time.Duration
	sustained, avg    float64
}

func (e *env) runDeadPhase(ctx context.Context, r *deadPhase, st *store.Store, sink *sinkProc, per int, window time.Duration) error {
	deadURL, err := closedPortURL()
	if err != nil {
		return err
	}
	nine, err := makeRepeaters(ctx, st, []string{"deadbench"}, 9, func(int) string { return sink.URL("/alive") })
	if err != nil {
		return err
	}
	all := nine
	var deadID int64
	if r.withDead {
		ids, err := makeRepeaters(ctx, st, []string{"deadbench"}, 1, func(int) string { return deadURL })
		if err != nil {
			return err
		}
		deadID = ids[0]
		all = append(append([]int64{}, nine...), deadID)
	}
	if _, err := benchdb.LoadReady(ctx, st.Pool(), all, per, benchBodyBytes); err != nil {
		return err
	}
	label := pathName(r.newPath)
	if !r.withDead {
		label += "/ctl"
	}
	began := time.Now()
	sys, err := e.startSystem(ctx, r.newPath)
	if err != nil {
		return err
	}
	defer sys.stop()
	target := int64(9 * per)
	samples, err := e.watch(ctx, label, began, window, 0,
		func(ctx context.Context) (int64, error) { return benchdb.CountSuccess(ctx, st.Pool(), nine) })
	if err != nil {
		return err
	}
	// The sampled count only stops at the window; cut the samples at the
	// drain so the rate is not diluted by idle time.
	if at, ok := ReachedAt(samples, target); ok {
		r.drained, r.drainAt = true, at
		for i, s := range samples {
			if s.Count >= target {
				samples = samples[:i+1]
				break
			}
		}
	}
	last := samples[len(samples)-1]
	r.delivered = last.Count
	r.sustained = SustainedRate(samples, 0.1, 0.9)
	if last.At > 0 {
		r.avg = float64(last.Count) / last.At.Seconds()
	}
	if r.withDead {
		a, err := benchdb.RepeaterAttempts(ctx, st.Pool(), deadID)
		if err != nil {
			return err
		}
		r.attempts, r.records, r.batches = a.Attempts, a.Records, a.BackoffCount
		if a.NextAttemptAt != nil {
			r.backedOffFor = time.Until(*a.NextAttemptAt)
		}
		e.logf("%s: dead endpoint got %d requests over %d records, backoff_count %d", label, r.attempts, r.records, r.batches)
	}
	return nil
}

// closedPortURL returns a loopback URL on a port nothing listens on: it is
// bound, then closed, so connecting is refused at once.
func closedPortURL() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/dead", nil
}
