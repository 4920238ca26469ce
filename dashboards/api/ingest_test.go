package api_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"repeaterd/dashboards/api"
	"repeaterd/dashboards/auth"
	"repeaterd/store/storetest"
)

const batchPath = "/api/v1/records:batch"

// batchJSON is a stored batch as the API renders it.
type batchJSON struct {
	Records []struct {
		recordJSON
		Created bool `json:"created"`
	} `json:"records"`
	Created int `json:"created"`
}

// batchErrorJSON is a refused batch.
type batchErrorJSON struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Errors []struct {
		Index    int    `json:"index"`
		Code     string `json:"code"`
		Message  string `json:"message"`
		RecordID int64  `json:"record_id"`
	} `json:"errors"`
}

func batch(items ...map[string]any) map[string]any { return map[string]any{"records": items} }

func TestAPIBatchStoresRecordsInOrder(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	a, b := e.repeater("acme"), e.repeater("other")
	var got batchJSON
	e.must(http.StatusCreated, "POST", batchPath, batch(
		map[string]any{"repeater_id": a.ID, "payload": map[string]int{"n": 1}},
		map[string]any{"repeater_id": b.ID, "payload_base64": base64.StdEncoding.EncodeToString([]byte{0, 1}), "content_type": "application/x-bin"},
		map[string]any{"repeater_id": a.ID, "payload": "two", "idempotency_key": "k"},
	)).decode(t, &got)
	if got.Created != 3 || len(got.Records) != 3 {
		t.Fatalf("got %+v, want 3 records created", got)
	}
	for i, want := range []int64{a.ID, b.ID, a.ID} {
		if r := got.Records[i]; r.RepeaterID != want || !r.Created || r.State != "pending" || r.ID == 0 {
			t.Errorf("record %d: %+v, want a new pending record of repeater %d", i, r, want)
		}
	}
	ready, err := claimOne(t, e.st, b.ID, got.Records[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ready.Body, []byte{0, 1}) || ready.ContentType != "application/x-bin" || ready.Domain != "other" {
		t.Errorf("item 1 stored as %q %q in %q", ready.Body, ready.ContentType, ready.Domain)
	}
	if n := e.rowCounts(); n["payloads"] != 3 || n["repeat_records"] != 3 {
		t.Errorf("rows %v, want a payload and a record per item", n)
	}
}

func TestAPIBatchIdempotentReplay(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	rep := e.repeater("acme")
	item := func(key string, n int) map[string]any {
		return map[string]any{"repeater_id": rep.ID, "payload": map[string]int{"n": n}, "idempotency_key": key}
	}
	var first, replay, more batchJSON
	// A key twice in one batch with the same payload is one record.
	e.must(http.StatusCreated, "POST", batchPath, batch(item("k1", 1), item("k2", 2), item("k1", 1))).decode(t, &first)
	if first.Created != 2 || first.Records[2].ID != first.Records[0].ID || first.Records[2].Created {
		t.Fatalf("first %+v: want 2 created, item 2 the record of item 0", first)
	}
	before := e.rowCounts()
	e.must(http.StatusOK, "POST", batchPath, batch(item("k1", 1), item("k2", 2))).decode(t, &replay)
	if replay.Created != 0 || replay.Records[0].ID != first.Records[0].ID || replay.Records[1].ID != first.Records[1].ID ||
		replay.Records[0].Created {
		t.Errorf("replay %+v, want the first batch's records, none created", replay)
	}
	if after := e.rowCounts(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a replay wrote rows: %v, then %v", before, after)
	}
	e.must(http.StatusCreated, "POST", batchPath, batch(item("k2", 2), item("k3", 3))).decode(t, &more)
	if more.Created != 1 || more.Records[0].ID != first.Records[1].ID || !more.Records[1].Created {
		t.Errorf("replay plus one new item: %+v", more)
	}
}

func TestAPIBatchRefusesBadItemsAndWritesNothing(t *testing.T) {
	const maxPayload = 64
	e := newAPIEnv(t, api.Config{MaxPayloadBytes: maxPayload})
	rep, gone := e.repeater("acme"), e.repeater("acme")
	e.exec(`UPDATE repeaters SET is_deleted = true WHERE id = $1`, gone.ID)
	var stored batchJSON
	e.must(http.StatusCreated, "POST", batchPath, batch(
		map[string]any{"repeater_id": rep.ID, "payload": 1, "idempotency_key": "used"})).decode(t, &stored)
	ok := map[string]any{"repeater_id": rep.ID, "payload": "fine"}
	cases := []struct {
		name     string
		bad      any // an item (a string is sent as raw JSON)
		status   int
		code     string
		recordID int64
	}{
		{"unknown field", map[string]any{"repeater_id": rep.ID, "payload": 1, "colour": "red"}, 400, "bad_json", 0},
		{"field name case", map[string]any{"Repeater_ID": rep.ID, "payload": 1}, 400, "bad_json", 0},
		{"not an object", `[1]`, 400, "bad_json", 0},
		{"no repeater_id", map[string]any{"payload": 1}, 422, "invalid", 0},
		{"both payloads", map[string]any{"repeater_id": rep.ID, "payload": 1, "payload_base64": "AA=="}, 422, "invalid", 0},
		{"bad base64", map[string]any{"repeater_id": rep.ID, "payload_base64": "***"}, 422, "invalid", 0},
		{"bad content type", map[string]any{"repeater_id": rep.ID, "payload": 1, "content_type": "no type"}, 422, "invalid", 0},
		{"payload too large", map[string]any{"repeater_id": rep.ID, "payload": strings.Repeat("x", maxPayload)}, 413, "payload_too_large", 0},
		{"no such repeater", map[string]any{"repeater_id": rep.ID + 1000, "payload": 1}, 404, "not_found", 0},
		{"deleted repeater", map[string]any{"repeater_id": gone.ID, "payload": 1}, 409, "conflict", 0},
		{"key with another payload", map[string]any{"repeater_id": rep.ID, "payload": 2, "idempotency_key": "used"}, 409, "conflict", stored.Records[0].ID},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.rowCounts()
			bad := c.bad
			if s, ok := bad.(string); ok {
				bad = json.RawMessage(s)
			}
			r := e.do("POST", batchPath, map[string]any{"records": []any{ok, bad, ok}})
			var got batchErrorJSON
			r.decode(t, &got)
			if r.Status != c.status || got.Error.Code != c.code || len(got.Errors) != 1 ||
				got.Errors[0].Index != 1 || got.Errors[0].Code != c.code || got.Errors[0].RecordID != c.recordID {
				t.Errorf("status %d %s, want %d %s at index 1 (record %d)", r.Status, r.Body, c.status, c.code, c.recordID)
			}
			if after := e.rowCounts(); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("a refused batch wrote rows: %v, then %v", before, after)
			}
		})
	}
	t.Run("every refused item, mixed codes", func(t *testing.T) {
		r := e.do("POST", batchPath, batch(ok, map[string]any{"payload": 1}, ok,
			map[string]any{"repeater_id": gone.ID, "payload": 1},
			map[string]any{"repeater_id": rep.ID, "payload": 1, "idempotency_key": "dup"},
			map[string]any{"repeater_id": rep.ID, "payload": 2, "idempotency_key": "dup"}))
		var got batchErrorJSON
		r.decode(t, &got)
		// Item errors found before the store (index 1) refuse the batch
		// without asking it; store refusals come once the items are valid.
		if r.Status != 422 || len(got.Errors) != 1 || got.Errors[0].Index != 1 {
			t.Errorf("status %d %s", r.Status, r.Body)
		}
		r = e.do("POST", batchPath, batch(ok, map[string]any{"repeater_id": gone.ID, "payload": 1}, ok,
			map[string]any{"repeater_id": rep.ID, "payload": 1, "idempotency_key": "dup"},
			map[string]any{"repeater_id": rep.ID, "payload": 2, "idempotency_key": "dup"},
			map[string]any{"repeater_id": rep.ID + 1000, "payload": 1}))
		got = batchErrorJSON{}
		r.decode(t, &got)
		var idx []string
		for _, e := range got.Errors {
			idx = append(idx, fmt.Sprintf("%d:%s", e.Index, e.Code))
		}
		if r.Status != 422 || got.Error.Code != "invalid" || strings.Join(idx, " ") != "1:conflict 4:conflict 5:not_found" {
			t.Errorf("status %d, errors %v: %s", r.Status, idx, r.Body)
		}
	})
}

