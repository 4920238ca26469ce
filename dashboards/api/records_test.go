package api_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"repeaterd/dashboards/api"
	"repeaterd/store"
	"repeaterd/store/storetest"
)

func TestAPIRecordIdempotency(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	rep := e.repeater("acme")
	body := map[string]any{"repeater_id": rep.ID, "payload": map[string]int{"n": 1}, "idempotency_key": "order-1"}
	var first, again recordJSON
	e.must(http.StatusCreated, "POST", "/api/v1/records", body).decode(t, &first)
	e.must(http.StatusOK, "POST", "/api/v1/records", body).decode(t, &again) // a retry finds the first record
	if again.ID != first.ID || first.State != "pending" || first.IdempotencyKey == nil || *first.IdempotencyKey != "order-1" {
		t.Errorf("first %+v, again %+v", first, again)
	}
	// The key with another payload is a conflict naming the first record
	// (Stripe's convention), and writes nothing.
	before := e.rowCounts()
	for _, changed := range []map[string]any{
		{"repeater_id": rep.ID, "payload": map[string]int{"n": 2}, "idempotency_key": "order-1"},
		{"repeater_id": rep.ID, "payload": map[string]int{"n": 1}, "idempotency_key": "order-1", "content_type": "application/vnd.x+json"},
	} {
		var conflict struct {
			Error struct {
				Code     string `json:"code"`
				RecordID int64  `json:"record_id"`
			} `json:"error"`
		}
		e.must(http.StatusConflict, "POST", "/api/v1/records", changed).decode(t, &conflict)
		if conflict.Error.Code != "conflict" || conflict.Error.RecordID != first.ID {
			t.Errorf("key reused with %v: %+v, want a conflict naming record %d", changed, conflict, first.ID)
		}
	}
	if after := e.rowCounts(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a refused reuse wrote rows: %v, then %v", before, after)
	}
	var other recordJSON
	e.must(http.StatusCreated, "POST", "/api/v1/records", map[string]any{
		"repeater_id": rep.ID, "payload_base64": base64.StdEncoding.EncodeToString([]byte{0, 1, 2}), "content_type": "application/x-bin",
	}).decode(t, &other)
	ready, err := claimOne(t, e.st, rep.ID, other.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ready.Body, []byte{0, 1, 2}) || ready.ContentType != "application/x-bin" {
		t.Errorf("base64 payload stored as %q %q", ready.Body, ready.ContentType)
	}
	var js recordJSON
	e.must(http.StatusCreated, "POST", "/api/v1/records", fmt.Sprintf(`{"repeater_id":%d,"payload":{"a": [1, 2]}}`, rep.ID)).decode(t, &js)
	if ready, err = claimOne(t, e.st, rep.ID, js.ID); err != nil {
		t.Fatal(err)
	}
	if string(ready.Body) != `{"a": [1, 2]}` || ready.ContentType != "application/json" {
		t.Errorf("JSON payload stored as %q %q, want the bytes sent", ready.Body, ready.ContentType)
	}
}

func TestAPIConcurrentIdempotentRecords(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	rep := e.repeater("acme")
	const requests, workers = 1000, 50
	body, _ := json.Marshal(map[string]any{"repeater_id": rep.ID, "payload": "x", "idempotency_key": "same"})
	jobs := make(chan struct{})
	var mu sync.Mutex
	statuses := map[int]int{}
	ids := map[int64]bool{}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range jobs {
				r := e.do("POST", "/api/v1/records", string(body))
				var rec recordJSON
				_ = json.Unmarshal(r.Body, &rec)
				mu.Lock()
				statuses[r.Status]++
				ids[rec.ID] = true
				mu.Unlock()
			}
		})
	}
	for range requests {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	if statuses[http.StatusCreated] != 1 || statuses[http.StatusOK] != requests-1 || len(ids) != 1 {
		t.Errorf("statuses %v, record ids %v: want one 201, the rest 200, one id", statuses, ids)
	}
	counts := e.rowCounts()
	if counts["repeat_records"] != 1 || counts["payloads"] != 1 {
		t.Errorf("rows after %d requests with one key: %v", requests, counts)
	}
}

func TestAPIRequeueCancelledRecord(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	rep := e.repeater("acme")
	rec := storetest.Record(t, e.st, rep, nil)
	path := fmt.Sprintf("/api/v1/records/%d", rec.ID)
	var r recordJSON
	e.must(http.StatusOK, "POST", path+"/cancel", nil).decode(t, &r)
	if r.State != "cancelled" || r.StateCode != int(store.StateCancelled) {
		t.Fatalf("cancel: %+v", r)
	}
	// As if it had used up its tries before being cancelled.
	e.exec(`UPDATE repeat_records SET attempt_count = max_possible_tries, next_check = now() + interval '1 day' WHERE id = $1`, rec.ID)
	e.must(http.StatusOK, "POST", path+"/requeue", nil).decode(t, &r)
	if r.State != "fail" || r.AttemptCount != 6 || r.MaxPossibleTries != 12 || r.NextCheck.After(time.Now().Add(time.Second)) {
		t.Errorf("requeue: %+v, want ready (fail) with 6 more tries, due now", r)
	}
	var listed pageJSON
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/records?repeater_id=%d&state=fail", rep.ID), nil).decode(t, &listed)
	if len(listed.Records) != 1 || listed.Records[0].ID != rec.ID {
		t.Errorf("requeued record not listed as ready: %+v", listed)
	}
}

