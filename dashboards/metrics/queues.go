package metrics

import (
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
)

// queuesCollector exports asynq's queues, read from Redis at scrape time.
// It keeps the names of asynq's own x/metrics collector where they are
// right (asynq_queue_size, asynq_queue_latency_seconds), and fixes those
// that break Prometheus's conventions, which `promtool check metrics`
// rejects: gauges named _total become asynq_tasks (by state) and
// asynq_queue_paused, and the lifetime processed and failed totals are
// exported as the counters they are.
type queuesCollector struct {
	inspector                         *asynq.Inspector
	tasks, size, latency, memory      *prometheus.Desc
	paused, processed, failed, errors *prometheus.Desc
}

func newQueuesCollector(inspector *asynq.Inspector) *queuesCollector {
	q := []string{"queue"}
	return &queuesCollector{
		inspector: inspector,
		tasks: prometheus.NewDesc("asynq_tasks", "Tasks in each queue by state (active, pending, "+
			"scheduled, retry, archived, completed, aggregating).", []string{"queue", "state"}, nil),
		size: prometheus.NewDesc("asynq_queue_size", "Tasks in the queue, in every state.", q, nil),
		latency: prometheus.NewDesc("asynq_queue_latency_seconds",
			"Seconds the oldest pending task of the queue has waited to be processed.", q, nil),
		memory: prometheus.NewDesc("asynq_queue_memory_usage_approx_bytes",
			"Redis memory the queue uses, approximated by sampling.", q, nil),
		paused:    prometheus.NewDesc("asynq_queue_paused", "1 while the queue is paused.", q, nil),
		processed: prometheus.NewDesc("asynq_tasks_processed_total", "Tasks processed (succeeded or failed).", q, nil),
		failed:    prometheus.NewDesc("asynq_tasks_failed_total", "Tasks that failed.", q, nil),
		errors:    prometheus.NewDesc("asynq_queue_read_errors", "1 when the last scrape could not read the queue.", q, nil),
	}
}

func (c *queuesCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.tasks, c.size, c.latency, c.memory, c.paused, c.processed, c.failed, c.errors} {
		ch <- d
	}
}

func (c *queuesCollector) Collect(ch chan<- prometheus.Metric) {
	queues, err := c.inspector.Queues()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.size, err)
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, name := range queues {
		info, err := c.inspector.GetQueueInfo(name)
		if err != nil {
			gauge(c.errors, 1, name)
			continue
		}
		gauge(c.errors, 0, name)
		for state, n := range map[string]int{
			"active": info.Active, "pending": info.Pending, "scheduled": info.Scheduled, "retry": info.Retry,
			"archived": info.Archived, "completed": info.Completed, "aggregating": info.Aggregating,
		} {
			gauge(c.tasks, float64(n), name, state)
		}
		gauge(c.size, float64(info.Size), name)
		gauge(c.latency, info.Latency.Seconds(), name)
		gauge(c.memory, float64(info.MemoryUsage), name)
		paused := 0.0
		if info.Paused {
			paused = 1
		}
		gauge(c.paused, paused, name)
		ch <- prometheus.MustNewConstMetric(c.processed, prometheus.CounterValue, float64(info.ProcessedTotal), name)
		ch <- prometheus.MustNewConstMetric(c.failed, prometheus.CounterValue, float64(info.FailedTotal), name)
	}
}