func TestAPIBatchEnvelope(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	rep := e.repeater("acme")
	item := fmt.Sprintf(`{"repeater_id":%d,"payload":1}`, rep.ID)
	many := make([]string, api.MaxBatchRecords+1)
	for i := range many {
		many[i] = item
	}
	huge := fmt.Sprintf(`{"records":[{"repeater_id":%d,"payload":"%s"}]}`, rep.ID, strings.Repeat("x", api.MaxBatchBytes))
	cases := []struct {
		name, body string
		status     int
		code       string
	}{
		{"not JSON", `{"records":`, 400, "bad_json"},
		{"an array body", `[` + item + `]`, 400, "bad_json"},
		{"unknown field", `{"records":[` + item + `],"extra":1}`, 400, "bad_json"},
		{"records twice", `{"records":[` + item + `],"records":[` + item + `]}`, 400, "bad_json"},
		{"records not an array", `{"records":{}}`, 400, "bad_json"},
		{"trailing data", `{"records":[` + item + `]} {}`, 400, "bad_json"},
		{"no records", `{}`, 422, "invalid"},
		{"empty records", `{"records":[]}`, 422, "invalid"},
		{"too many records", `{"records":[` + strings.Join(many, ",") + `]}`, 422, "invalid"},
		{"body too large", huge, 413, "payload_too_large"},
		{"invalid UTF-8", "{\"records\":[{\"repeater_id\":1,\"payload\":\"\xff\"}]}", 400, "bad_json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.rowCounts()
			r := e.do("POST", batchPath, c.body)
			if r.Status != c.status || r.errorCode() != c.code {
				t.Errorf("status %d %.300s, want %d %s", r.Status, r.Body, c.status, c.code)
			}
			if after := e.rowCounts(); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("wrote rows: %v, then %v", before, after)
			}
		})
	}
	if r := e.do("GET", batchPath, nil); r.Status != http.StatusMethodNotAllowed {
		t.Errorf("GET %s: %d", batchPath, r.Status)
	}
	var full batchJSON
	e.must(http.StatusCreated, "POST", batchPath, `{"records":[`+strings.Join(many[1:], ",")+`]}`).decode(t, &full)
	if full.Created != api.MaxBatchRecords {
		t.Errorf("a full batch created %d", full.Created)
	}
}

