package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"repeaterd/repeaters/lifecycle"
	"repeaterd/repeaters/repeatertest"
	"repeaterd/store"
	"repeaterd/tasks"
)

// demo is `run --demo`: a local receiver, a few domains whose repeaters
// point at it (healthy, flaky, dead), and a steady trickle of records.
type demo struct {
	life     lifecycle.Base
	eng      *tasks.Engine
	logger   *slog.Logger
	sinkAddr string
	sinkURL  string // as workers reach the receiver; "" for its listen address
	rcv      *repeatertest.Receiver

	// Set by Start.
	sink      *repeatertest.Server
	repeaters []*store.Repeater
}

// demoRepeaters are the demo's endpoints; "dead" points at a closed port.
var demoRepeaters = []struct{ domain, name, path string }{
	{"acme", "orders", "/ok"},
	{"acme", "billing", "/flaky"},
	{"globex", "crm", "/ok"},
	{"globex", "warehouse", "/ok"},
	{"initech", "reports", "/ok"},
	{"initech", "legacy-erp", "dead"},
}

const (
	// demoDeadURL is the discard port: nothing listens there.
	demoDeadURL = "http://127.0.0.1:9/"
	// demoSecret signs the demo's deliveries.
	demoSecret = "whsec_ZGVtby1zZWNyZXQtZm9yLXJlcGVhdGVyZA=="
	// demoTick and demoReportEvery pace the trickle and its log line.
	demoTick        = 200 * time.Millisecond
	demoReportEvery = 5 * time.Second
)

// newDemo returns the demo, not yet started: Start listens on sinkAddr and
// creates the repeaters.
func newDemo(eng *tasks.Engine, logger *slog.Logger, sinkAddr, sinkURL string) (*demo, error) {
	if sinkURL != "" {
		if u, err := url.Parse(sinkURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("demo: --demo-sink-url %q is not an http(s) URL", sinkURL)
		}
	}
	rcv, err := repeatertest.New(repeatertest.Config{Secret: demoSecret, Respond: demoRespond})
	if err != nil {
		return nil, err
	}
	return &demo{eng: eng, logger: logger.With("component", "demo"), sinkAddr: sinkAddr, sinkURL: sinkURL, rcv: rcv}, nil
}

// demoRespond answers like a real endpoint: after a few milliseconds, and
// on /flaky with a 500 one time in five.
func demoRespond(w http.ResponseWriter, r *http.Request) {
	time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
	if r.URL.Path == "/flaky" && rand.IntN(5) == 0 {
		http.Error(w, "flaky endpoint says no", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// Start listens, points the demo repeaters at the receiver and begins the
// trickle: a few records a second, now and then a fan-out to a domain.
func (d *demo) Start(ctx context.Context) error {
	return d.life.Start(ctx, func(runCtx context.Context) error {
		sink, err := repeatertest.Listen(d.sinkAddr, d.rcv)
		if err != nil {
			return fmt.Errorf("demo sink: %w", err)
		}
		if d.repeaters, err = d.ensureRepeaters(ctx, cmp.Or(d.sinkURL, "http://"+sink.Addr())); err != nil {
			return errors.Join(err, sink.Close(ctx))
		}
		d.sink = sink
		d.life.Go(func() { d.trickle(runCtx) })
		d.logger.Info("demo ready", "sink", sink.Addr(), "repeaters", len(d.repeaters),
			"watch", "logs every 5s; web dashboard at --http-addr when the web role runs")
		return nil
	})
}

// Stop ends the trickle, then the receiver.
func (d *demo) Stop(ctx context.Context) error {
	var sink *repeatertest.Server
	err := d.life.Stop(ctx, func(context.Context) error { sink = d.sink; return nil })
	if sink != nil {
		err = errors.Join(err, sink.Close(ctx))
	}
	return err
}

// ensureRepeaters creates the demo repeaters, or reuses those of an earlier
// run, pointed at this run's receiver at base.
func (d *demo) ensureRepeaters(ctx context.Context, base string) ([]*store.Repeater, error) {
	var out []*store.Repeater
	for _, spec := range demoRepeaters {
		target := base + spec.path
		if spec.path == "dead" {
			target = demoDeadURL
		}
		r, err := d.ensureRepeater(ctx, spec.domain, spec.name, target)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (d *demo) ensureRepeater(ctx context.Context, domain, name, target string) (*store.Repeater, error) {
	existing, err := d.eng.Store.ListRepeaters(ctx, store.ListRepeatersParams{Domain: domain, Limit: 1000})
	if err != nil {
		return nil, err
	}
	for i := range existing {
		if r := &existing[i]; r.Name == name {
			r.URL = target
			return r, d.eng.Store.UpdateRepeater(ctx, r)
		}
	}
	r := &store.Repeater{Domain: domain, Name: name, URL: target, SigningSecret: demoSecret}
	return r, d.eng.Store.CreateRepeater(ctx, r)
}

// trickle registers a record every tick and logs the counts now and then,
// until ctx ends.
func (d *demo) trickle(ctx context.Context) {
	tick, report := time.NewTicker(demoTick), time.NewTicker(demoReportEvery)
	defer tick.Stop()
	defer report.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			d.register(ctx, n)
		case <-report.C:
			d.report(ctx)
		}
	}
}

func (d *demo) register(ctx context.Context, n int) {
	r := d.repeaters[rand.IntN(len(d.repeaters))]
	body := []byte(fmt.Sprintf(`{"event":"demo","n":%d,"at":%q}`, n, time.Now().Format(time.RFC3339Nano)))
	var err error
	if n%25 == 0 { // an event fanned out to every repeater of a domain
		_, err = d.eng.Store.FanOut(ctx, r.Domain, "application/json", body)
	} else {
		_, _, err = d.eng.Store.RegisterRecord(ctx, store.RegisterParams{RepeaterID: r.ID, Body: body})
	}
	if err != nil && ctx.Err() == nil {
		d.logger.Warn("demo register", "err", err)
	}
}

func (d *demo) report(ctx context.Context) {
	counts, err := d.eng.Store.RecordCounts(ctx, "")
	if err != nil {
		return
	}
	byState := map[store.State]int64{}
	for _, c := range counts.Counts {
		byState[c.State] += c.Count
	}
	got := d.rcv.Stats()
	args := []any{"sink_received", got.Requests, "sink_bad_signatures", got.BadSignatures, "live_counts", counts.Live}
	for _, s := range store.AllStates {
		args = append(args, s.String(), byState[s])
	}
	d.logger.Info("demo records by state", args...)
}
