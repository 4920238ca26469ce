package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"repeaterd/dashboards/console"
	"repeaterd/store"
	"repeaterd/store/benchdb"
)

// console: how long the operator console takes to render its pages over a
// long history (2,000 repeaters in 300 domains, --size records), with the
// counts from the WAL stats (as in production) and, as a second side, with
// no stats consumer (the bounded live counts). Each page is rendered
// whole by the console's handler in this process, client-timed, the first
// render a warm-up.

const (
	consoleRepeaters = 2000
	consoleDomains   = 300
	consoleAttempts  = 100_000 // in the last hour
	consoleSlot      = "repeaterd_bench_console"
	consoleP99Goal   = 100 * time.Millisecond
)

type consolePage struct {
	name, path string
}

func runConsole(ctx context.Context, e *env) error {
	st, err := e.freshDB(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	began := time.Now()
	err = benchdb.SeedHistory(ctx, st.Pool(), benchdb.HistoryParams{Domains: consoleDomains, Repeaters: consoleRepeaters,
		Records: e.size, ReadyFraction: 0.04, Progress: func(n int) { e.logf("console: %s records loaded", FormatCount(n)) }})
	if err != nil {
		return err
	}
	if err := benchdb.SeedRecentAttempts(ctx, st.Pool(), consoleAttempts); err != nil {
		return err
	}
	if err := benchdb.FeedStats(ctx, st.Pool(), consoleSlot); err != nil {
		return err
	}
	load := time.Since(began)
	e.figure("repeaters", consoleRepeaters)
	e.figure("load_s", round2(load.Seconds()))
	pages, err := consolePages(ctx, st)
	if err != nil {
		return err
	}
	c, err := console.New(st, console.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	runs := max(e.opt.Runs, 50)
	wal, err := timePages(ctx, c, pages, runs, func() error { return benchdb.TouchStats(ctx, st.Pool()) })
	if err != nil {
		return err
	}
	if err := benchdb.UnfeedStats(ctx, st.Pool(), consoleSlot); err != nil {
		return err
	}
	live, err := timePages(ctx, c, pages[1:], runs, nil) // "/" counts every record live: left out
	if err != nil {
		return err
	}

	fmt.Fprintf(e.out, "\n%d repeaters in %d domains, %s records (~4 %% ready), %s attempts in the last hour; %d renders a page after a warm-up (fewer past 30 s a page: RUNS), client-timed in process (load %.0f s)\n",
		consoleRepeaters, consoleDomains, FormatCount(e.size), FormatCount(consoleAttempts), runs, load.Seconds())
	tw := e.table("PAGE", "PATH", "WAL RUNS", "WAL p50 ms", "WAL p99 ms", "WAL max ms", "LIVE RUNS", "LIVE p50 ms", "LIVE p99 ms", "BYTES")
	figures := map[string]any{}
	worst := time.Duration(0)
	for i, p := range pages {
		w := wal[i]
		l := Dist{}
		if i > 0 {
			l = live[i-1].dist
		}
		row(tw, p.name, p.path, w.dist.N, f2(w.dist.P50), f2(w.dist.P99), f2(w.dist.Max), l.N, f2(l.P50), f2(l.P99), w.bytes)
		figures[p.name] = map[string]any{"path": p.path, "wal": w.dist.JSON(), "live": l.JSON(), "bytes": w.bytes}
		worst = max(worst, w.dist.P99)
	}
	tw.Flush()
	e.figure("pages", figures)
	e.figure("worst_p99_ms", ms(worst))
	e.notef("WAL = counts from repeat_record_stats, made exact by one GROUP BY after loading and presented as current (a slot and fresh stats_progress; no consumer streams it); LIVE = no stats feed: backlog and state counts are bounded counts on the (repeater, state) index, shown \"1,000+\" past the cap")
	e.notef("the overview (/) with live counts runs GROUP BY over every record, as it did before this scenario: it is measured with WAL counts only")
	e.goal(fmt.Sprintf("every page's p99 at %s records (WAL counts)", FormatCount(e.size)), "≤ 100 ms",
		fmt.Sprintf("%.1f ms (worst)", ms(worst)), worst <= consoleP99Goal)
	return nil
}

// consolePages picks the pages to time: the busiest repeater (most
// records), one of its records in the middle of its history, a domain.
func consolePages(ctx context.Context, st *store.Store) ([]consolePage, error) {
	var rep, mid, payload int64
	var domain string
	err := st.Pool().QueryRow(ctx, `SELECT repeater_id FROM repeat_record_stats GROUP BY 1 ORDER BY sum(count) DESC LIMIT 1`).Scan(&rep)
	if err != nil {
		return nil, err
	}
	err = st.Pool().QueryRow(ctx, `SELECT r.domain, rr.id, rr.payload_id FROM repeaters r
		JOIN LATERAL (SELECT id, payload_id FROM repeat_records WHERE repeater_id = r.id AND state = 4
			ORDER BY id OFFSET (SELECT count / 2 FROM repeat_record_stats WHERE repeater_id = r.id AND state = 4) LIMIT 1) rr ON true
		WHERE r.id = $1`, rep).Scan(&domain, &mid, &payload)
	if err != nil {
		return nil, err
	}
	repPath := fmt.Sprintf("/ui/repeaters/%d", rep)
	return []consolePage{
		{"overview", "/"},
		{"repeaters", "/ui/repeaters"},
		{"repeaters, page 11", "/ui/repeaters?after=1000"},
		{"repeaters of a domain", "/ui/repeaters?domain=" + domain},
		{"repeater", repPath},
		{"repeater, state=success", repPath + "?state=success"},
		{"repeater, state=cancelled", repPath + "?state=cancelled"},
		{"repeater, older page", fmt.Sprintf("%s?cursor=%d", repPath, mid)},
		{"repeater, time range", repPath + "?after=" + time.Now().UTC().Add(-15*24*time.Hour).Format("2006-01-02T15:04") +
			"&before=" + time.Now().UTC().Add(-14*24*time.Hour).Format("2006-01-02T15:04")},
		{"repeater, payload id", fmt.Sprintf("%s?key=%d", repPath, payload)},
		{"record", fmt.Sprintf("/ui/records/%d", mid)},
		{"domains", "/ui/domains"},
		{"domain", "/ui/domains/" + domain},
	}, nil
}

type pageTiming struct {
	dist  Dist
	bytes int
}

// pageBudget bounds one page's series: a page that takes seconds to render
// (the live counts over 100 M records) stops after this long, with at least
// minPageRuns renders; its n says how many.
const (
	pageBudget  = 30 * time.Second
	minPageRuns = 5
)

// timePages renders each page runs times after a warm-up (fewer when a
// series outlasts pageBudget); before, when set, runs before each page's
// series.
func timePages(ctx context.Context, h http.Handler, pages []consolePage, runs int, before func() error) ([]pageTiming, error) {
	out := make([]pageTiming, len(pages))
	for i, p := range pages {
		if before != nil {
			if err := before(); err != nil {
				return nil, err
			}
		}
		var ds []time.Duration
		began := time.Now()
		for n := range runs + 1 {
			if len(ds) >= minPageRuns && time.Since(began) > pageBudget {
				break
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			rec := httptest.NewRecorder()
			req := httptest.NewRequestWithContext(ctx, http.MethodGet, p.path, nil)
			t0 := time.Now()
			h.ServeHTTP(rec, req)
			d := time.Since(t0)
			if rec.Code != http.StatusOK {
				return nil, fmt.Errorf("console bench: GET %s: %d %.300s", p.path, rec.Code, rec.Body)
			}
			if n > 0 {
				ds = append(ds, d)
			}
			out[i].bytes = rec.Body.Len()
		}
		out[i].dist = Summarize(ds)
	}
	return out, nil
}
