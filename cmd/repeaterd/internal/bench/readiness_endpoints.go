package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"repeaterd/store"
	"repeaterd/store/benchdb"
)

// endpointsPrefix selects readiness's endpoints variant:
// --size endpoints (2k,20k,100k repeaters) or endpoints:COUNTS.
const endpointsPrefix = "endpoints"

// runReadinessEndpoints: many endpoints, most idle. At each repeater count,
// 1 % of the repeaters hold 2 M due ready records; the others have none. It
// times the readiness query as the dispatcher runs it (store.ReadyRepeaters,
// which reads the work set) against the query before the work set
// (benchdb.ProbeAllReadinessSQL: every active repeater probed), and the
// pruner's steady-state look for repeaters to take out of the set.
func runReadinessEndpoints(ctx context.Context, e *env) error {
	counts := []int{2_000, 20_000, 100_000}
	if spec, ok := strings.CutPrefix(e.opt.Size, endpointsPrefix+":"); ok {
		var err error
		if counts, err = ParseCounts(spec); err != nil {
			return err
		}
	}
	const nDomains, records, withWorkFraction = 300, 2_000_000, 0.01
	runs := e.opt.Runs
	e.figure("variant", "endpoints")
	e.figure("records", records)
	e.figure("with_work_fraction", withWorkFraction)
	e.figure("runs", runs)

	var results []endpointsResult
	for _, n := range counts {
		st, err := e.freshDB(ctx)
		if err != nil {
			return err
		}
		r, err := e.endpointsAt(ctx, st, n, max(1, int(float64(n)*withWorkFraction)), nDomains, records, runs)
		st.Close()
		if err != nil {
			return err
		}
		results = append(results, r)
	}

	fmt.Fprintf(e.out, "\n%s ready records (all due) on 1 %% of the repeaters, the rest idle; %d domains; p50/p90 of %d runs, client-timed, every row read\n",
		FormatCount(records), nDomains, runs)
	fmt.Fprintln(e.out, "WORK SET = store.ReadyRepeaters as the dispatcher runs it; PROBE ALL = the same query without the work set (before migration 00120); PRUNE = the pruner's look when nothing is idle")
	fmt.Fprintln(e.out, "CPU = the Postgres backend's CPU time per run (user+system from /proc over 100 runs of the work set, 10 of probe all): what the query costs whatever else the machine does")
	tw := e.table("REPEATERS", "WITH WORK", "READY ROWS", "WORK SET p50 ms", "p90 ms", "CPU ms", "PROBE ALL p50 ms", "p90 ms", "CPU ms", "SPEED-UP", "PRUNE p50 ms", "LOAD s")
	for _, r := range results {
		row(tw, FormatCount(r.repeaters), r.withWork, r.rows, f2(r.workSet.P50), f2(r.workSet.P90), f2(r.workCPU),
			f2(r.probeAll.P50), f2(r.probeAll.P90), f2(r.allCPU), fmt.Sprintf("%.1f×", ratio(float64(r.probeAll.P50), float64(r.workSet.P50))),
			f2(r.prune.P50), fmt.Sprintf("%.0f", r.load.Seconds()))
	}
	tw.Flush()
	fmt.Fprintln(e.out, "\nEXPLAIN (ANALYZE, BUFFERS), one run each (exec ms, shared buffers hit/read):")
	for _, r := range results {
		fmt.Fprintf(e.out, "  %-5s work set  %8.2f ms  %12s  %s\n", FormatCount(r.repeaters), r.workPlan.exec, r.workPlan.buffers, r.workPlan.summary)
		fmt.Fprintf(e.out, "  %-5s probe all %8.2f ms  %12s  %s\n", FormatCount(r.repeaters), r.allPlan.exec, r.allPlan.buffers, r.allPlan.summary)
	}
	e.notef("records loaded with generate_series (triggers skipped, the work set then filled in one INSERT), then ANALYZE; no VACUUM before the runs")
	e.notef("each variant runs %d times in a block after one warm-up", runs)

	byCount := map[string]any{}
	for _, r := range results {
		byCount[FormatCount(r.repeaters)] = map[string]any{
			"with_work": r.withWork, "ready_rows": r.rows, "load_s": round2(r.load.Seconds()),
			"work_set": r.workSet.JSON(), "probe_all": r.probeAll.JSON(), "prune": r.prune.JSON(),
			"work_set_backend_cpu_ms": round2(ms(r.workCPU)), "probe_all_backend_cpu_ms": round2(ms(r.allCPU)),
			"explain_work_set": r.workPlan.json(), "explain_probe_all": r.allPlan.json(),
		}
	}
	e.figure("repeater_counts", byCount)
	last := results[len(results)-1]
	e.goal(fmt.Sprintf("readiness p50 at %s repeaters, 1 %% with work", FormatCount(last.repeaters)), "≤ 10 ms",
		fmt.Sprintf("%.2f ms (before: %.2f ms)", ms(last.workSet.P50), ms(last.probeAll.P50)), ms(last.workSet.P50) <= 10)
	return nil
}

