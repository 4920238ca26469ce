package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"repeaterd/store"
	"repeaterd/store/benchdb"
)

// stats: the WAL stats consumer (walstats.Consumer, run as
// `repeaterd bench-stats-consumer`, the stats role on a slot of its own) on a
// seeded history: how fast it applies a backlog of changes, its
// commit → applied lag under 2,000 changes/s, and whether its counts equal a
// live COUNT(*) after repeated kill -9. The other side is the dashboards'
// read: the aggregate against the live GROUP BY it replaces.
func runStats(ctx context.Context, e *env) error {
	history := e.size
	const (
		slot         = "repeaterd_bench_stats"
		tick         = 50 * time.Millisecond // one transaction per tick
		perTx        = 100                   // 50 inserts + 50 state changes: 2,000 changes/s
		kills        = 5
		backlogTxs   = 40
		backlogPerTx = 10_000 // 5,000 inserts + 5,000 updates
	)
	window := e.durationOf(60*time.Second, 20*time.Second)
	killEvery := e.durationOf(8*time.Second, 5*time.Second)
	if e.opt.Duration > 0 {
		killEvery = max(e.opt.Duration/8, 2*time.Second)
	}
	e.figure("target_changes_per_s", perTx*int(time.Second/tick))
	e.figure("kills", kills)

	st, err := e.freshDB(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	began := time.Now()
	if err := benchdb.SeedHistory(ctx, st.Pool(), benchdb.HistoryParams{Domains: 300, Repeaters: 2000, Records: history,
		ReadyFraction: 0.04}); err != nil {
		return err
	}
	e.logf("seeded %s records in %s", FormatCount(history), time.Since(began).Round(time.Second))
	repeaterIDs, err := benchdb.RepeaterIDs(ctx, st.Pool(), 200)
	if err != nil {
		return err
	}

	consumer := &statsConsumerProc{e: e, slot: slot}
	defer consumer.stop()

	// 1. First start: create the slot and count the history in its snapshot.
	began = time.Now()
	if err := consumer.start(ctx); err != nil {
		return err
	}
	if err := waitFor(ctx, 10*time.Minute, func() (bool, error) {
		lsn, err := benchdb.AppliedLSN(ctx, st.Pool())
		return lsn != "", err
	}); err != nil {
		return fmt.Errorf("consumer never counted the history: %w\n%s", err, consumer.logs.String())
	}
	backfill := time.Since(began)
	e.logf("slot created and %s records counted in %s", FormatCount(history), backfill.Round(time.Millisecond))

	// 2. Apply throughput: a backlog written while the consumer is stopped.
	consumer.stop()
	var target string
	var last []int64
	for range backlogTxs {
		if target, last, err = benchdb.Churn(ctx, st.Pool(), benchdb.ChurnParams{RepeaterIDs: repeaterIDs,
			Inserts: backlogPerTx / 2, Complete: last}); err != nil {
			return err
		}
	}
	backlog := backlogTxs * backlogPerTx
	began = time.Now()
	if err := consumer.start(ctx); err != nil {
		return err
	}
	if err := waitFor(ctx, 10*time.Minute, func() (bool, error) { return benchdb.LSNReached(ctx, st.Pool(), target) }); err != nil {
		return fmt.Errorf("consumer did not catch up: %w\n%s", err, consumer.logs.String())
	}
	catchUp := time.Since(began)
	applyRate := float64(backlog) / catchUp.Seconds()
	e.logf("applied a backlog of %d changes in %s: %.0f changes/s (including the restart)", backlog, catchUp.Round(time.Millisecond), applyRate)

	// 3. Lag at 2,000 changes/s, nothing else happening: with the server's
	// synchronous_commit, then with it on for the writer's transactions.
	load := &churn{st: st, ids: repeaterIDs, perTx: perTx, tick: tick}
	lag, achieved, err := load.run(ctx, window)
	if err != nil {
		return err
	}
	lagDist := Summarize(lag.lags)
	e.logf("steady: %.0f changes/s, lag p50 %.0fms p99 %.0fms, %d transactions not applied in time",
		achieved, ms(lagDist.P50), ms(lagDist.P99), lag.missed)
	syncLoad := &churn{st: st, ids: repeaterIDs, perTx: perTx, tick: tick, syncCommit: true}
	syncLag, syncAchieved, err := syncLoad.run(ctx, window/2)
	if err != nil {
		return err
	}
	syncDist := Summarize(syncLag.lags)
	e.logf("steady, synchronous_commit on: %.0f changes/s, lag p50 %.0fms p99 %.0fms", syncAchieved, ms(syncDist.P50), ms(syncDist.P99))
	serverSync, walWriterDelay, err := benchdb.CommitSettings(ctx, st.Pool())
	if err != nil {
		return err
	}

	// 4. The same load while the consumer is killed -9 and restarted, at a
	// random moment of each interval.
	killed := 0
	killErr := make(chan error, 1)
	go func() {
		defer close(killErr)
		for killed < kills {
			wait := killEvery/2 + time.Duration(rand.Int64N(int64(killEvery/2)))
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			if err := consumer.kill(); err != nil {
				killErr <- err
				return
			}
			killed++
			e.logf("kill -9 #%d of the consumer", killed)
			time.Sleep(time.Duration(rand.Int64N(int64(time.Second))))
			if err := consumer.start(ctx); err != nil {
				killErr <- err
				return
			}
		}
	}()
	_, killAchieved, err := load.run(ctx, time.Duration(kills)*killEvery+killEvery/2)
	if kerr := <-killErr; kerr != nil {
		return kerr
	}
	if err != nil {
		return err
	}
	// The last transaction written, not the server's position: other
	// databases' WAL is only acknowledged on the standby timer.
	final := load.lastLSN
	began = time.Now()
	if err := waitFor(ctx, 5*time.Minute, func() (bool, error) { return benchdb.LSNReached(ctx, st.Pool(), final) }); err != nil {
		return fmt.Errorf("consumer did not catch up after the kills: %w\n%s", err, consumer.logs.String())
	}
	settle := time.Since(began)
	wal, err := st.StatsCounts(ctx, "")
	if err != nil {
		return err
	}
	live, err := st.LiveStatsCounts(ctx, "")
	if err != nil {
		return err
	}
	diff := compareCounts(wal, live)
	consumer.stop()

	// 5. The dashboards' read: the aggregate vs the live count it replaces.
	var aggTimes, liveTimes []time.Duration
	for range 5 {
		t := time.Now()
		if _, err := st.StatsCounts(ctx, ""); err != nil {
			return err
		}
		aggTimes = append(aggTimes, time.Since(t))
		t = time.Now()
		if _, err := st.LiveStatsCounts(ctx, ""); err != nil {
			return err
		}
		liveTimes = append(liveTimes, time.Since(t))
	}
	agg, liveD := Summarize(aggTimes), Summarize(liveTimes)
	readRatio := ratio(float64(liveD.P50), float64(agg.P50))
	total := diff.total

	fmt.Fprintf(e.out, "\nhistory %s records, 2000 repeaters; load: one transaction every %s of %d inserts + %d state changes on 200 repeaters\n",
		FormatCount(history), tick, perTx/2, perTx/2)
	tw := e.table("MEASURE", "VALUE")
	row(tw, "first start: slot + count of the history", fmt.Sprintf("%.2f s", backfill.Seconds()))
	row(tw, fmt.Sprintf("apply a %d-change backlog (restart included)", backlog), fmt.Sprintf("%.2f s = %.0f changes/s", catchUp.Seconds(), applyRate))
	row(tw, "steady load achieved", fmt.Sprintf("%.0f changes/s for %s", achieved, window))
	row(tw, "lag commit → applied p50 / p90 / p99 / max", fmt.Sprintf("%.0f / %.0f / %.0f / %.0f ms", ms(lagDist.P50), ms(lagDist.P90), ms(lagDist.P99), ms(lagDist.Max)))
	row(tw, "transactions never seen applied in 10 s", lag.missed)
	row(tw, "lag p50 / p99 with synchronous_commit = on (writer)", fmt.Sprintf("%.0f / %.0f ms at %.0f changes/s", ms(syncDist.P50), ms(syncDist.P99), syncAchieved))
	row(tw, "load during the kills", fmt.Sprintf("%.0f changes/s", killAchieved))
	row(tw, "kill -9 + restart of the consumer", killed)
	row(tw, "catch-up after the last kill", fmt.Sprintf("%.2f s", settle.Seconds()))
	row(tw, "consumer sessions that ended and were retried", consumer.retries())
	row(tw, "counted records (WAL / live)", fmt.Sprintf("%d / %d", diff.walTotal, total))
	row(tw, "(domain, repeater, state) counters differing", diff.keys)
	row(tw, "records off in all", diff.off)
	row(tw, "dashboard read: aggregate p50 / live GROUP BY p50", fmt.Sprintf("%.2f / %.2f ms (%.0f×)", ms(agg.P50), ms(liveD.P50), readRatio))
	tw.Flush()
	e.notef("lag is measured from outside: the time a committed transaction's LSN is first seen at or below stats_progress.applied_lsn (polled every 10 ms) minus when its commit returned; the consumer runs with its defaults (batch wait 100 ms, standby interval 10 s)")
	e.notef("the server runs synchronous_commit = %s, wal_writer_delay = %s (scripts/services.sh): the walsender only decodes flushed WAL, so with commits not flushed at once the lag includes up to one WAL writer delay", serverSync, walWriterDelay)
	e.notef("the consumer is `repeaterd bench-stats-consumer`, the stats role with its defaults on slot %s (slots are cluster-wide; the default name may be taken)", slot)

	e.figure("backfill_s", round2(backfill.Seconds()))
	e.figure("backlog_changes", backlog)
	e.figure("apply_changes_per_s", round2(applyRate))
	e.figure("steady_changes_per_s", round2(achieved))
	e.figure("lag", lagDist.JSON())
	e.figure("lag_missed", lag.missed)
	e.figure("lag_sync_commit", syncDist.JSON())
	e.figure("sync_commit_changes_per_s", round2(syncAchieved))
	e.figure("server_synchronous_commit", serverSync)
	e.figure("server_wal_writer_delay", walWriterDelay)
	e.figure("consumer_session_retries", consumer.retries())
	e.figure("kills_done", killed)
	e.figure("kill_load_changes_per_s", round2(killAchieved))
	e.figure("settle_s", round2(settle.Seconds()))
	e.figure("records_counted_wal", diff.walTotal)
	e.figure("records_counted_live", total)
	e.figure("counters_differing", diff.keys)
	e.figure("records_off", diff.off)
	e.figure("read_aggregate", agg.JSON())
	e.figure("read_live", liveD.JSON())
	e.figure("ratio_read_live_aggregate", round2(readRatio))
	e.goal("apply throughput", "≥ 5000 changes/s", fmt.Sprintf("%.0f changes/s", applyRate), applyRate >= 5000)
	e.goal("lag p99 at 2,000 changes/s", "≤ 1 s, every transaction applied",
		fmt.Sprintf("p99 %.0f ms at %.0f changes/s, %d not applied", ms(lagDist.P99), achieved, lag.missed),
		lag.missed == 0 && achieved >= 1900 && lagDist.P99 <= time.Second)
	e.goal(fmt.Sprintf("exact after %d × kill -9", kills), "0 counters off", fmt.Sprintf("%d counters, %d records off", diff.keys, diff.off),
		diff.keys == 0 && killed == kills)
	return nil
}

type countDiff struct {
	keys            int   // counters that differ
	off             int64 // sum of absolute differences
	walTotal, total int64
}

// compareCounts compares the WAL-maintained counts with live ones.
func compareCounts(wal, live []store.StatCount) countDiff {
	var d countDiff
	m := map[store.StatKey]int64{}
	for _, c := range live {
		m[c.StatKey] += c.Count
		d.total += c.Count
	}
	for _, c := range wal {
		m[c.StatKey] -= c.Count
		d.walTotal += c.Count
	}
	for _, v := range m {
		if v != 0 {
			d.keys++
			d.off += max(v, -v)
		}
	}
	return d
}

// waitFor polls cond every 20 ms until it holds or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
