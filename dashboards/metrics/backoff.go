package metrics

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

// RepeatersInBackoff is the name of the gauge of repeaters waiting out a
// backoff.
const RepeatersInBackoff = "repeaterd_repeaters_in_backoff"

// backoffCounter is what the repeaters-in-backoff gauge reads; *store.Store
// is one.
type backoffCounter interface {
	RepeatersInBackoff(ctx context.Context) (int64, error)
}

// repeatersInBackoffCollector exports repeaterd_repeaters_in_backoff, counted
// at scrape time on a partial index, so it is never stale.
type repeatersInBackoffCollector struct {
	src  backoffCounter
	desc *prometheus.Desc
}

func newRepeatersInBackoffCollector(src backoffCounter) *repeatersInBackoffCollector {
	return &repeatersInBackoffCollector{src: src, desc: prometheus.NewDesc(RepeatersInBackoff,
		"Repeaters, neither deleted nor paused, backed off until a future time.", nil, nil)}
}

func (c *repeatersInBackoffCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *repeatersInBackoffCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	n, err := c.src.RepeatersInBackoff(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n))
}