type endpointsResult struct {
	repeaters, withWork, rows int
	load                      time.Duration
	workSet, probeAll, prune  Dist
	workCPU, allCPU           time.Duration
	workPlan, allPlan         planInfo
}

func (e *env) endpointsAt(ctx context.Context, st *store.Store, n, withWork, nDomains, records, runs int) (endpointsResult, error) {
	r := endpointsResult{repeaters: n, withWork: withWork}
	began := time.Now()
	if err := benchdb.SeedEndpoints(ctx, st.Pool(), benchdb.EndpointParams{
		Domains: nDomains, Repeaters: n, WithWork: withWork, Records: records,
	}); err != nil {
		return r, err
	}
	r.load = time.Since(began)
	e.logf("%s repeaters, %d with work, %s records loaded in %s", FormatCount(n), withWork, FormatCount(records), r.load.Round(time.Second))
	workSet := func(ctx context.Context) (int, error) {
		groups, err := st.ReadyRepeaters(ctx, time.Now())
		rows := 0
		for _, g := range groups {
			rows += len(g.Repeaters)
		}
		return rows, err
	}
	probeAll := func(ctx context.Context) (int, error) {
		_, args := st.ReadyRepeatersSQL(time.Now())
		return benchdb.QueryCustomPlan(ctx, st.Pool(), benchdb.ProbeAllReadinessSQL(st), args...)
	}
	prune := func(ctx context.Context) (int, error) {
		ids, err := st.PruneIdleRepeaters(ctx, 0)
		return len(ids), err
	}
	explain := func(sql string) (planInfo, error) {
		_, args := st.ReadyRepeatersSQL(time.Now())
		p, text, err := benchdb.Explain(ctx, st.Pool(), sql, args...)
		if err != nil {
			return planInfo{}, err
		}
		return newPlanInfo(p, text), nil
	}
	newSQL, _ := st.ReadyRepeatersSQL(time.Now())
	steps := []func() error{
		func() (err error) { r.workSet, r.rows, err = timeQuery(ctx, runs, workSet); return },
		func() (err error) { r.probeAll, _, err = timeQuery(ctx, runs, probeAll); return },
		func() (err error) { r.prune, _, err = timeQuery(ctx, runs, prune); return },
		func() (err error) { r.workPlan, err = explain(newSQL); return },
		func() (err error) { r.allPlan, err = explain(benchdb.ProbeAllReadinessSQL(st)); return },
		func() (err error) {
			_, args := st.ReadyRepeatersSQL(time.Now())
			r.workCPU, _, err = benchdb.BackendCPU(ctx, st.Pool(), 100, newSQL, args...)
			return
		},
		func() (err error) {
			_, args := st.ReadyRepeatersSQL(time.Now())
			r.allCPU, _, err = benchdb.BackendCPU(ctx, st.Pool(), 10, benchdb.ProbeAllReadinessSQL(st), args...)
			return
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return r, err
		}
	}
	e.logf("%s repeaters: work set p50 %.2fms (CPU %.2fms), probe all p50 %.2fms (CPU %.2fms), prune p50 %.2fms",
		FormatCount(n), ms(r.workSet.P50), ms(r.workCPU), ms(r.probeAll.P50), ms(r.allCPU), ms(r.prune.P50))
	return r, nil
}