// A domain token writes only to its own domain's repeaters: another
// domain's is a 404, as if it did not exist, and refuses the batch.
func TestAPIBatchScope(t *testing.T) {
	st := storetest.NewStore(t)
	h, err := api.New(api.Config{}, st)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), auth.Principal{Domain: "acme", Via: "token"})))
	}))
	t.Cleanup(srv.Close)
	e := &apiEnv{t: t, base: srv.URL, st: st}
	mine, theirs := e.repeater("acme"), e.repeater("globex")
	r := e.do("POST", batchPath, batch(
		map[string]any{"repeater_id": mine.ID, "payload": 1},
		map[string]any{"repeater_id": theirs.ID, "payload": 1}))
	var got batchErrorJSON
	r.decode(t, &got)
	if r.Status != 404 || len(got.Errors) != 1 || got.Errors[0].Index != 1 ||
		got.Errors[0].Message != fmt.Sprintf("repeater %d not found", theirs.ID) {
		t.Errorf("status %d %s", r.Status, r.Body)
	}
	if n := e.rowCounts(); n["repeat_records"] != 0 || n["payloads"] != 0 {
		t.Errorf("rows %v", n)
	}
	e.must(http.StatusCreated, "POST", batchPath, batch(map[string]any{"repeater_id": mine.ID, "payload": 1}))
}

// Concurrent batches carrying the same keys race in the database: exactly
// one stores each key, the others replay it (the losers of the insert
// retry and find the winner's records).
func TestAPIBatchConcurrentReplays(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	a, b := e.repeater("acme"), e.repeater("acme")
	var items []map[string]any
	for i := range 20 {
		rep := a
		if i%2 == 1 {
			rep = b
		}
		items = append(items, map[string]any{"repeater_id": rep.ID, "payload": i, "idempotency_key": fmt.Sprintf("k%d", i)})
	}
	body, _ := json.Marshal(batch(items...))
	const requests = 40
	var mu sync.Mutex
	statuses := map[int]int{}
	ids := map[string]bool{}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range requests {
		wg.Go(func() {
			<-start
			r := e.do("POST", batchPath, string(body))
			var got batchJSON
			_ = json.Unmarshal(r.Body, &got)
			var rec []string
			for _, x := range got.Records {
				rec = append(rec, fmt.Sprint(x.ID))
			}
			mu.Lock()
			statuses[r.Status]++
			ids[strings.Join(rec, ",")] = true
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	if statuses[http.StatusCreated] != 1 || statuses[http.StatusOK] != requests-1 || len(ids) != 1 {
		t.Errorf("statuses %v, %d distinct answers: want one 201, the rest 200 with the same records", statuses, len(ids))
	}
	if n := e.rowCounts(); n["repeat_records"] != len(items) || n["payloads"] != len(items) {
		t.Errorf("rows %v, want %d records", n, len(items))
	}
}
