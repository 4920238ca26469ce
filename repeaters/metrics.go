package repeaters

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"repeaterd/store"
)

// Engine metrics. Labels never name a domain or a repeater (cardinality).
var (
	deliveries = countersBy("repeaterd_deliveries_total", "Delivery attempts by outcome", "outcome",
		store.StateSuccess.String(), store.StateFail.String(), store.StatePayloadRejected.String(), store.StateEmpty.String())
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
	skips = countersBy("repeaterd_dispatcher_skips_total", "Ready repeaters the dispatcher passed over, by reason", "reason",
		SkipRateLimited, SkipDomainCap, SkipLocked)
	batchesEnqueued = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "repeaterd_dispatcher_batches_enqueued_total",
		Help: "process_repeater batches enqueued.",
	})
	lateBatches = countersBy("repeaterd_late_batches_total",
		"Batches whose lock lapsed while they waited in the queue: resumed, or dropped for a successor", "outcome",
		lateResumed, lateSuperseded)
	lateOutcomes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "repeaterd_late_outcomes_total",
		Help: "Attempts recorded after their claim was lost: logged, but they did not change the record.",
	})
	followOns = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "repeaterd_follow_on_batches_total",
		Help: "Batches a worker sent straight after a full, clean batch of the same repeater, without the dispatcher.",
	})
	leading = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "repeaterd_dispatcher_leader",
		Help: "1 while this process leads the dispatcher.",
	})
)

// Late batch outcomes.
const (
	lateResumed    = "resumed"
	lateSuperseded = "superseded"
)

// countersBy returns a counter vector over one label whose known values are
// created up front, so each series reads 0 before its first event instead of
// being absent. The help text ends with the values.
func countersBy(name, help, label string, values ...string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: name,
		Help: help + " (" + strings.Join(values, ", ") + ").",
	}, []string{label})
	for _, value := range values {
		v.WithLabelValues(value)
	}
	return v
}

// Collectors returns the engine's metrics for registration.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{deliveries, deliveryDuration, passDuration, readyRepeaters, skips, batchesEnqueued,
		lateBatches, lateOutcomes, followOns, leading}
}
