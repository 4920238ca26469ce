package bench

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"repeaterd/repeaters"
	"repeaterd/repeaters/repeatertest"
	"repeaterd/store"
	"repeaterd/store/benchdb"
	"repeaterd/tasks"
)

// hostile: endpoints between working and dead, each on both paths — a
// poison record among healthy ones, slow tenants on a black hole beside a
// healthy one, a fragile endpoint accepting one request per window, and
// exact rate limits (hostilerate.go). The backoff runs at a seconds-scale
// policy (hostileBackoffMin) so a poison record's retries fit the window.
func runHostile(ctx context.Context, e *env) error {
	e.res.Tuning = append(e.res.Tuning, fmt.Sprintf("backoff-min=%s (a seconds-scale policy: the poison record's retries within 20s)", hostileBackoffMin))
	fmt.Fprintf(e.out, "tuning for this scenario: backoff-min=%s\n", hostileBackoffMin)
	if err := e.hostilePoison(ctx); err != nil {
		return err
	}
	if err := e.hostileSlowTenants(ctx); err != nil {
		return err
	}
	if err := e.hostileFragile(ctx); err != nil {
		return err
	}
	return e.hostileRates(ctx)
}

// hostileBackoffMin is the scenario's first backoff, per repeater and per
// record.
const hostileBackoffMin = 5 * time.Second

// hostileConfig is the engine of this scenario on one path.
func (e *env) hostileConfig(newPath bool) tasks.EngineConfig {
	cfg := e.engineConfig(newPath)
	cfg.Backoff.Min = hostileBackoffMin
	return cfg
}

// poisonPhase is one run of the poison part: a path, with or without the
// refused record.
type poisonPhase struct {
	newPath, poisoned bool
	healthyAt         time.Duration // when every healthy record was delivered
	healthy           int64
	attempts          int
	state             store.State
}