// TestAPIActionsOnARecordBeingSent: requeue and cancel of a record a sender
// holds answer 202 and wait; a second request while one waits is a 409 that
// changes nothing.
func TestAPIActionsOnARecordBeingSent(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	rep := e.repeater("acme")
	rec := storetest.Record(t, e.st, rep, nil)
	if _, err := e.st.ClaimReadyRecords(t.Context(), rep.ID, 1, "batch:in-flight", time.Minute); err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/api/v1/records/%d", rec.ID)
	var r recordJSON
	e.must(http.StatusAccepted, "POST", path+"/cancel", nil).decode(t, &r)
	if r.State != "pending" || r.RequestedState != "cancel" {
		t.Fatalf("cancel of a record being sent: %+v, want pending with a cancel waiting", r)
	}
	before := e.rowCounts()
	for _, action := range []string{"/cancel", "/requeue"} {
		if got := e.do("POST", path+action, nil); got.Status != http.StatusConflict {
			t.Errorf("%s while a cancel waits: %d, want 409", action, got.Status)
		}
	}
	if after := e.rowCounts(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("refused requests wrote rows: %v → %v", before, after)
	}
	e.must(http.StatusOK, "GET", path, nil).decode(t, &r)
	if r.RequestedState != "cancel" {
		t.Errorf("the waiting cancel is not shown: %+v", r)
	}
}

func TestAPIGetRecordWithAttempts(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	rec := storetest.Record(t, e.st, e.repeater("acme"), nil)
	if _, err := e.st.RecordOutcomes(t.Context(), []store.Outcome{
		{RecordID: rec.ID, State: store.StateFail, StatusCode: 503, Message: "unavailable"},
	}, nil); err != nil {
		t.Fatal(err)
	}
	var r recordJSON
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/records/%d", rec.ID), nil).decode(t, &r)
	if r.State != "fail" || r.AttemptCount != 1 || len(r.Attempts) != 1 ||
		r.Attempts[0].StatusCode != 503 || r.Attempts[0].State != "fail" {
		t.Errorf("record with attempts: %+v", r)
	}
}

func TestAPIListRecordsFiltersAndPages(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	a, b := e.repeater("acme"), e.repeater("globex")
	var want []int64
	for range 5 {
		want = append(want, storetest.Record(t, e.st, a, nil).ID)
		storetest.Record(t, e.st, b, nil)
	}
	var got []int64
	next := ""
	for {
		var p pageJSON
		e.must(http.StatusOK, "GET", "/api/v1/records?domain=acme&state=pending&limit=2&cursor="+next, nil).decode(t, &p)
		for _, r := range p.Records {
			got = append(got, r.ID)
		}
		if p.NextCursor == nil {
			break
		}
		next = *p.NextCursor
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("acme records = %v, want %v", got, want)
	}
	var p pageJSON
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/records?repeater_id=%d&state=success", b.ID), nil).decode(t, &p)
	if len(p.Records) != 0 || p.NextCursor != nil {
		t.Errorf("no success records expected: %+v", p)
	}
}

func TestAPIEventsFanOut(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	r1, r2 := e.repeater("acme"), e.repeater("acme")
	gone := e.repeater("acme")
	if err := e.st.DeleteRepeater(t.Context(), gone.ID); err != nil {
		t.Fatal(err)
	}
	e.repeater("globex")
	var out struct{ Records []recordJSON }
	e.must(http.StatusCreated, "POST", "/api/v1/domains/acme/events", `{"payload":{"event":"paid"}}`).decode(t, &out)
	if len(out.Records) != 2 || out.Records[0].RepeaterID != r1.ID || out.Records[1].RepeaterID != r2.ID ||
		out.Records[0].PayloadID != out.Records[1].PayloadID {
		t.Errorf("fan-out records: %+v", out.Records)
	}
	if n := e.rowCounts()["payloads"]; n != 1 {
		t.Errorf("%d payloads, want one shared payload", n)
	}
}

// claimOne claims the repeater's due records and returns the one with id,
// with its payload as stored.
func claimOne(t *testing.T, st *store.Store, repeaterID, id int64) (*store.ReadyRecord, error) {
	t.Helper()
	recs, err := st.ClaimReadyRecords(t.Context(), repeaterID, 100, "test:"+t.Name(), time.Minute)
	if err != nil {
		return nil, err
	}
	for i := range recs {
		if recs[i].ID == id {
			return &recs[i], nil
		}
	}
	return nil, fmt.Errorf("record %d was not due", id)
}

func TestAPIOperatorActionsAreLogged(t *testing.T) {
	var logs bytes.Buffer
	e := newAPIEnv(t, api.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	rec := storetest.Record(t, e.st, e.repeater("acme"), nil)
	e.must(http.StatusOK, "POST", fmt.Sprintf("/api/v1/records/%d/cancel", rec.ID), nil)
	if want := fmt.Sprintf(`msg="record cancel by an operator" record=%d`, rec.ID); !strings.Contains(logs.String(), want) {
		t.Fatalf("log lacks %q:\n%s", want, logs.String())
	}
}
