package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"repeaterd/store"
	"repeaterd/store/benchdb"
)

// readiness: the dispatcher's readiness query (store.ReadyRepeatersSQL)
// against the original OR-join, at growing history sizes.
//
// The new query is timed as the dispatcher runs it: store.ReadyRepeaters,
// planned afresh every pass. Diagnostics beside it: the same through pgx's
// prepared-statement cache with QueryCustomPlan's twin (CUSTOM), the
// generic plan's EXPLAIN, and both again after VACUUM. PAGE is one batch's
// page of a repeater's ready records (store.DueCounts, limit 50: the range
// a claim reads), on a different repeater each run.
func runReadiness(ctx context.Context, e *env) error {
	if strings.HasPrefix(e.opt.Size, endpointsPrefix) {
		return runReadinessEndpoints(ctx, e)
	}
	var sizes []int
	switch e.opt.Size {
	case "", "full", "quick":
		sizes = []int{1_000_000, 10_000_000}
	default:
		var err error
		if sizes, err = ParseCounts(e.opt.Size); err != nil {
			return err
		}
	}
	const nDomains, nRepeaters, readyFraction = 300, 2000, 0.04
	runs := e.opt.Runs
	e.figure("repeaters", nRepeaters)
	e.figure("domains", nDomains)
	e.figure("ready_fraction", readyFraction)
	e.figure("runs", runs)

	var results []readinessResult
	for _, size := range sizes {
		st, err := e.freshDB(ctx)
		if err != nil {
			return err
		}
		r, err := e.readinessAt(ctx, st, size, nDomains, nRepeaters, readyFraction, runs)
		st.Close()
		if err != nil {
			return err
		}
		results = append(results, r)
	}

	fmt.Fprintf(e.out, "\n%d repeaters in %d domains (80 %% not backed off, 10 %% due, 10 %% backed off; 1 %% paused), ~%.0f %% of records ready; p50/p90 of %d runs, client-timed, every row read\n",
		nRepeaters, nDomains, readyFraction*100, runs)
	fmt.Fprintln(e.out, "NEW = store.ReadyRepeaters as the dispatcher runs it (planned every pass); CUSTOM = the same SQL on an unnamed statement; PAGE = one batch's page of a repeater's ready records (DueCounts, limit 50); AFTER VACUUM = once VACUUM (ANALYZE) has run (diagnostic)")
	tw := e.table("RECORDS", "READY RECORDS", "READY REPEATERS", "NEW p50 ms", "NEW p90 ms", "NEW ROWS", "CUSTOM p50 ms", "PAGE p50 ms", "PAGE p99 ms",
		"OR-JOIN p50 ms", "OR-JOIN p90 ms", "OR-JOIN ROWS", "SPEED-UP", "AFTER VACUUM: NEW p50 ms", "CUSTOM p50 ms", "LOAD s")
	for _, r := range results {
		row(tw, FormatCount(r.size), r.readyRecords, r.readyReps, f2(r.cached.dist.P50), f2(r.cached.dist.P90), r.cached.rows,
			f2(r.custom.dist.P50), f2(r.page.dist.P50), f2(r.page.dist.P99), f2(r.orJoin.dist.P50), f2(r.orJoin.dist.P90), r.orJoin.rows,
			fmt.Sprintf("%.0f×", r.speedup()), f2(r.vacCached.dist.P50), f2(r.vacCustom.dist.P50), fmt.Sprintf("%.0f", r.load.Seconds()))
	}
	tw.Flush()
	fmt.Fprintln(e.out, "\nEXPLAIN (ANALYZE, BUFFERS), one run each (exec ms, shared buffers hit/read):")
	for _, r := range results {
		for _, p := range []struct {
			name string
			plan planInfo
		}{{"new, custom plan", r.customPlan}, {"new, generic plan", r.genericPlan}, {"OR-join", r.orJoinPlan},
			{"vacuumed, custom plan", r.vacCustomPlan}, {"vacuumed, generic plan", r.vacGenericPlan}} {
			fmt.Fprintf(e.out, "  %-4s %-22s %8.2f ms  %12s  %s\n", FormatCount(r.size), p.name, p.plan.exec, p.plan.buffers, p.plan.summary)
		}
	}
	last := results[len(results)-1]
	fmt.Fprintf(e.out, "\nplans at %s:\n-- new, custom plan (store.ReadyRepeatersSQL)\n%s\n-- new, generic plan\n%s\n-- OR-join (as written, without DISTINCT)\n%s\n",
		FormatCount(last.size), indent(last.customPlan.text), indent(last.genericPlan.text), indent(last.orJoinPlan.text))
	e.notef("the OR-join is measured as written but without its DISTINCT: it returns one row per ready record, all of them read by the client; unlike the new query it tests neither the domain flag nor next_check")
	e.notef("records are loaded with generate_series, foreign-key triggers skipped (session_replication_role = replica), then ANALYZE; the goals use the NEW column, measured before any VACUUM (autovacuum may run meanwhile)")
	e.notef("each variant runs %d times in a block after one warm-up", runs)

	sizesJSON := map[string]any{}
	for _, r := range results {
		sizesJSON[FormatCount(r.size)] = map[string]any{
			"ready_records": r.readyRecords, "ready_repeaters": r.readyReps, "load_s": round2(r.load.Seconds()),
			"new": r.cached.dist.JSON(), "new_rows": r.cached.rows, "new_custom_plan": r.custom.dist.JSON(),
			"page":    r.page.dist.JSON(),
			"or_join": r.orJoin.dist.JSON(), "or_join_rows": r.orJoin.rows,
			"after_vacuum_new": r.vacCached.dist.JSON(), "after_vacuum_new_custom_plan": r.vacCustom.dist.JSON(),
			"explain_new_custom": r.customPlan.json(), "explain_new_generic": r.genericPlan.json(),
			"explain_or_join": r.orJoinPlan.json(), "explain_vacuumed_custom": r.vacCustomPlan.json(),
			"explain_vacuumed_generic": r.vacGenericPlan.json(),
			"speedup_p50":              round2(r.speedup()),
		}
	}
	e.figure("sizes", sizesJSON)
	e.figure("speedup_p50_largest", round2(last.speedup()))
	e.goal(fmt.Sprintf("new vs OR-join at %s", FormatCount(last.size)), "≥ 10× faster", fmt.Sprintf("%.0f×", last.speedup()), last.speedup() >= 10)
	if last.size >= 100_000_000 {
		e.goal(fmt.Sprintf("new p50 at %s", FormatCount(last.size)), "≤ 20 ms", fmt.Sprintf("%.2f ms", ms(last.cached.dist.P50)), ms(last.cached.dist.P50) <= 20)
	}
	if len(results) > 1 {
		first := results[0]
		growth := func(f func(readinessResult) time.Duration) float64 { return ratio(float64(f(last)), float64(f(first))) }
		g := growth(func(r readinessResult) time.Duration { return r.cached.dist.P50 })
		gCustom := growth(func(r readinessResult) time.Duration { return r.custom.dist.P50 })
		gOld := growth(func(r readinessResult) time.Duration { return r.orJoin.dist.P50 })
		gVac := growth(func(r readinessResult) time.Duration { return r.vacCached.dist.P50 })
		fmt.Fprintf(e.out, "growth %s → %s (p50): new %.2f×, custom plan %.2f×, OR-join %.2f×, new after VACUUM %.2f×\n",
			FormatCount(first.size), FormatCount(last.size), g, gCustom, gOld, gVac)
		e.figure("growth_new", round2(g))
		e.figure("growth_new_custom_plan", round2(gCustom))
		e.figure("growth_or_join", round2(gOld))
		e.figure("growth_new_after_vacuum", round2(gVac))
		e.goal(fmt.Sprintf("new at %s vs %s", FormatCount(last.size), FormatCount(first.size)), "≤ 1.5×",
			fmt.Sprintf("%.2f× (%.2f → %.2f ms)", g, ms(first.cached.dist.P50), ms(last.cached.dist.P50)), g <= 1.5)
	}
	return nil
}

