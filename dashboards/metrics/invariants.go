package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Names of the invariants' gauges.
const (
	InvariantViolations   = "repeaterd_invariant_violations"
	InvariantsLastRefresh = "repeaterd_invariants_last_refresh_timestamp_seconds"
)

// InvariantsReader is what InvariantsCollector reads; *store.Store is one.
// Both methods read the invariant_violations view (and its refresh time),
// never the tables the view is computed from.
type InvariantsReader interface {
	InvariantCounts(ctx context.Context) (map[string]int64, error)
	LastInvariantsRefresh(ctx context.Context) (time.Time, error)
}

// InvariantsCollector exports the invariant_violations view at scrape time:
// repeaterd_invariant_violations{check} (violations summed over domains and
// repeaters; 0 for a check nothing breaks) and
// repeaterd_invariants_last_refresh_timestamp_seconds (0 if never). The view
// is only as fresh as its last refresh (a schedule, and `repeaterd invariants
// refresh`), which is why its time is exported too. A failed read is reported
// to the registry as an error for that metric, not as a stale or zero value.
type InvariantsCollector struct {
	src         InvariantsReader
	violations  *prometheus.Desc
	lastRefresh *prometheus.Desc
}

// NewInvariantsCollector returns a collector reading src.
func NewInvariantsCollector(src InvariantsReader) *InvariantsCollector {
	return &InvariantsCollector{
		src: src,
		violations: prometheus.NewDesc(InvariantViolations,
			"Records breaking each consistency invariant, as of the last refresh of the invariant_violations view.",
			[]string{"check"}, nil),
		lastRefresh: prometheus.NewDesc(InvariantsLastRefresh,
			"Unix time of the last refresh of the invariant_violations view.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *InvariantsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.violations
	ch <- c.lastRefresh
}

// Collect implements prometheus.Collector.
func (c *InvariantsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	if counts, err := c.src.InvariantCounts(ctx); err != nil {
		ch <- prometheus.NewInvalidMetric(c.violations, err)
	} else {
		for check, n := range counts {
			ch <- prometheus.MustNewConstMetric(c.violations, prometheus.GaugeValue, float64(n), check)
		}
	}
	at, err := c.src.LastInvariantsRefresh(ctx)
	switch {
	case err != nil:
		ch <- prometheus.NewInvalidMetric(c.lastRefresh, err)
	case at.IsZero():
		// Never refreshed: as old as can be, so the staleness alert fires.
		ch <- prometheus.MustNewConstMetric(c.lastRefresh, prometheus.GaugeValue, 0)
	default:
		ch <- prometheus.MustNewConstMetric(c.lastRefresh, prometheus.GaugeValue,
			float64(at.UnixNano())/float64(time.Second))
	}
}
