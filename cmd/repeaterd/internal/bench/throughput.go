package bench

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"repeaterd/store"
	"repeaterd/store/benchdb"
)

// throughput: deliveries/s end to end to a sink that answers 200 at once,
// 200 repeaters over 50 domains, a backlog drained by the new path and by the
// legacy path (process_repeaters off by default), plus the sink's ceiling
// under a plain keep-alive load generator.
func runThroughput(ctx context.Context, e *env) error {
	total := e.size
	if e.opt.Repeaters < 0 {
		return fmt.Errorf("--repeaters %d: want a positive count", e.opt.Repeaters)
	}
	nRepeaters := cmp.Or(e.opt.Repeaters, 200)
	nDomains := min(50, nRepeaters)
	nRepeaters -= nRepeaters % nDomains // whole repeaters per domain
	newLimit := 10 * time.Minute
	legacyLimit := e.durationOf(2*time.Minute, 45*time.Second)
	if e.opt.Duration > 0 {
		newLimit = e.opt.Duration
	}
	e.figure("repeaters", nRepeaters)
	e.figure("domains", nDomains)

	type phase struct {
		phaseLabel
		delivered          int64
		wall, firstArrival time.Duration
		avg, sustained     float64
		drained            bool
		sinkRequests       int
		sinkDups           int
	}
	phases := []phase{{phaseLabel: phaseLabel{newPath: true}}, {phaseLabel: phaseLabel{newPath: false}}}
	run := func(p *phase, st *store.Store, sink *sinkProc) error {
		newPath := p.newPath
		loaded, err := e.spreadBacklog(ctx, st, sink.URL("/throughput"), domainNames("tp", nDomains), nRepeaters/nDomains, total)
		if err != nil {
			return err
		}
		limit := newLimit
		if !newPath {
			limit = legacyLimit
		}
		prof, err := e.startProfile(ctx, st, sink.cmd.Process.Pid)
		if err != nil {
			return err
		}
		stopCPU, err := e.cpuProfile(p.newPath && !p.fsyncOff)
		if err != nil {
			return err
		}
		began := time.Now()
		sys, err := e.startSystem(ctx, newPath)
		if err != nil {
			stopCPU()
			return err
		}
		samples, werr := e.watch(ctx, p.label(), began, limit, loaded,
			func(ctx context.Context) (int64, error) { return benchdb.CountSuccess(ctx, st.Pool(), nil) })
		stopCPU()
		sys.stop()
		if werr != nil {
			return werr
		}
		last := samples[len(samples)-1]
		if err := prof.finish(ctx, e, st, p.key(), last.Count); err != nil {
			return err
		}
		p.delivered, p.wall = last.Count, last.At
		p.drained = last.Count >= loaded
		p.avg = float64(last.Count) / last.At.Seconds()
		p.sustained = SustainedRate(samples, 0.1, 0.9)
		p.firstArrival, _ = ReachedAt(samples, 1)
		ss, err := sink.Stats(ctx)
		if err != nil {
			return err
		}
		p.sinkRequests, p.sinkDups = ss.Requests, ss.Duplicates
		return nil
	}
	if err := eachSide(ctx, e, phases, run); err != nil {
		return err
	}
	if e.opt.FsyncOffURL != "" {
		// The second column: the new path again on the test server.
		fast := phase{phaseLabel: phaseLabel{newPath: true, fsyncOff: true}}
		if err := e.onFsyncOffServer(ctx, func() error {
			return e.side(ctx, func(st *store.Store, sink *sinkProc) error { return run(&fast, st, sink) })
		}); err != nil {
			return err
		}
		phases = append(phases, fast)
	}

	// The sink's own ceiling, in a fresh sink process, nothing else running.
	sink, err := e.startSink(ctx)
	if err != nil {
		return err
	}
	const conns = 64
	body := []byte(`{"bench":true,"pad":"` + strings.Repeat("x", benchBodyBytes-25) + `"}`)
	e.logf("sink ceiling: %d keep-alive clients for 5s", conns)
	lr := loadSink(ctx, sink.URL("/ceiling"), conns, 5*time.Second, body)
	sink.close()
	ceiling := lr.rate()

	fmt.Fprintf(e.out, "\n%s records over %d repeaters in %d domains, sink answers 200 at once; completions counted from the DB (state = 4) every second\n",
		FormatCount(total), nRepeaters, nDomains)
	tw := e.table("PATH", "DELIVERED", "DRAINED", "WALL s", "FIRST DELIVERY s", "AVG /s", "SUSTAINED /s (10-90%)", "SINK REQS", "SINK DUPS")
	for _, p := range phases {
		row(tw, p.label(), p.delivered, p.drained, fmt.Sprintf("%.1f", p.wall.Seconds()),
			fmt.Sprintf("%.1f", p.firstArrival.Seconds()), fmt.Sprintf("%.0f", p.avg), fmt.Sprintf("%.0f", p.sustained),
			p.sinkRequests, p.sinkDups)
	}
	row(tw, "sink ceiling", lr.Requests, "-", fmt.Sprintf("%.1f", lr.Elapsed.Seconds()), "-",
		fmt.Sprintf("%.0f", ceiling), "-", lr.Requests, fmt.Sprintf("errors %d", lr.Errors))
	tw.Flush()
	newP, legacy := phases[0], phases[1]
	r := ratio(newP.sustained, legacy.sustained)
	fmt.Fprintf(e.out, "ratio new/legacy (sustained): %.1f×   new as a share of the sink ceiling: %.0f %%\n",
		r, 100*newP.sustained/ceiling)
	if !legacy.drained {
		e.notef("legacy stopped at its %s window with %d of %d delivered; its rate is over that window. "+
			"Its first check_repeaters runs one check interval (10s default) after start.", legacyLimit, legacy.delivered, total)
	}
	e.notef("the sink ceiling comes from %d keep-alive clients in the bench process posting %d-byte bodies for 5s", conns, len(body))
	for _, p := range phases {
		e.figure(p.key(), map[string]any{
			"delivered": p.delivered, "drained": p.drained, "wall_s": round2(p.wall.Seconds()),
			"first_delivery_s": round2(p.firstArrival.Seconds()), "avg_per_s": round2(p.avg),
			"sustained_per_s": round2(p.sustained), "sink_requests": p.sinkRequests, "sink_duplicates": p.sinkDups,
		})
	}
	e.figure("sink_ceiling_per_s", round2(ceiling))
	e.figure("sink_ceiling_errors", lr.Errors)
	e.figure("ratio_new_legacy", round2(r))
	share := ratio(newP.sustained, ceiling)
	e.figure("share_of_ceiling", round2(share))
	e.goal("new path sustained (durable settings: "+e.res.Machine.Durability+")", "≥ 10000/s", fmt.Sprintf("%.0f/s", newP.sustained), newP.sustained >= 10000)
	e.goal("new path share of the sink ceiling", "≥ 40 %", fmt.Sprintf("%.0f %%", 100*share), share >= 0.4)
	e.goal("new vs legacy", "≥ 15×", fmt.Sprintf("%.1f×", r), r >= 15)
	return nil
}

// phaseLabel names a throughput phase: "new", "legacy", "new (fsync off)"
// (the second column: the new path on the fsync-off server).
type phaseLabel struct {
	newPath, fsyncOff bool
}

func (l phaseLabel) label() string {
	if l.fsyncOff {
		return pathName(l.newPath) + " (fsync off)"
	}
	return pathName(l.newPath)
}

func (l phaseLabel) key() string {
	if l.fsyncOff {
		return pathName(l.newPath) + "_fsync_off"
	}
	return pathName(l.newPath)
}

// loadResult is what the plain load generator achieved.
type loadResult struct {
	Requests int64
	Errors   int64
	Elapsed  time.Duration
}

func (r loadResult) rate() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

// loadSink drives the sink with conns concurrent keep-alive clients posting
// a body like a delivery's, for d: the sink's own ceiling on this machine.
func loadSink(ctx context.Context, target string, conns int, d time.Duration, body []byte) loadResult {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var n, errs, seq atomic.Int64
	began := time.Now()
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("webhook-id", fmt.Sprintf("load_%d", seq.Add(1)))
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return loadResult{Requests: n.Load(), Errors: errs.Load(), Elapsed: time.Since(began)}
}
