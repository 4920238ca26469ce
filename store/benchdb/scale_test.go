package benchdb_test

import (
	"testing"
	"time"

	"repeaterd/store/benchdb"
	"repeaterd/store/storetest"
)

func TestSeedEndpoints(t *testing.T) {
	st := storetest.NewStore(t)
	if err := benchdb.SeedEndpoints(ctx, st.Pool(), benchdb.EndpointParams{
		Domains: 7, Repeaters: 1000, WithWork: 10, Records: 2000,
	}); err != nil {
		t.Fatal(err)
	}
	if n := storetest.Count(t, st, `SELECT count(*) FROM repeater_work`); n != 10 {
		t.Fatalf("%d repeaters in the work set, want 10", n)
	}
	if n := storetest.Count(t, st, `SELECT count(DISTINCT repeater_id) FROM repeat_records WHERE state = 1`); n != 10 {
		t.Fatalf("%d repeaters with ready records, want 10", n)
	}
	groups, err := st.ReadyRepeaters(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ready := 0
	for _, g := range groups {
		ready += len(g.Repeaters)
	}
	if ready != 10 {
		t.Fatalf("%d ready repeaters, want 10", ready)
	}
	// The "before" query finds the same repeaters, looking at all of them.
	sql, args := st.ReadyRepeatersSQL(time.Now())
	if n, err := benchdb.Query(ctx, st.Pool(), benchdb.ProbeAllReadinessSQL(st), args...); err != nil || n != 10 {
		t.Fatalf("probe-all query: %d rows, %v (new query: %s)", n, err, sql)
	}
}