// hostilePoison: 120 records on one repeater, the oldest refused (503)
// every time; how long the other 119 take (against 120 without it) and how
// often the refused one is tried in 20 s.
func (e *env) hostilePoison(ctx context.Context) error {
	const records, window = 120, 20 * time.Second
	phases := []poisonPhase{{newPath: true, poisoned: true}, {newPath: true}, {poisoned: true}, {}}
	err := eachSide(ctx, e, phases, func(p *poisonPhase, st *store.Store, _ *sinkProc) error {
		var poison string
		srv, err := listenReceiver(repeatertest.Config{Respond: func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get(repeaters.HeaderWebhookID) == poison {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		}})
		if err != nil {
			return err
		}
		defer srv.Close(context.WithoutCancel(ctx))
		rep, err := createRepeater(ctx, st, "poison", srv.URL("/poison"), nil)
		if err != nil {
			return err
		}
		recs, err := st.RegisterMany(ctx, rep.ID, "application/json", bodies(records))
		if err != nil {
			return err
		}
		poisonID, healthyIDs := recs[0], recs[1:]
		if p.poisoned {
			poison = repeaters.WebhookID(poisonID)
		} else {
			healthyIDs = recs
		}
		began := time.Now()
		sys, err := e.startSystemWith(ctx, e.hostileConfig(p.newPath), tasks.RoleDispatcher, tasks.RoleWorker, tasks.RoleScheduler)
		if err != nil {
			return err
		}
		defer sys.stop()
		samples, err := e.watch(ctx, "poison/"+pathName(p.newPath), began, window, 0,
			func(ctx context.Context) (int64, error) { return benchdb.CountSuccessOf(ctx, st.Pool(), healthyIDs) })
		if err != nil {
			return err
		}
		p.healthy = samples[len(samples)-1].Count
		if at, ok := ReachedAt(samples, int64(len(healthyIDs))); ok {
			p.healthyAt = at
		}
		if p.poisoned {
			rec, _, err := st.GetRecord(ctx, poisonID)
			if err != nil {
				return err
			}
			p.attempts, p.state = rec.AttemptCount, rec.State
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.out, "\npoison: %d records on one repeater, the oldest refused (503) every time; %s window; control = the same without it\n", records, window)
	tw := e.table("PATH", "RUN", "HEALTHY DELIVERED", "ALL HEALTHY AT s", "POISON ATTEMPTS", "POISON STATE")
	for _, p := range phases {
		run, att, state := "poisoned", fmt.Sprint(p.attempts), p.state.String()
		if !p.poisoned {
			run, att, state = "control", "-", "-"
		}
		row(tw, pathName(p.newPath), run, p.healthy, secondsOrDash(p.healthyAt), att, state)
		e.figure("poison_"+pathName(p.newPath)+"_"+run, map[string]any{"healthy_delivered": p.healthy,
			"all_healthy_s": round2(p.healthyAt.Seconds()), "poison_attempts": p.attempts, "poison_state": p.state.String()})
	}
	tw.Flush()
	newP, newCtl := phases[0], phases[1]
	e.goal("poison: attempts on the refused record in 20s", "≤ 3, not cancelled",
		fmt.Sprintf("%d, %s", newP.attempts, newP.state), newP.attempts <= 3 && newP.state == store.StateFail)
	e.goal("poison: the other 119 as fast as without it", "≤ control + 1s (a poll)",
		fmt.Sprintf("%.2fs vs %.2fs", newP.healthyAt.Seconds(), newCtl.healthyAt.Seconds()),
		newP.healthyAt > 0 && newP.healthyAt <= newCtl.healthyAt+time.Second)
	return nil
}

func secondsOrDash(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", d.Seconds())
}

// hostileSlowTenants: 3 domains × 8 repeaters on an endpoint that never
// answers, at the longest timeout, and a healthy repeater in a fourth
// domain whose records arrive one at a time once the others hang.
func (e *env) hostileSlowTenants(ctx context.Context) error {
	const perDomain, slowRecords, healthyRecords, limit = 8, 5, 100, 40 * time.Second
	type phase struct {
		newPath     bool
		dist        Dist
		undelivered int
		held        int
	}
	phases := []phase{{newPath: true}, {}}
	err := eachSide(ctx, e, phases, func(p *phase, st *store.Store, sink *sinkProc) error {
		hole, err := repeatertest.NewBlackHole()
		if err != nil {
			return err
		}
		defer hole.Close()
		var slow []int64
		for _, d := range []string{"slow1", "slow2", "slow3"} {
			for i := range perDomain {
				r, err := createRepeater(ctx, st, d, hole.URL(fmt.Sprintf("/%s/%d", d, i)), func(r *store.Repeater) {
					r.Name, r.TimeoutMS = fmt.Sprintf("%s-%d", d, i), int(store.DefaultMaxTimeout/time.Millisecond)
				})
				if err != nil {
					return err
				}
				slow = append(slow, r.ID)
			}
		}
		if _, err := benchdb.LoadReady(ctx, st.Pool(), slow, slowRecords, benchBodyBytes); err != nil {
			return err
		}
		healthy, err := makeRepeaters(ctx, st, []string{"healthy"}, 1, func(int) string { return sink.URL("/healthy") })
		if err != nil {
			return err
		}
		sys, err := e.startSystemWith(ctx, e.hostileConfig(p.newPath), tasks.RoleDispatcher, tasks.RoleWorker, tasks.RoleScheduler)
		if err != nil {
			return err
		}
		defer sys.stop()
		defer hole.Close() // before the system stops: the hung requests fail and the drain is quick
		// The slow tenants hang first: their first requests reach the hole.
		select {
		case <-hole.Accepted():
		case <-time.After(limit):
			return fmt.Errorf("%s: nothing reached the black hole", pathName(p.newPath))
		}
		time.Sleep(time.Second) // the rest of their first waves
		var ids []int64
		began := time.Now()
		for k := range healthyRecords {
			rec, _, err := st.RegisterRecord(ctx, store.RegisterParams{RepeaterID: healthy[0], Body: fmt.Appendf(nil, `{"n":%d}`, k)})
			if err != nil {
				return err
			}
			ids = append(ids, rec.ID)
			time.Sleep(20 * time.Millisecond)
		}
		lat, undelivered, err := e.latencies(ctx, st, sink, ids, began, limit)
		if err != nil {
			return err
		}
		p.dist, p.undelivered, p.held = Summarize(lat), undelivered, hole.Held()
		e.logf("slow tenants/%s: healthy p99 %.0fms, %d undelivered, %d requests hanging", pathName(p.newPath), ms(p.dist.P99), undelivered, p.held)
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.out, "\nslow tenants: 3 domains × %d repeaters × %d records on a black hole (timeout_ms = the %s maximum); %d records of a healthy repeater in a fourth domain registered one at a time (50/s)\n",
		perDomain, slowRecords, store.DefaultMaxTimeout, healthyRecords)
	tw := e.table("PATH", "HEALTHY p50 ms", "p99 ms", "MAX ms", "UNDELIVERED", "REQUESTS HANGING")
	for _, p := range phases {
		row(tw, pathName(p.newPath), fmt.Sprintf("%.0f", ms(p.dist.P50)), fmt.Sprintf("%.0f", ms(p.dist.P99)),
			fmt.Sprintf("%.0f", ms(p.dist.Max)), p.undelivered, p.held)
		e.figure("slow_tenants_"+pathName(p.newPath), map[string]any{"healthy": p.dist.JSON(), "undelivered": p.undelivered, "requests_hanging": p.held})
	}
	tw.Flush()
	if phases[1].undelivered > 0 {
		e.notef("legacy: %d healthy records undelivered after %s (latency counted up to then, a lower bound): the legacy path has no per-domain share", phases[1].undelivered, limit)
	}
	newP := phases[0]
	e.goal("slow tenants: healthy p99 registration→delivery", "< 1 s", fmt.Sprintf("%.0f ms", ms(newP.dist.P99)),
		newP.dist.P99 < time.Second && newP.undelivered == 0)
	return nil
}

// latencies waits (until limit after began) for ids at the sink and returns
// their registration → first arrival times; an undelivered one counts up to
// now.
func (e *env) latencies(ctx context.Context, st *store.Store, sink *sinkProc, ids []int64, began time.Time, limit time.Duration) ([]time.Duration, int, error) {
	hooks := make([]string, len(ids))
	for i, id := range ids {
		hooks[i] = repeaters.WebhookID(id)
	}
	var arrived map[string]time.Time
	for {
		var err error
		if arrived, err = sink.Lookup(ctx, hooks); err != nil {
			return nil, 0, err
		}
		if len(arrived) == len(ids) || time.Since(began) > limit {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	registered, _, err := benchdb.RecordTimes(ctx, st.Pool(), ids)
	if err != nil {
		return nil, 0, err
	}
	var lat []time.Duration
	undelivered := 0
	for i, id := range ids {
		at, ok := arrived[hooks[i]]
		if !ok {
			undelivered++
			at = time.Now()
		}
		lat = append(lat, at.Sub(registered[id]))
	}
	return lat, undelivered, nil
}

// hostileFragile: an endpoint that accepts one request per 2 s window and
// answers 503 to the rest, for a minute from its first request.
func (e *env) hostileFragile(ctx context.Context) error {
	const window, records = 2 * time.Second, 1000
	span := e.durationOf(time.Minute, 30*time.Second)
	type phase struct {
		newPath                                bool
		accepted, refused, delivering, windows int
		pace                                   float64
		backoffs                               int
	}
	phases := []phase{{newPath: true}, {}}
	err := eachSide(ctx, e, phases, func(p *phase, st *store.Store, _ *sinkProc) error {
		fragile := &repeatertest.Windowed{Window: window, PerWindow: 1}
		srv, err := listenReceiver(repeatertest.Config{Respond: fragile.Respond})
		if err != nil {
			return err
		}
		defer srv.Close(context.WithoutCancel(ctx))
		rep, err := createRepeater(ctx, st, "fragile", srv.URL("/fragile"), func(r *store.Repeater) { r.MaxAttempts = 1000 })
		if err != nil {
			return err
		}
		if _, err := st.RegisterMany(ctx, rep.ID, "application/json", bodies(records)); err != nil {
			return err
		}
		sys, err := e.startSystemWith(ctx, e.hostileConfig(p.newPath), tasks.RoleDispatcher, tasks.RoleWorker, tasks.RoleScheduler)
		if err != nil {
			return err
		}
		defer sys.stop()
		if ok := srv.WaitCount(ctx, "/fragile", 1); !ok {
			return ctx.Err()
		}
		from := srv.Times("/fragile")[0]
		e.logf("fragile/%s: first request; watching for %s", pathName(p.newPath), span)
		select {
		case <-time.After(time.Until(from.Add(span))):
		case <-ctx.Done():
			return ctx.Err()
		}
		p.accepted, p.refused, p.delivering, p.windows = fragile.Counts(from, from.Add(span))
		r, err := st.GetRepeater(ctx, rep.ID)
		if err != nil {
			return err
		}
		p.pace, p.backoffs = r.PacePerS, r.BackoffCount
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.out, "\nfragile endpoint: one request accepted per %s window, 503 to the rest; %d records; %s from its first request\n", window, records, span)
	tw := e.table("PATH", "WINDOWS DELIVERING", "ACCEPTED", "REFUSED", "PACE AT END /s", "BACKOFF COUNT")
	for _, p := range phases {
		row(tw, pathName(p.newPath), fmt.Sprintf("%d/%d (%.0f %%)", p.delivering, p.windows, pct(p.delivering, p.windows)),
			p.accepted, p.refused, fmt.Sprintf("%.2f", p.pace), p.backoffs)
		e.figure("fragile_"+pathName(p.newPath), map[string]any{"windows": p.windows, "windows_delivering": p.delivering,
			"accepted": p.accepted, "refused": p.refused, "pace_per_s": round2(p.pace), "backoff_count": p.backoffs})
	}
	tw.Flush()
	newP := phases[0]
	e.goal("fragile: windows that deliver", "≥ 80 %", fmt.Sprintf("%.0f %%", pct(newP.delivering, newP.windows)), newP.delivering*5 >= newP.windows*4)
	e.goal("fragile: refused ≤ delivered", "≤ 1×", fmt.Sprintf("%d / %d", newP.refused, newP.accepted), newP.refused <= newP.accepted)
	return nil
}

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// listenReceiver serves a receiver in this process: for the parts whose
// endpoint answers per request (a poison record, a window), not per URL, at
// rates far below what would need the sink's own process.
func listenReceiver(cfg repeatertest.Config) (*repeatertest.Server, error) {
	rc, err := repeatertest.New(cfg)
	if err != nil {
		return nil, err
	}
	return repeatertest.Listen("127.0.0.1:0", rc)
}

// createRepeater creates a repeater of domain delivering to url, edited.
func createRepeater(ctx context.Context, st *store.Store, domain, url string, edit func(*store.Repeater)) (*store.Repeater, error) {
	r := &store.Repeater{Domain: domain, Name: domain, URL: url}
	if edit != nil {
		edit(r)
	}
	return r, st.CreateRepeater(ctx, r)
}

// bodies returns n small JSON bodies.
func bodies(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, `{"n":%d}`, i)
	}
	return out
}
