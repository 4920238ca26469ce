package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"time"

	"repeaterd/repeaters"
	"repeaterd/store"
	"repeaterd/tasks"
)

// The rate-limit part of hostile: a repeater at 10/s with a burst of 5 (at
// most 25 requests in any 2 s), on the new path across a dispatcher leader
// killed mid-run and on the legacy path; ten single-record repeaters under
// a 100/s global limit; and an absurd limit refused.
func (e *env) hostileRates(ctx context.Context) error {
	const rate, burst, records, span = 10, 5, 120, 2 * time.Second
	limit := burst + int(rate*span.Seconds())
	type phase struct {
		newPath   bool
		most      int
		delivered int
		took      time.Duration
		killedAt  time.Duration
	}
	phases := []phase{{newPath: true}, {}}
	err := eachSide(ctx, e, phases, func(p *phase, st *store.Store, sink *sinkProc) error {
		rep, err := createRepeater(ctx, st, "limited", sink.URL("/limited"), func(r *store.Repeater) { r.RateLimitPerS, r.RateBurst = rate, burst })
		if err != nil {
			return err
		}
		ids, err := st.RegisterMany(ctx, rep.ID, "application/json", bodies(records))
		if err != nil {
			return err
		}
		began := time.Now()
		if p.newPath {
			p.killedAt, err = e.deliverAcrossALeaderKill(ctx, sink, ids)
		} else {
			err = e.deliverInProcess(ctx, sink, ids, tasks.RoleWorker, tasks.RoleScheduler)
		}
		if err != nil {
			return err
		}
		p.took = time.Since(began)
		times, err := arrivals(ctx, sink, ids)
		if err != nil {
			return err
		}
		p.delivered, p.most = len(times), mostWithin(times, span)
		e.logf("rates/%s: %d delivered in %s, at most %d in any %s", pathName(p.newPath), p.delivered, p.took.Round(time.Millisecond), p.most, span)
		return nil
	})
	if err != nil {
		return err
	}
	first, err := e.firstPassUnderAGlobalLimit(ctx)
	if err != nil {
		return err
	}
	absurd, err := e.absurdRateRefused(ctx)
	if err != nil {
		return err
	}

	fmt.Fprintf(e.out, "\nrate limits: one repeater at %d/s, burst %d (at most %d requests in any %s), %d records; the new path's dispatcher leader is killed (SIGKILL) mid-run and a standby takes over\n",
		rate, burst, limit, span, records)
	tw := e.table("PATH", "DELIVERED", "TOOK s", "MOST IN ANY 2s", "LIMIT", "LEADER KILLED AT s")
	for _, p := range phases {
		killed := "-"
		if p.killedAt > 0 {
			killed = fmt.Sprintf("%.1f", p.killedAt.Seconds())
		}
		row(tw, pathName(p.newPath), p.delivered, fmt.Sprintf("%.1f", p.took.Seconds()), p.most, limit, killed)
		e.figure("rate_limit_"+pathName(p.newPath), map[string]any{"delivered": p.delivered, "took_s": round2(p.took.Seconds()),
			"most_in_2s": p.most, "limit_in_2s": limit, "leader_killed_at_s": round2(p.killedAt.Seconds())})
	}
	tw.Flush()
	fmt.Fprintf(e.out, "10 single-record repeaters under a 100/s global limit: %d dispatched in the first pass\n", first)
	fmt.Fprintf(e.out, "rate_limit_per_s 1e-11: %v\n", absurd)
	e.figure("global_limit_first_pass_batches", first)
	e.figure("absurd_rate_refused", absurd != nil)
	for _, p := range phases {
		e.goal("rate limit, "+pathName(p.newPath)+": requests in any 2s", fmt.Sprintf("≤ %d", limit), fmt.Sprint(p.most),
			p.most <= limit && p.delivered == records)
	}
	e.goal("global limit: single-record repeaters in the first pass", "10 of 10", fmt.Sprintf("%d of 10", first), first == 10)
	e.goal("rate_limit_per_s 1e-11", "refused", fmt.Sprint(absurd != nil), absurd != nil && store.ErrorCode(absurd) == store.EINVALID)
	return nil
}

// deliverInProcess runs roles in this process until ids reach the sink.
func (e *env) deliverInProcess(ctx context.Context, sink *sinkProc, ids []int64, roles ...string) error {
	sys, err := e.startSystemWith(ctx, e.hostileConfig(false), roles...)
	if err != nil {
		return err
	}
	defer sys.stop()
	return waitDelivered(ctx, sink, ids, time.Minute)
}

