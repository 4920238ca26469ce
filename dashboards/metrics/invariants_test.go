package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"repeaterd/dashboards/metrics"
	"repeaterd/store"
	"repeaterd/store/storetest"
)

var bg = context.Background()

// scrape gathers g into "name{label="value",...}" → value. Counters,
// gauges and untyped metrics only (histograms by their _count).
func scrape(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := mf.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Untyped != nil:
				out[key] = m.GetUntyped().GetValue()
			case m.Histogram != nil:
				out[key+"_count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// violationGauges picks repeaterd_invariant_violations out of a scrape.
func violationGauges(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for k, v := range scrape(t, g) {
		if check, ok := strings.CutPrefix(k, metrics.InvariantViolations+`{check="`); ok {
			out[strings.TrimSuffix(check, `"}`)] = v
		}
	}
	return out
}

func wantViolations(nonzero map[string]float64) map[string]float64 {
	want := map[string]float64{}
	for _, c := range store.InvariantChecks {
		want[c] = 0
	}
	maps.Copy(want, nonzero)
	return want
}

func assertViolations(t *testing.T, g prometheus.Gatherer, want map[string]float64) {
	t.Helper()
	got := violationGauges(t, g)
	if !maps.Equal(got, want) {
		t.Fatalf("%s:\n got %v\nwant %v", metrics.InvariantViolations, got, want)
	}
}

// metricsDB is a fresh database and its URL, for the statements that need a
// session of their own (storetest.Exec).
type metricsDB struct {
	t   *testing.T
	s   *store.Store
	url string
}

func newMetricsDB(t *testing.T) *metricsDB {
	t.Helper()
	s := storetest.NewStore(t)
	return &metricsDB{t: t, s: s, url: s.Pool().Config().ConnString()}
}

func (db *metricsDB) exec(sql string, args ...any) {
	db.t.Helper()
	storetest.Exec(db.t, db.url, sql, args...)
}

func (db *metricsDB) refresh() {
	db.t.Helper()
	if err := db.s.RefreshInvariants(bg); err != nil {
		db.t.Fatal(err)
	}
}

// syncStats sets repeat_record_stats to the exact counts, as a WAL consumer
// that has caught up would, and marks the aggregate fed.
func (db *metricsDB) syncStats() {
	db.t.Helper()
	db.exec(`DELETE FROM repeat_record_stats`)
	db.exec(`INSERT INTO repeat_record_stats (domain, repeater_id, state, count)
		SELECT domain, repeater_id, state, count(*) FROM repeat_records GROUP BY 1, 2, 3`)
	db.exec(`INSERT INTO stats_progress (slot_name, applied_lsn, applied_through) VALUES ('test_slot', '0/1', now())
		ON CONFLICT (one) DO UPDATE SET applied_through = now()`)
}

func TestInvariantsCollectorFollowsTheView(t *testing.T) {
	db := newMetricsDB(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewInvariantsCollector(db.s))
	dash := func() *store.Repeater { return storetest.Repeater(t, db.s, storetest.RepeaterOpts{Domain: "dash"}) }

	assertViolations(t, reg, wantViolations(nil))
	firstRefresh := scrape(t, reg)[metrics.InvariantsLastRefresh]
	if firstRefresh <= 0 {
		t.Fatalf("%s = %v before any refresh; the migration populates the view", metrics.InvariantsLastRefresh, firstRefresh)
	}

	// One repeater per check, each with its own number of bad records.
	type violation struct {
		check string
		want  float64
		seed  func() (fix string, ids []int64)
	}
	cases := []violation{
		{store.CheckReadyOnDeletedRepeater, 3, func() (string, []int64) {
			r := dash()
			ids := storetest.Records(t, db.s, r, 3)
			db.exec(`UPDATE repeaters SET is_deleted = true WHERE id = $1`, r.ID) // behind DeleteRepeater's back
			return `UPDATE repeat_records SET state = 8 WHERE id = ANY($1)`, ids
		}},
		{store.CheckStarvedReadyRecords, 2, func() (string, []int64) {
			ids := storetest.Records(t, db.s, dash(), 2)
			db.exec(`UPDATE repeat_records SET registered_at = now() - interval '3 days',
				next_check = now() - interval '3 days' WHERE id = ANY($1)`, ids)
			return `UPDATE repeat_records SET state = 8 WHERE id = ANY($1)`, ids
		}},
		{store.CheckSuccessWithoutAttempt, 1, func() (string, []int64) {
			ids := storetest.Records(t, db.s, dash(), 1)
			db.exec(`UPDATE repeat_records SET state = 4 WHERE id = ANY($1)`, ids)
			return `WITH a AS (INSERT INTO repeat_record_attempts (record_id, state, status_code)
				SELECT unnest($1::bigint[]), 4, 200) UPDATE repeat_records SET attempt_count = 1 WHERE id = ANY($1)`, ids
		}},
		{store.CheckFailPastMaxAttempts, 5, func() (string, []int64) {
			ids := storetest.Records(t, db.s, dash(), 5)
			db.exec(`UPDATE repeat_records SET state = 2, max_possible_tries = attempt_count WHERE id = ANY($1)`, ids)
			return `UPDATE repeat_records SET state = 8 WHERE id = ANY($1)`, ids
		}},
		{store.CheckAttemptCountMismatch, 4, func() (string, []int64) {
			ids := storetest.Records(t, db.s, dash(), 4)
			db.exec(`UPDATE repeat_records SET attempt_count = 3 WHERE id = ANY($1)`, ids)
			return `UPDATE repeat_records SET attempt_count = 0 WHERE id = ANY($1)`, ids
		}},
		{store.CheckStalePendingBatch, 1, func() (string, []int64) {
			r := dash()
			db.exec(`UPDATE repeaters SET pending_batch = 'tok', last_attempt_at = now() - interval '20 minutes' WHERE id = $1`, r.ID)
			return `UPDATE repeaters SET pending_batch = NULL WHERE id = ANY($1)`, []int64{r.ID}
		}},
		{store.CheckPendingWithAttempts, 3, func() (string, []int64) {
			ids := storetest.Records(t, db.s, dash(), 3)
			db.exec(`WITH a AS (INSERT INTO repeat_record_attempts (record_id, state, status_code)
				SELECT unnest($1::bigint[]), 2, 503) UPDATE repeat_records SET attempt_count = 1 WHERE id = ANY($1)`, ids)
			return `UPDATE repeat_records SET state = 2 WHERE id = ANY($1)`, ids
		}},
	}
	fixes := map[string][]int64{}
	want := map[string]float64{}
	for _, c := range cases {
		fix, ids := c.seed()
		fixes[fix] = append(fixes[fix], ids...)
		want[c.check] = c.want
	}
	// Everything long settled and counted by the consumer, then the
	// aggregate corrupted by hand: stats_drift.
	drifted := dash()
	storetest.Records(t, db.s, drifted, 1)
	db.exec(`UPDATE repeaters SET updated_at = now() - interval '1 hour'`)
	db.exec(`UPDATE repeat_records SET registered_at = least(registered_at, now() - interval '1 hour'),
		next_check = least(next_check, now() - interval '1 hour'),
		state_changed_at = least(state_changed_at, now() - interval '1 hour')`)
	db.syncStats()
	db.exec(`UPDATE repeat_record_stats SET count = count + 4 WHERE repeater_id = $1 AND state = 1`, drifted.ID)
	// A count below zero (for a repeater with no records: drift 2 as well).
	db.exec(`INSERT INTO repeat_record_stats (domain, repeater_id, state, count) VALUES ('dash', $1, 4, -2)`, dash().ID)
	want[store.CheckNegativeStatsCount] = 2
	want[store.CheckStatsDrift] = 4 + 2
	if len(want) != len(store.InvariantChecks) {
		t.Fatalf("the test seeds %d checks of %d", len(want), len(store.InvariantChecks))
	}

	// The collector reads the view: nothing moves until it is refreshed.
	assertViolations(t, reg, wantViolations(nil))
	db.refresh()
	assertViolations(t, reg, wantViolations(want))
	secondRefresh := scrape(t, reg)[metrics.InvariantsLastRefresh]
	if secondRefresh <= firstRefresh {
		t.Fatalf("last refresh %v did not move past %v", secondRefresh, firstRefresh)
	}
	if now := float64(time.Now().UnixNano()) / 1e9; secondRefresh > now+1 || secondRefresh < now-60 {
		t.Fatalf("last refresh %v is not a Unix time near %v", secondRefresh, now)
	}

	// Repair, let the consumer catch up, refresh: every gauge back to 0.
	for _, fix := range slices.Sorted(maps.Keys(fixes)) {
		db.exec(fix, fixes[fix])
	}
	db.syncStats()
	db.refresh()
	assertViolations(t, reg, wantViolations(nil))
}

type downReader struct{}

func (downReader) InvariantCounts(context.Context) (map[string]int64, error) {
	return nil, errors.New("database down")
}

func (downReader) LastInvariantsRefresh(context.Context) (time.Time, error) {
	return time.Time{}, errors.New("database down")
}

type neverRefreshedReader struct{}

func (neverRefreshedReader) InvariantCounts(context.Context) (map[string]int64, error) {
	return map[string]int64{store.CheckStatsDrift: 0}, nil
}

func (neverRefreshedReader) LastInvariantsRefresh(context.Context) (time.Time, error) {
	return time.Time{}, nil
}

func TestInvariantsCollectorReportsErrorsNotZeros(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewInvariantsCollector(downReader{}))
	mfs, err := reg.Gather()
	if err == nil || !strings.Contains(err.Error(), "database down") {
		t.Fatalf("gather error = %v, want the read error", err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	if len(names) != 0 {
		t.Fatalf("a failed read exported %v; it must export nothing rather than zeros", names)
	}

	reg = prometheus.NewRegistry()
	reg.MustRegister(metrics.NewInvariantsCollector(neverRefreshedReader{}))
	if v, ok := scrape(t, reg)[metrics.InvariantsLastRefresh]; !ok || v != 0 {
		t.Fatalf("never refreshed: %s = %v (present %v), want 0", metrics.InvariantsLastRefresh, v, ok)
	}
}
