package store_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

func TestListRecordPageKeysetAndFilters(t *testing.T) {
	s := storetest.NewStore(t)
	r := storetest.Repeater(t, s, storetest.RepeaterOpts{})
	ids := storetest.Records(t, s, r, 25)
	setState(t, s, store.StateSuccess, ids[:10])
	setState(t, s, store.StateCancelled, ids[10:15])

	// Pages of 7, newest first, cover every record once.
	var seen []int64
	for before := int64(0); ; {
		page, err := s.ListRecordPage(ctx, store.RecordPageParams{RepeaterID: r.ID, BeforeID: before, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range page {
			seen = append(seen, rec.ID)
		}
		if len(page) < 7 {
			break
		}
		before = page[len(page)-1].ID
	}
	if len(seen) != 25 || seen[0] != ids[24] || seen[24] != ids[0] {
		t.Fatalf("pages gave %v", seen)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] >= seen[i-1] {
			t.Fatalf("not newest first: %v", seen)
		}
	}
	page, err := s.ListRecordPage(ctx, store.RecordPageParams{RepeaterID: r.ID, States: []store.State{store.StateCancelled, store.StatePending}})
	if err != nil || len(page) != 15 {
		t.Fatalf("cancelled or pending: %d, %v", len(page), err)
	}
	rec, _, _ := s.GetRecord(ctx, ids[3])
	page, err = s.ListRecordPage(ctx, store.RecordPageParams{RepeaterID: r.ID, Key: strconv.FormatInt(rec.PayloadID, 10)})
	if err != nil || len(page) != 1 || page[0].ID != ids[3] {
		t.Fatalf("by payload id: %v, %v", page, err)
	}
	future := time.Now().Add(time.Hour)
	page, err = s.ListRecordPage(ctx, store.RecordPageParams{RepeaterID: r.ID, CreatedAfter: &future})
	if err != nil || len(page) != 0 {
		t.Fatalf("created in the future: %v, %v", page, err)
	}
}

// TestConsoleQueriesUseTheIndexes: the record page and the bulk walk read
// the (repeater, state) index, never the whole table.
func TestConsoleQueriesUseTheIndexes(t *testing.T) {
	s := storetest.NewStore(t)
	r := storetest.Repeater(t, s, storetest.RepeaterOpts{})
	storetest.Records(t, s, r, 50)
	if _, err := s.Pool().Exec(ctx, `SET enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	var plan []string
	rows, err := s.Pool().Query(ctx, `EXPLAIN SELECT x.id FROM unnest('{1,2,4}'::smallint[]) s(state)
		CROSS JOIN LATERAL (SELECT rr.id FROM repeat_records rr WHERE rr.repeater_id = $1 AND rr.state = s.state
			AND rr.id < 1000000 ORDER BY rr.id DESC LIMIT 50) x ORDER BY x.id DESC LIMIT 50`, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var line string
		_ = rows.Scan(&line)
		plan = append(plan, line)
	}
	if text := strings.Join(plan, "\n"); !strings.Contains(text, "repeat_records_repeater_state_idx") {
		t.Errorf("the record page does not use repeat_records_repeater_state_idx:\n%s", text)
	}
}

func TestListRepeaterRowsCountsAndLastError(t *testing.T) {
	s := storetest.NewStore(t)
	r := storetest.Repeater(t, s, storetest.RepeaterOpts{Domain: "a.example"})
	storetest.Repeater(t, s, storetest.RepeaterOpts{Domain: "b.example"})
	ids := storetest.Records(t, s, r, 6)
	if _, err := s.RecordOutcomes(ctx, []store.Outcome{
		{RecordID: ids[0], State: store.StateFail, StatusCode: 503, Message: "down"},
		{RecordID: ids[5], State: store.StateSuccess, StatusCode: 200},
	}, nil); err != nil {
		t.Fatal(err)
	}
	rows, err := s.ListRepeaterRows(ctx, store.ListRepeaterRowsParams{Domain: "a.example"})
	if err != nil || len(rows) != 1 {
		t.Fatalf("rows: %v, %v", rows, err)
	}
	row := rows[0]
	if row.Pending != (store.Count{N: 4, Exact: true}) || row.Fail != (store.Count{N: 1, Exact: true}) {
		t.Errorf("backlog: pending %+v fail %+v", row.Pending, row.Fail)
	}
	minutes, err := s.AttemptsPerRepeaterMinute(ctx, time.Now().Add(-time.Hour), time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	byState := map[store.State]int64{}
	for _, m := range minutes {
		if m.RepeaterID == r.ID {
			byState[m.State] += m.Count
		}
	}
	if byState[store.StateSuccess] != 1 || byState[store.StateFail] != 1 {
		t.Errorf("last hour: %v", byState)
	}
	if row.LastError == nil || row.LastError.Message != "down" {
		t.Errorf("last error: %+v", row.LastError)
	}
	domains, err := s.DomainSummaries(ctx, "")
	if err != nil || len(domains) != 2 || domains[0].Domain != "a.example" || domains[0].Repeaters != 1 ||
		domains[0].Counts[store.StatePending] != 4 || !domains[0].Flags[store.FlagProcessRepeaters] {
		t.Errorf("domains: %+v, %v", domains, err)
	}
}