type timing struct {
	dist Dist
	rows int
}

type planInfo struct {
	exec    float64
	buffers buffers
	summary string
	text    string
}

func (p planInfo) json() map[string]any {
	return map[string]any{"exec_ms": round2(p.exec), "buffers": p.buffers.json(), "plan": p.summary}
}

func newPlanInfo(p *benchdb.Plan, text string) planInfo {
	return planInfo{exec: p.ExecutionTime, buffers: planBuffers(p.Plan), summary: planSummary(p), text: text}
}

type readinessResult struct {
	size                                int
	load                                time.Duration
	readyRecords, readyReps             int64
	cached, custom, orJoin, page        timing
	vacCached, vacCustom                timing
	customPlan, genericPlan, orJoinPlan planInfo
	vacCustomPlan, vacGenericPlan       planInfo
}

func (r readinessResult) speedup() float64 {
	return ratio(float64(r.orJoin.dist.P50), float64(r.cached.dist.P50))
}

func f2(d time.Duration) string { return fmt.Sprintf("%.2f", ms(d)) }

// readinessAt loads a history of size records and times every variant.
func (e *env) readinessAt(ctx context.Context, st *store.Store, size, nDomains, nRepeaters int, readyFraction float64, runs int) (readinessResult, error) {
	r := readinessResult{size: size}
	began := time.Now()
	err := benchdb.SeedHistory(ctx, st.Pool(), benchdb.HistoryParams{
		Domains: nDomains, Repeaters: nRepeaters, Records: size, ReadyFraction: readyFraction,
		Progress: func(n int) { e.logf("loaded %s of %s records", FormatCount(n), FormatCount(size)) },
	})
	if err != nil {
		return r, err
	}
	r.load = time.Since(began)
	if r.readyRecords, r.readyReps, err = benchdb.CountReady(ctx, st.Pool()); err != nil {
		return r, err
	}
	e.logf("%s records loaded and analyzed in %s; %d ready records on %d repeaters",
		FormatCount(size), r.load.Round(time.Second), r.readyRecords, r.readyReps)
	cached := func(ctx context.Context) (int, error) {
		groups, err := st.ReadyRepeaters(ctx, time.Now())
		n := 0
		for _, g := range groups {
			n += len(g.Repeaters)
		}
		return n, err
	}
	pageOf := int64(0)
	page := func(ctx context.Context) (int, error) {
		pageOf = pageOf%int64(nRepeaters) + 1
		due, err := st.DueCounts(ctx, []int64{pageOf}, time.Now(), 50)
		return due[pageOf], err
	}
	custom := func(ctx context.Context) (int, error) {
		sql, args := st.ReadyRepeatersSQL(time.Now())
		return benchdb.QueryCustomPlan(ctx, st.Pool(), sql, args...)
	}
	orJoin := func(ctx context.Context) (int, error) {
		return benchdb.Query(ctx, st.Pool(), benchdb.OrJoinReadinessSQL)
	}
	explain := func(generic bool) (planInfo, error) {
		sql, args := st.ReadyRepeatersSQL(time.Now())
		explainFn := benchdb.Explain
		if generic {
			explainFn = benchdb.ExplainGeneric
		}
		p, text, err := explainFn(ctx, st.Pool(), sql, args...)
		if err != nil {
			return planInfo{}, err
		}
		return newPlanInfo(p, text), nil
	}
	// Each variant in a block of its own after a warm-up: the dispatcher
	// runs its query every pass, so its pages stay cached, and the OR-join
	// at 10M reads more than shared_buffers holds, which would evict them
	// if the runs were interleaved.
	steps := []func() error{
		func() (err error) { r.cached.dist, r.cached.rows, err = timeQuery(ctx, runs, cached); return },
		func() (err error) { r.custom.dist, r.custom.rows, err = timeQuery(ctx, runs, custom); return },
		func() (err error) { r.page.dist, r.page.rows, err = timeQuery(ctx, runs, page); return },
		func() (err error) { r.customPlan, err = explain(false); return },
		func() (err error) { r.genericPlan, err = explain(true); return },
		func() (err error) { r.orJoin.dist, r.orJoin.rows, err = timeQuery(ctx, runs, orJoin); return },
		func() error {
			p, text, err := benchdb.Explain(ctx, st.Pool(), benchdb.OrJoinReadinessSQL)
			if err == nil {
				r.orJoinPlan = newPlanInfo(p, text)
			}
			return err
		},
		func() error {
			began := time.Now()
			err := benchdb.Vacuum(ctx, st.Pool())
			e.logf("%s: VACUUM (ANALYZE) in %s", FormatCount(size), time.Since(began).Round(time.Second))
			return err
		},
		func() (err error) { r.vacCached.dist, r.vacCached.rows, err = timeQuery(ctx, runs, cached); return },
		func() (err error) { r.vacCustom.dist, r.vacCustom.rows, err = timeQuery(ctx, runs, custom); return },
		func() (err error) { r.vacCustomPlan, err = explain(false); return },
		func() (err error) { r.vacGenericPlan, err = explain(true); return },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return r, err
		}
	}
	e.logf("%s: new p50 %.2fms (custom %.2fms), OR-join p50 %.2fms (%d rows); after VACUUM new p50 %.2fms", FormatCount(size),
		ms(r.cached.dist.P50), ms(r.custom.dist.P50), ms(r.orJoin.dist.P50), r.orJoin.rows, ms(r.vacCached.dist.P50))
	return r, nil
}

