package api_test

import (
	"net/http"
	"testing"
	"time"

	"repeaterd/dashboards/api"
	"repeaterd/store"
	"repeaterd/store/storetest"
)

func TestAPIFlags(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	type flag struct {
		Domain, Flag      string
		Enabled, Explicit bool
		UpdatedAt         *time.Time `json:"updated_at"`
	}
	var list struct{ Flags []flag }
	e.must(http.StatusOK, "GET", "/api/v1/domains/acme/flags", nil).decode(t, &list)
	if len(list.Flags) != 1 || list.Flags[0].Flag != store.FlagProcessRepeaters || !list.Flags[0].Enabled || list.Flags[0].Explicit {
		t.Fatalf("default flags: %+v", list)
	}
	var set flag
	e.must(http.StatusOK, "PUT", "/api/v1/domains/acme/flags/process_repeaters", `{"enabled":false}`).decode(t, &set)
	if set.Enabled || !set.Explicit || set.UpdatedAt == nil {
		t.Errorf("set: %+v", set)
	}
	if on, _ := e.st.DomainFlagEnabled(t.Context(), "acme", store.FlagProcessRepeaters); on {
		t.Error("flag not stored")
	}
	e.must(http.StatusOK, "GET", "/api/v1/domains/acme/flags", nil).decode(t, &list)
	if list.Flags[0].Enabled || !list.Flags[0].Explicit {
		t.Errorf("after set: %+v", list)
	}
}

type statsJSON struct {
	Source  string
	Totals  map[string]int64
	Domains []struct {
		Domain    string
		Totals    map[string]int64
		Repeaters []struct {
			RepeaterID int64 `json:"repeater_id"`
			Counts     map[string]int64
		}
	}
}

func TestAPIStatsLiveAndWAL(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	a, b := e.repeater("acme"), e.repeater("globex")
	storetest.Record(t, e.st, a, nil)
	storetest.Record(t, e.st, a, nil)
	storetest.Record(t, e.st, b, nil)
	var s statsJSON
	e.must(http.StatusOK, "GET", "/api/v1/stats", nil).decode(t, &s)
	if s.Source != "live" || s.Totals["pending"] != 3 || s.Totals["success"] != 0 || len(s.Domains) != 2 ||
		s.Domains[0].Domain != "acme" || s.Domains[0].Repeaters[0].Counts["pending"] != 2 {
		t.Errorf("live stats: %+v", s)
	}
	e.must(http.StatusOK, "GET", "/api/v1/stats?domain=globex", nil).decode(t, &s)
	if s.Totals["pending"] != 1 || len(s.Domains) != 1 {
		t.Errorf("live stats of one domain: %+v", s)
	}

	// A slot feeding the aggregate makes it the source; its (made-up)
	// numbers show that the aggregate, not the records, was read.
	e.exec(`SELECT pg_create_logical_replication_slot('api_test_slot', 'pgoutput')`)
	e.exec(`INSERT INTO stats_progress (slot_name, applied_lsn) VALUES ('api_test_slot', '0/0')`)
	e.exec(`INSERT INTO repeat_record_stats (domain, repeater_id, state, count) VALUES ('acme', $1, 4, 40)`, a.ID)
	e.must(http.StatusOK, "GET", "/api/v1/stats", nil).decode(t, &s)
	if s.Source != "wal" || s.Totals["success"] != 40 || s.Totals["pending"] != 0 {
		t.Errorf("wal stats: %+v", s)
	}
}

func TestAPIInvariants(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	type inv struct {
		LastRefresh *time.Time `json:"last_refresh"`
		Totals      map[string]int64
		Violations  []store.InvariantViolation
	}
	var got inv
	e.must(http.StatusOK, "GET", "/api/v1/invariants", nil).decode(t, &got)
	if len(got.Violations) != 0 || len(got.Totals) != len(store.InvariantChecks) {
		t.Fatalf("clean database: %+v", got)
	}
	rep := e.repeater("acme")
	storetest.Record(t, e.st, rep, nil)
	e.exec(`UPDATE repeaters SET is_deleted = true WHERE id = $1`, rep.ID) // bypasses DeleteRepeater's cancel
	if err := e.st.RefreshInvariants(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.must(http.StatusOK, "GET", "/api/v1/invariants", nil).decode(t, &got)
	if got.LastRefresh == nil || got.Totals[store.CheckReadyOnDeletedRepeater] != 1 || len(got.Violations) == 0 {
		t.Errorf("after a violation: %+v", got)
	}
}
