package store_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// seedHistory loads nRepeaters over nDomains and nRecords records of which
// about 4 % are ready, the rest completed, then ANALYZEs.
func seedHistory(t *testing.T, s *store.Store, nDomains, nRepeaters, nRecords int) {
	t.Helper()
	for _, sql := range []string{
		`INSERT INTO repeaters (domain, name, url)
			SELECT 'dom' || (i % $1), 'r' || i, 'http://127.0.0.1:1/' FROM generate_series(1, $2) i`,
		`INSERT INTO payloads (domain, body) VALUES ('dom0', '{}')`,
		`INSERT INTO repeat_records (domain, repeater_id, payload_id, state, registered_at, next_check)
			SELECT r.domain, r.id, (SELECT min(id) FROM payloads),
				CASE WHEN random() < 0.04 THEN 1 ELSE 4 END,
				now() - interval '1 day' + i * interval '1 ms', now() - interval '1 hour'
			FROM generate_series(1, $3) i
			JOIN repeaters r ON r.id = 1 + (i::bigint * 7919) % $2`,
		`ANALYZE`,
	} {
		r := strings.NewReplacer("$1", fmt.Sprint(nDomains), "$2", fmt.Sprint(nRepeaters), "$3", fmt.Sprint(nRecords))
		if _, err := s.Pool().Exec(ctx, r.Replace(sql)); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
}

func explain(t *testing.T, s *store.Store) string {
	t.Helper()
	sql, args := s.ReadyRepeatersSQL(time.Now())
	rows, err := s.Pool().Query(ctx, "EXPLAIN "+sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(line + "\n")
	}
	return plan.String()
}

func TestReadinessQueryUsesPartialIndexes(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 300k records")
	}
	s := storetest.NewStore(t)
	seedHistory(t, s, 300, 2000, 300_000)

	plan := explain(t, s)
	t.Logf("readiness plan:\n%s", plan)
	if !strings.Contains(plan, "repeat_records_ready_idx") {
		t.Errorf("readiness plan does not use the partial ready index:\n%s", plan)
	}
	if strings.Contains(plan, "Seq Scan on repeat_records") {
		t.Errorf("readiness plan scans repeat_records sequentially:\n%s", plan)
	}
	if !strings.Contains(plan, "repeater_work") {
		t.Errorf("readiness plan does not read the work set:\n%s", plan)
	}

	// One row per repeater, never one per record.
	groups, err := s.ReadyRepeaters(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for _, g := range groups {
		for _, r := range g.Repeaters {
			if seen[r.ID] {
				t.Fatalf("repeater %d returned twice", r.ID)
			}
			seen[r.ID] = true
		}
	}
	readyRecords := count(t, s, `SELECT count(*) FROM repeat_records WHERE state IN (1, 2)`)
	readyRepeaters := count(t, s, `SELECT count(DISTINCT repeater_id) FROM repeat_records WHERE state IN (1, 2)`)
	if len(seen) != readyRepeaters || readyRecords <= 2*readyRepeaters {
		t.Fatalf("got %d rows for %d ready repeaters holding %d ready records", len(seen), readyRepeaters, readyRecords)
	}

	// The check above can fail: without the partial index the plan changes.
	if _, err := s.Pool().Exec(ctx, `DROP INDEX repeat_records_ready_idx`); err != nil {
		t.Fatal(err)
	}
	if plan := explain(t, s); strings.Contains(plan, "repeat_records_ready_idx") {
		t.Fatalf("plan still names the dropped index:\n%s", plan)
	}
}
