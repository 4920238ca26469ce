package metrics

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"repeaterd/store"
)

// Names of the backlog gauges.
const (
	ReadyRecords   = "repeaterd_ready_records"
	OldestReadyAge = "repeaterd_oldest_ready_age_seconds"
)

// backlogReader is what the backlog gauges read; *store.Store is one.
type backlogReader interface {
	GetBacklog(ctx context.Context) (*store.Backlog, error)
}

// backlogCollector exports the backlog at scrape time, as totals:
// repeaterd_ready_records{state} (pending, fail) and
// repeaterd_oldest_ready_age_seconds (store.Backlog says what it measures).
type backlogCollector struct {
	src         backlogReader
	ready, aged *prometheus.Desc
}

func newBacklogCollector(src backlogReader) *backlogCollector {
	return &backlogCollector{
		src: src,
		ready: prometheus.NewDesc(ReadyRecords,
			"Records waiting to be sent, over every domain, by state (pending: never tried; fail: to be retried).",
			[]string{"state"}, nil),
		aged: prometheus.NewDesc(OldestReadyAge,
			"Seconds the longest-waiting sendable record has been eligible (due, on a repeater neither paused, "+
				"deleted nor backed off); 0 when none waits.", nil, nil),
	}
}

func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.ready
	ch <- c.aged
}

func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	b, err := c.src.GetBacklog(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.ready, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, float64(b.Pending), "pending")
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, float64(b.Fail), "fail")
	ch <- prometheus.MustNewConstMetric(c.aged, prometheus.GaugeValue, b.OldestReadyAge.Seconds())
}
