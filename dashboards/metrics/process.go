package metrics

import (
	"runtime"
	"runtime/debug"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// Names of the process gauges.
const (
	BuildInfo = "repeaterd_build_info"
	RoleUp    = "repeaterd_role_up"
	LockTTL   = "repeaterd_lock_ttl_seconds"
)

// newBuildInfo is repeaterd_build_info{version, revision, goversion} 1.
func newBuildInfo(version string) prometheus.Collector {
	revision := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        BuildInfo,
		Help:        "Always 1; the labels say which build of repeaterd this process runs.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}

// newLockTTL exports the configured repeater lock TTL, which the queue
// latency alert compares asynq_queue_latency_seconds with: a
// process_repeater task that waits longer finds its lock lapsed.
func newLockTTL(seconds float64) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: LockTTL,
		Help: "The repeater lock TTL this process runs with (REPEATERD_LOCK_TTL), in seconds.",
	})
	g.Set(seconds)
	return g
}

// rolesCollector exports repeaterd_role_up{role}: 1 for each role this
// process runs and that is healthy, 0 for one that is degraded (the stats
// role when its slot cannot be consumed). A role no process runs has no
// series, which the RepeaterdRoleDown alert catches with absent().
type rolesCollector struct {
	health func() map[string]error
	desc   *prometheus.Desc
}

func newRolesCollector(health func() map[string]error) *rolesCollector {
	return &rolesCollector{health: health, desc: prometheus.NewDesc(RoleUp,
		"1 for each role this process runs and that works; 0 while it is degraded (see /readyz for why).",
		[]string{"role"}, nil)}
}

func (c *rolesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *rolesCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.health()
	roles := make([]string, 0, len(h))
	for r := range h {
		roles = append(roles, r)
	}
	slices.Sort(roles)
	for _, r := range roles {
		up := 1.0
		if h[r] != nil {
			up = 0
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, up, r)
	}
}
