package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"repeaterd/store"
	"repeaterd/tasks"
)

// demo is `run --demo`: a local sink, a few domains whose repeaters point
// at it (healthy, flaky, dead), and a steady trickle of records.
type demo struct {
	eng       *tasks.Engine
	logger    *slog.Logger
	sink      *http.Server
	repeaters []*store.Repeater
	received  atomic.Int64
	cancel    context.CancelFunc
	done      chan struct{}
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

func newDemo(ctx context.Context, eng *tasks.Engine, logger *slog.Logger, sinkAddr, sinkURL string) (*demo, error) {
	d := &demo{eng: eng, logger: logger.With("component", "demo")}
	ln, err := net.Listen("tcp", sinkAddr)
	if err != nil {
		return nil, fmt.Errorf("demo sink: %w", err)
	}
	if sinkURL == "" {
		sinkURL = "http://" + ln.Addr().String()
	}
	d.sink = &http.Server{Handler: http.HandlerFunc(d.serveSink), ReadHeaderTimeout: 5 * time.Second}
	go d.sink.Serve(ln)
	for _, spec := range demoRepeaters {
		url := sinkURL + spec.path
		if spec.path == "dead" {
			url = "http://127.0.0.1:9/" // the discard port: nothing listens
		}
		r, err := d.ensureRepeater(ctx, spec.domain, spec.name, url)
		if err != nil {
			d.sink.Close()
			return nil, err
		}
		d.repeaters = append(d.repeaters, r)
	}
	d.logger.Info("demo ready", "sink", ln.Addr().String(), "repeaters", len(d.repeaters),
		"watch", "logs every 5s; web dashboard at --http-addr when the web role runs")
	return d, nil
}

// ensureRepeater reuses the demo repeater of an earlier run, pointed at
// this run's sink.
func (d *demo) ensureRepeater(ctx context.Context, domain, name, url string) (*store.Repeater, error) {
	existing, err := d.eng.Store.ListRepeaters(ctx, store.ListRepeatersParams{Domain: domain, Limit: 1000})
	if err != nil {
		return nil, err
	}
	for i := range existing {
		if r := &existing[i]; r.Name == name {
			r.URL = url
			return r, d.eng.Store.UpdateRepeater(ctx, r)
		}
	}
	r := &store.Repeater{Domain: domain, Name: name, URL: url, SigningSecret: "whsec_ZGVtby1zZWNyZXQtZm9yLXJlcGVhdGVyZA=="}
	return r, d.eng.Store.CreateRepeater(ctx, r)
}

func (d *demo) serveSink(w http.ResponseWriter, r *http.Request) {
	d.received.Add(1)
	time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
	if r.URL.Path == "/flaky" && rand.IntN(5) == 0 {
		http.Error(w, "flaky endpoint says no", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// Start begins the trickle: a few records a second, now and then a burst.
func (d *demo) Start(ctx context.Context) error {
	ctx, d.cancel = context.WithCancel(ctx)
	d.done = make(chan struct{})
	go func() {
		defer close(d.done)
		tick, report := time.NewTicker(200*time.Millisecond), time.NewTicker(5*time.Second)
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
	}()
	return nil
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
	args := []any{"sink_received", d.received.Load(), "live_counts", counts.Live}
	for _, s := range store.AllStates {
		args = append(args, s.String(), byState[s])
	}
	d.logger.Info("demo records by state", args...)
}

// Stop ends the trickle and the sink.
func (d *demo) Stop(context.Context) error {
	d.cancel()
	<-d.done
	return d.sink.Close()
}
