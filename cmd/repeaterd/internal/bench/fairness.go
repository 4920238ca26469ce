package bench

import (
	"context"
	"fmt"
	"time"

	"repeaterd/repeaters"
	"repeaterd/store"
	"repeaterd/store/benchdb"
)

// fairness: one noisy domain holds a large backlog; once it is being
// delivered, 20 quiet domains register 10 records each, one at a time. The
// figure is the quiet records' registration → delivery latency (the sink's
// first arrival of webhook-id msg_<id> minus registered_at), both paths.
func runFairness(ctx context.Context, e *env) error {
	noisy := e.size
	const noisyRepeaters, quietDomains, perQuiet = 20, 20, 10
	limit := e.durationOf(10*time.Minute, 4*time.Minute)
	e.figure("noisy_repeaters", noisyRepeaters)
	e.figure("quiet_domains", quietDomains)
	e.figure("quiet_records_per_domain", perQuiet)

	type phase struct {
		newPath        bool
		dist           Dist
		undelivered    int
		noisyAtStart   int64
		noisyAtEnd     int64
		quietSpan      time.Duration // from the first quiet registration to the last quiet delivery
		registerSpan   time.Duration
		attemptDist    Dist
		sinkDuplicates int
	}
	phases := []phase{{newPath: true}, {newPath: false}}
	err := eachSide(ctx, e, phases, func(p *phase, st *store.Store, sink *sinkProc) error {
		noisyIDs, err := makeRepeaters(ctx, st, []string{"noisy"}, noisyRepeaters,
			func(int) string { return sink.URL("/noisy") })
		if err != nil {
			return err
		}
		quietIDs, err := makeRepeaters(ctx, st, domainNames("quiet", quietDomains), 1,
			func(int) string { return sink.URL("/quiet") })
		if err != nil {
			return err
		}
		if _, err := e.loadBacklog(ctx, st, noisyIDs, noisy); err != nil {
			return err
		}
		began := time.Now()
		sys, err := e.startSystem(ctx, p.newPath)
		if err != nil {
			return err
		}
		defer sys.stop()
		// Quiet records arrive once the noisy backlog is being delivered.
		if ok, err := sink.WaitCount(ctx, "/noisy", 1, time.Minute); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("%s path delivered nothing in a minute", pathName(p.newPath))
		}
		time.Sleep(time.Second)
		if p.noisyAtStart, err = benchdb.CountSuccess(ctx, st.Pool(), noisyIDs); err != nil {
			return err
		}
		e.logf("%s: noisy domain delivering (%d done); registering %d quiet records one at a time",
			pathName(p.newPath), p.noisyAtStart, quietDomains*perQuiet)
		regBegan := time.Now()
		var ids []int64
		for k := range perQuiet {
			for _, rid := range quietIDs {
				rec, _, err := st.RegisterRecord(ctx, store.RegisterParams{RepeaterID: rid,
					Body: fmt.Appendf(nil, `{"quiet":true,"n":%d}`, k)})
				if err != nil {
					return err
				}
				ids = append(ids, rec.ID)
			}
		}
		p.registerSpan = time.Since(regBegan)
		webhookIDs := make([]string, len(ids))
		for i, id := range ids {
			webhookIDs[i] = repeaters.WebhookID(id)
		}
		var arrived map[string]time.Time
		for {
			if arrived, err = sink.Lookup(ctx, webhookIDs); err != nil {
				return err
			}
			if len(arrived) == len(ids) || time.Since(began) > limit {
				break
			}
			if done, err := benchdb.CountSuccess(ctx, st.Pool(), noisyIDs); err == nil {
				e.logf("%s: %d/%d quiet delivered; noisy %d/%d", pathName(p.newPath), len(arrived), len(ids), done, noisy)
			}
			time.Sleep(2 * time.Second)
		}
		if p.noisyAtEnd, err = benchdb.CountSuccess(ctx, st.Pool(), noisyIDs); err != nil {
			return err
		}
		registered, firstAttempt, err := benchdb.RecordTimes(ctx, st.Pool(), ids)
		if err != nil {
			return err
		}
		end := time.Now()
		var lat, att []time.Duration
		var lastArrival time.Time
		for i, id := range ids {
			at, ok := arrived[webhookIDs[i]]
			if !ok {
				p.undelivered++
				lat = append(lat, end.Sub(registered[id])) // a lower bound
				continue
			}
			lat = append(lat, at.Sub(registered[id]))
			if at.After(lastArrival) {
				lastArrival = at
			}
			if fa, ok := firstAttempt[id]; ok {
				att = append(att, fa.Sub(registered[id]))
			}
		}
		p.dist, p.attemptDist = Summarize(lat), Summarize(att)
		if !lastArrival.IsZero() {
			p.quietSpan = lastArrival.Sub(regBegan)
		}
		ss, err := sink.Stats(ctx)
		if err != nil {
			return err
		}
		p.sinkDuplicates = ss.Duplicates
		e.logf("%s: quiet p50 %.0fms p99 %.0fms, %d undelivered", pathName(p.newPath), ms(p.dist.P50), ms(p.dist.P99), p.undelivered)
		return nil
	})
	if err != nil {
		return err
	}

	fmt.Fprintf(e.out, "\nnoisy domain: %s records on %d repeaters (a backlog, being delivered); then %d quiet domains × %d records registered one at a time (RegisterRecord)\n",
		FormatCount(noisy), noisyRepeaters, quietDomains, perQuiet)
	fmt.Fprintln(e.out, "latency = the sink's first arrival of the record's webhook-id − registered_at; attempt = first attempt row − registered_at")
	tw := e.table("PATH", "QUIET p50 ms", "QUIET p90 ms", "QUIET p99 ms", "QUIET MAX ms", "UNDELIVERED", "ATTEMPT p99 ms", "REGISTERING s", "NOISY DONE BEFORE", "NOISY DONE AFTER", "SINK DUPS")
	for _, p := range phases {
		row(tw, pathName(p.newPath), fmt.Sprintf("%.0f", ms(p.dist.P50)), fmt.Sprintf("%.0f", ms(p.dist.P90)),
			fmt.Sprintf("%.0f", ms(p.dist.P99)), fmt.Sprintf("%.0f", ms(p.dist.Max)), p.undelivered,
			fmt.Sprintf("%.0f", ms(p.attemptDist.P99)), fmt.Sprintf("%.2f", p.registerSpan.Seconds()),
			p.noisyAtStart, p.noisyAtEnd, p.sinkDuplicates)
	}
	tw.Flush()
	newP, legacy := phases[0], phases[1]
	r := ratio(float64(legacy.dist.P99), float64(newP.dist.P99))
	fmt.Fprintf(e.out, "ratio legacy/new quiet p99: %.0f×\n", r)
	if legacy.undelivered > 0 {
		e.notef("legacy left %d quiet records undelivered after %s; their latency is counted up to then (a lower bound)", legacy.undelivered, limit)
	}
	for _, p := range phases {
		e.figure(pathName(p.newPath), map[string]any{
			"quiet": p.dist.JSON(), "quiet_first_attempt": p.attemptDist.JSON(), "undelivered": p.undelivered,
			"register_s": round2(p.registerSpan.Seconds()), "noisy_done_before": p.noisyAtStart, "noisy_done_after": p.noisyAtEnd,
			"sink_duplicates": p.sinkDuplicates,
		})
	}
	e.figure("ratio_p99_legacy_new", round2(r))
	e.goal("new quiet p99", "≤ 1 s", fmt.Sprintf("%.0f ms", ms(newP.dist.P99)), newP.dist.P99 <= time.Second && newP.undelivered == 0)
	e.goal("legacy/new quiet p99", "≥ 10×", fmt.Sprintf("%.0f×", r), r >= 10)
	return nil
}
