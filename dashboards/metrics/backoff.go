package metrics

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

// Names of the gauges of repeaters held back from their endpoints.
const (
	RepeatersInBackoff = "repeaterd_repeaters_in_backoff"
	RepeatersPaced     = "repeaterd_repeaters_paced"
)

// heldBackCounter is what the held-back gauges read; *store.Store is one.
type heldBackCounter interface {
	RepeatersInBackoff(ctx context.Context) (int64, error)
	RepeatersPaced(ctx context.Context) (int64, error)
}

// heldBackCollector exports the repeaters waiting out a backoff and those
// held to a learned pace, counted at scrape time, so never stale.
type heldBackCollector struct {
	src           heldBackCounter
	backoff, pace *prometheus.Desc
}

func newHeldBackCollector(src heldBackCounter) *heldBackCollector {
	return &heldBackCollector{src: src,
		backoff: prometheus.NewDesc(RepeatersInBackoff,
			"Repeaters, neither deleted nor paused, backed off until a future time.", nil, nil),
		pace: prometheus.NewDesc(RepeatersPaced,
			"Repeaters, neither deleted nor paused, held to a pace learned from their endpoint's refusals.", nil, nil)}
}

func (c *heldBackCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.backoff
	ch <- c.pace
}

func (c *heldBackCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	n, err := c.src.RepeatersInBackoff(ctx)
	gauge(ch, c.backoff, n, err)
	n, err = c.src.RepeatersPaced(ctx)
	gauge(ch, c.pace, n, err)
}

func gauge(ch chan<- prometheus.Metric, desc *prometheus.Desc, n int64, err error) {
	if err != nil {
		ch <- prometheus.NewInvalidMetric(desc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(n))
}