// planSummary lists a plan's scans, joins and subplans with loops and rows.
func planSummary(p *benchdb.Plan) string {
	var parts []string
	var walk func(n benchdb.PlanNode)
	walk = func(n benchdb.PlanNode) {
		switch {
		case strings.Contains(n.NodeType, "Scan"):
			s := n.NodeType
			if n.Index != "" {
				s += " using " + n.Index
			} else if n.Relation != "" {
				s += " on " + n.Relation
			}
			s += fmt.Sprintf(" (loops %.0f, rows %.0f", n.ActualLoops, n.ActualRows)
			if n.HeapFetches > 0 {
				s += fmt.Sprintf(", heap fetches %.0f", n.HeapFetches)
			}
			if n.RowsRemoved > 0 {
				s += fmt.Sprintf(", removed by filter %.0f", n.RowsRemoved)
			}
			parts = append(parts, s+")")
		case strings.Contains(n.NodeType, "Join"), n.NodeType == "Nested Loop", n.NodeType == "Append",
			n.NodeType == "Hash", n.NodeType == "Sort", n.NodeType == "Unique", n.NodeType == "Aggregate":
			parts = append(parts, n.NodeType)
		}
		for _, c := range n.Plans {
			walk(c)
		}
	}
	walk(p.Plan)
	return strings.Join(parts, " → ")
}

// buffers is a plan's shared buffers: found in shared_buffers, or read in
// (from the OS cache or disk).
type buffers struct{ hit, read int64 }

func (b buffers) String() string { return fmt.Sprintf("%d/%d", b.hit, b.read) }

func (b buffers) json() map[string]int64 { return map[string]int64{"hit": b.hit, "read": b.read} }

func planBuffers(n benchdb.PlanNode) buffers { return buffers{n.SharedHit, n.SharedRead} }

// timeQuery runs q once to warm up, then runs times, client-timed.
func timeQuery(ctx context.Context, runs int, q func(context.Context) (int, error)) (Dist, int, error) {
	if _, err := q(ctx); err != nil {
		return Dist{}, 0, err
	}
	var times []time.Duration
	var rows int
	for range runs {
		t := time.Now()
		n, err := q(ctx)
		if err != nil {
			return Dist{}, 0, err
		}
		times = append(times, time.Since(t))
		rows = n
	}
	return Summarize(times), rows, nil
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}