// deliverAcrossALeaderKill runs the worker here and two dispatchers as
// `repeaterd run --roles dispatcher` children: the first leads, the second
// stands by, and the first is killed -9 once a third of ids arrived.
func (e *env) deliverAcrossALeaderKill(ctx context.Context, sink *sinkProc, ids []int64) (killedAt time.Duration, err error) {
	sys, err := e.startSystemWith(ctx, e.hostileConfig(true), tasks.RoleWorker)
	if err != nil {
		return 0, err
	}
	defer sys.stop()
	began := time.Now()
	leader, err := e.startDispatcher()
	if err != nil {
		return 0, err
	}
	defer leader.stop()
	if ok, err := sink.WaitCount(ctx, "/limited", 1, 30*time.Second); err != nil || !ok {
		return 0, fmt.Errorf("nothing delivered under the first dispatcher (%v)", err)
	}
	standby, err := e.startDispatcher()
	if err != nil {
		return 0, err
	}
	defer standby.stop()
	if ok, err := sink.WaitCount(ctx, "/limited", len(ids)/3, time.Minute); err != nil || !ok {
		return 0, fmt.Errorf("a third not delivered (%v)", err)
	}
	_ = leader.cmd.Process.Kill()
	killedAt = time.Since(began)
	e.logf("rates/new: leader killed at %.1fs", killedAt.Seconds())
	return killedAt, waitDelivered(ctx, sink, ids, time.Minute)
}

// child is a `repeaterd run` child process.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

func (e *env) startDispatcher() (*child, error) {
	cmd := exec.Command(e.opt.Binary, "run", "--roles", tasks.RoleDispatcher)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+e.dbURL, "REDIS_URL="+e.redisURL,
		"REPEATERD_ALLOW_PRIVATE_TARGETS=true", "REPEATERD_BACKOFF_MIN="+hostileBackoffMin.String())
	logs := &limitedBuffer{max: 8 << 10}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.exited) }()
	return c, nil
}

func (c *child) stop() { stopChild(c.cmd.Process, c.exited, 10*time.Second) }

func waitDelivered(ctx context.Context, sink *sinkProc, ids []int64, limit time.Duration) error {
	ok, err := sink.WaitCount(ctx, "/limited", len(ids), limit)
	if err == nil && !ok {
		err = fmt.Errorf("not every record delivered in %s", limit)
	}
	return err
}

// arrivals returns the first arrival of each of ids at the sink, in order.
func arrivals(ctx context.Context, sink *sinkProc, ids []int64) ([]time.Time, error) {
	hooks := make([]string, len(ids))
	for i, id := range ids {
		hooks[i] = repeaters.WebhookID(id)
	}
	got, err := sink.Lookup(ctx, hooks)
	if err != nil {
		return nil, err
	}
	var out []time.Time
	for _, at := range got {
		out = append(out, at)
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out, nil
}

// mostWithin is the most of sorted times that fall in one window of span.
func mostWithin(times []time.Time, span time.Duration) int {
	most, j := 0, 0
	for i := range times {
		for times[i].Sub(times[j]) >= span {
			j++
		}
		most = max(most, i-j+1)
	}
	return most
}

// firstPassUnderAGlobalLimit counts the batches the first dispatching pass
// hands ten single-record repeaters under a 100/s global limit.
func (e *env) firstPassUnderAGlobalLimit(ctx context.Context) (int, error) {
	var first int
	err := e.side(ctx, func(st *store.Store, sink *sinkProc) error {
		var ids []int64
		for i := range 10 {
			r, err := createRepeater(ctx, st, fmt.Sprintf("g%d", i), sink.URL("/global"), nil)
			if err != nil {
				return err
			}
			rec, _, err := st.RegisterRecord(ctx, store.RegisterParams{RepeaterID: r.ID, Body: []byte(`{}`)})
			if err != nil {
				return err
			}
			ids = append(ids, rec.ID)
		}
		cfg := e.hostileConfig(true)
		cfg.Dispatcher.GlobalRatePerS = 100
		passes := make(chan int, 1)
		cfg.Dispatcher.OnPass = func(res repeaters.PassResult) {
			if len(res.Batches) > 0 {
				select {
				case passes <- len(res.Batches):
				default:
				}
			}
		}
		sys, err := e.startSystemWith(ctx, cfg, tasks.RoleDispatcher, tasks.RoleWorker)
		if err != nil {
			return err
		}
		defer sys.stop()
		select {
		case first = <-passes:
		case <-time.After(30 * time.Second):
			return fmt.Errorf("no pass dispatched anything")
		}
		ok, err := sink.WaitCount(ctx, "/global", len(ids), 30*time.Second)
		if err == nil && !ok {
			err = fmt.Errorf("the ten records were not delivered")
		}
		return err
	})
	return first, err
}

// absurdRateRefused creates a repeater at rate_limit_per_s 1e-11, as the
// API would, and returns why it was refused (nil if it was saved).
func (e *env) absurdRateRefused(ctx context.Context) (refused error, err error) {
	err = e.side(ctx, func(st *store.Store, _ *sinkProc) error {
		_, refused = createRepeater(ctx, st, "absurd", "https://example.com/", func(r *store.Repeater) { r.RateLimitPerS = 1e-11 })
		return nil
	})
	return refused, err
}
