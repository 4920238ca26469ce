package repeaters

import "github.com/prometheus/client_golang/prometheus"

// Engine metrics. Labels never name a domain or a repeater (cardinality).
var (
	deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "repeaterd_deliveries_total",
		Help: "Delivery attempts by outcome (success, fail, payload_rejected, empty).",
	}, []string{"outcome"})
	deliveryDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "repeaterd_delivery_duration_seconds",
		Help:    "Duration of one delivery attempt.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14),
	})
	passDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "repeaterd_dispatcher_pass_duration_seconds",
		Help:    "Duration of one dispatcher pass.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	readyRepeaters = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "repeaterd_dispatcher_ready_repeaters",
		Help: "Ready repeaters seen by the last dispatcher pass.",
	})
	skips = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "repeaterd_dispatcher_skips_total",
		Help: "Ready repeaters the dispatcher passed over, by reason (rate_limited, domain_cap, locked).",
	}, []string{"reason"})
	batchesEnqueued = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "repeaterd_dispatcher_batches_enqueued_total",
		Help: "process_repeater batches enqueued.",
	})
	leading = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "repeaterd_dispatcher_leader",
		Help: "1 while this process leads the dispatcher.",
	})
)

// Collectors returns the engine's metrics for registration.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{deliveries, deliveryDuration, passDuration, readyRepeaters, skips, batchesEnqueued, leading}
}

func init() {
	for _, o := range []string{"success", "fail", "payload_rejected", "empty"} {
		deliveries.WithLabelValues(o)
	}
	for _, r := range []string{"rate_limited", "domain_cap", "locked"} {
		skips.WithLabelValues(r)
	}
}
