package dashboards_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"repeaterd/dashboards"
	"repeaterd/store"
	"repeaterd/store/storetest"
)

// apiEnv is a running web role and what the API tests need around it.
type apiEnv struct {
	t    *testing.T
	base string
	st   *store.Store

	mu     sync.Mutex
	bodies []string // every response body, for the never-render-the-secret check
}

func newAPIEnv(t *testing.T, cfg dashboards.WebConfig) *apiEnv {
	t.Helper()
	_, st, base := webServer(t, cfg)
	return &apiEnv{t: t, base: base, st: st}
}

// apiResult is one API response.
type apiResult struct {
	Status int
	Body   []byte
}

// decode unmarshals the body into v.
func (r apiResult) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// errorCode is the body's error code, "" when it is not an error body.
func (r apiResult) errorCode() string {
	var e struct {
		Error struct{ Code, Message string }
	}
	_ = json.Unmarshal(r.Body, &e)
	return e.Error.Code
}

// do sends body (a string is sent as it is, anything else as JSON).
func (e *apiEnv) do(method, path string, body any) apiResult {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	e.mu.Lock()
	e.bodies = append(e.bodies, string(raw))
	e.mu.Unlock()
	return apiResult{Status: resp.StatusCode, Body: raw}
}

// must sends a request and fails the test unless it gets want.
func (e *apiEnv) must(want int, method, path string, body any) apiResult {
	e.t.Helper()
	r := e.do(method, path, body)
	if r.Status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Status, want, r.Body)
	}
	return r
}

// rowCounts counts the rows a write could leave behind.
func (e *apiEnv) rowCounts() map[string]int64 {
	e.t.Helper()
	out := map[string]int64{}
	for _, table := range []string{"repeaters", "payloads", "repeat_records", "repeat_record_attempts", "domain_flags"} {
		var n int64
		if err := e.st.Pool().QueryRow(e.t.Context(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			e.t.Fatal(err)
		}
		out[table] = n
	}
	var changed int64
	if err := e.st.Pool().QueryRow(e.t.Context(),
		`SELECT count(*) FROM repeaters WHERE updated_at > created_at`).Scan(&changed); err != nil {
		e.t.Fatal(err)
	}
	out["repeaters updated"] = changed
	return out
}

func (e *apiEnv) repeater(domain string) *store.Repeater {
	e.t.Helper()
	r := &store.Repeater{Domain: domain, Name: "r", URL: "https://example.com/hook"}
	if err := e.st.CreateRepeater(e.t.Context(), r); err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *apiEnv) record(repeaterID int64) *store.RepeatRecord {
	e.t.Helper()
	rec, _, err := e.st.RegisterRecord(e.t.Context(), store.RegisterParams{RepeaterID: repeaterID, Body: []byte(`{}`)})
	if err != nil {
		e.t.Fatal(err)
	}
	return rec
}

func (e *apiEnv) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.st.Pool().Exec(e.t.Context(), sql, args...); err != nil {
		e.t.Fatal(err)
	}
}

// repeaterJSON is a repeater as the API renders it.
type repeaterJSON struct {
	ID            int64             `json:"id"`
	Domain        string            `json:"domain"`
	Name          string            `json:"name"`
	URL           string            `json:"url"`
	Headers       map[string]string `json:"headers"`
	IsPaused      bool              `json:"is_paused"`
	IsDeleted     bool              `json:"is_deleted"`
	HasSecret     bool              `json:"has_secret"`
	SigningSecret *string           `json:"signing_secret"`
	MaxAttempts   int               `json:"max_attempts"`
}

// recordJSON is a record as the API renders it.
type recordJSON struct {
	ID               int64     `json:"id"`
	RepeaterID       int64     `json:"repeater_id"`
	PayloadID        int64     `json:"payload_id"`
	State            string    `json:"state"`
	StateCode        int       `json:"state_code"`
	AttemptCount     int       `json:"attempt_count"`
	MaxPossibleTries int       `json:"max_possible_tries"`
	NextCheck        time.Time `json:"next_check"`
	IdempotencyKey   *string   `json:"idempotency_key"`
	Attempts         []struct {
		State      string `json:"state"`
		StatusCode int    `json:"status_code"`
		Message    string `json:"message"`
	} `json:"attempts"`
}

type pageJSON struct {
	Repeaters  []repeaterJSON `json:"repeaters"`
	Records    []recordJSON   `json:"records"`
	NextCursor *string        `json:"next_cursor"`
}

func TestAPIRepeaterLifecycle(t *testing.T) {
	e := newAPIEnv(t, dashboards.WebConfig{})
	const secret, secret2 = "whsec_first-secret-value", "whsec_second-secret-value"
	var created repeaterJSON
	e.must(http.StatusCreated, "POST", "/api/v1/repeaters", map[string]any{
		"domain": "acme", "name": "orders", "url": "https://example.com/hook?token=abc",
		"headers": map[string]string{"X-Team": "a"}, "signing_secret": secret, "backoff_codes": []int{409},
	}).decode(t, &created)
	if created.ID == 0 || !created.HasSecret || created.SigningSecret != nil || created.MaxAttempts != 6 {
		t.Fatalf("created: %+v", created)
	}
	path := fmt.Sprintf("/api/v1/repeaters/%d", created.ID)

	var got repeaterJSON
	e.must(http.StatusOK, "GET", path, nil).decode(t, &got)
	if got.Name != "orders" || got.Headers["X-Team"] != "a" || !got.HasSecret {
		t.Errorf("get: %+v", got)
	}
	e.must(http.StatusOK, "PATCH", path, map[string]any{"name": "orders-v2", "signing_secret": secret2}).decode(t, &got)
	if got.Name != "orders-v2" || got.URL != created.URL || !got.HasSecret {
		t.Errorf("patch: %+v", got)
	}
	if r, _ := e.st.GetRepeater(t.Context(), created.ID); r.SigningSecret != secret2 {
		t.Errorf("patched secret not stored")
	}
	e.must(http.StatusOK, "PATCH", path, map[string]any{"signing_secret": ""}).decode(t, &got)
	if got.HasSecret {
		t.Error(`"signing_secret": "" did not remove the secret`)
	}
	e.must(http.StatusOK, "POST", path+"/pause", nil).decode(t, &got)
	if !got.IsPaused {
		t.Error("pause: not paused")
	}
	e.must(http.StatusOK, "POST", path+"/resume", nil).decode(t, &got)
	if got.IsPaused {
		t.Error("resume: still paused")
	}
	rec := e.record(created.ID)
	e.must(http.StatusNoContent, "DELETE", path, nil)
	e.must(http.StatusOK, "GET", path, nil).decode(t, &got)
	if !got.IsDeleted {
		t.Error("delete: not marked deleted")
	}
	var r recordJSON
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/records/%d", rec.ID), nil).decode(t, &r)
	if r.State != "cancelled" {
		t.Errorf("ready record of a deleted repeater is %s, want cancelled", r.State)
	}
	for _, b := range e.bodies {
		if strings.Contains(b, secret) || strings.Contains(b, secret2) || strings.Contains(b, "signing_secret") {
			t.Fatalf("a response renders the signing secret: %s", b)
		}
	}
}

func TestAPIListRepeatersPagesAndFilters(t *testing.T) {
	e := newAPIEnv(t, dashboards.WebConfig{})
	var want []int64
	for range 5 {
		want = append(want, e.repeater("acme").ID)
	}
	e.repeater("globex")
	gone := e.repeater("acme")
	if err := e.st.DeleteRepeater(t.Context(), gone.ID); err != nil {
		t.Fatal(err)
	}
	var got []int64
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		var p pageJSON
		e.must(http.StatusOK, "GET", "/api/v1/repeaters?domain=acme&limit=2&cursor="+cursor, nil).decode(t, &p)
		for _, r := range p.Repeaters {
			got = append(got, r.ID)
		}
		if p.NextCursor == nil {
			break
		}
		cursor = *p.NextCursor
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("paged acme repeaters = %v, want %v", got, want)
	}
	var all pageJSON
	e.must(http.StatusOK, "GET", "/api/v1/repeaters?include_deleted=true", nil).decode(t, &all)
	if len(all.Repeaters) != 7 || all.NextCursor != nil {
		t.Errorf("include_deleted: %d repeaters, next %v", len(all.Repeaters), all.NextCursor)
	}
}

// TestAPIRejectedRequestsWriteNothing sends one bad request per error the
// API can answer and checks the status, the code, and that no row was
// added or changed.
func TestAPIRejectedRequestsWriteNothing(t *testing.T) {
	const maxPayload = 4096
	e := newAPIEnv(t, dashboards.WebConfig{MaxPayloadBytes: maxPayload})
	live := e.repeater("acme")
	deleted := e.repeater("acme")
	doneRec := e.record(live.ID)
	if _, err := e.st.CancelRecord(t.Context(), doneRec.ID); err != nil {
		t.Fatal(err)
	}
	deletedRec := e.record(deleted.ID)
	if err := e.st.DeleteRepeater(t.Context(), deleted.ID); err != nil {
		t.Fatal(err)
	}
	deep := strings.Repeat("[", 70) + strings.Repeat("]", 70)
	big := strings.Repeat("a", maxPayload+1)
	livePath := fmt.Sprintf("/api/v1/repeaters/%d", live.ID)
	deletedPath := fmt.Sprintf("/api/v1/repeaters/%d", deleted.ID)
	rec := func(fields string) string { return fmt.Sprintf(`{"repeater_id":%d,%s}`, live.ID, fields) }

	cases := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"malformed JSON", "POST", "/api/v1/records", `{"repeater_id":`, 400, "bad_json"},
		{"syntax error", "POST", "/api/v1/records", `{"repeater_id" 1}`, 400, "bad_json"},
		{"trailing data", "POST", "/api/v1/records", rec(`"payload":1`) + ` {}`, 400, "bad_json"},
		{"not an object", "POST", "/api/v1/records", `[1]`, 400, "bad_json"},
		{"null body", "POST", "/api/v1/repeaters", `null`, 400, "bad_json"},
		{"empty body", "POST", "/api/v1/records", ``, 400, "bad_json"},
		{"unknown field", "POST", "/api/v1/records", rec(`"payload":1,"colour":"red"`), 400, "bad_json"},
		{"wrong type", "POST", "/api/v1/records", `{"repeater_id":"one","payload":1}`, 400, "bad_json"},
		{"too deep", "POST", "/api/v1/records", rec(`"payload":` + deep), 400, "bad_json"},
		{"unknown repeater", "POST", "/api/v1/records", `{"repeater_id":999999,"payload":1}`, 404, "not_found"},
		{"no repeater_id", "POST", "/api/v1/records", `{"payload":1}`, 422, "invalid"},
		{"no payload", "POST", "/api/v1/records", rec(`"content_type":"text/plain"`), 422, "invalid"},
		{"null payload", "POST", "/api/v1/records", rec(`"payload":null`), 422, "invalid"},
		{"two payloads", "POST", "/api/v1/records", rec(`"payload":1,"payload_base64":"AA=="`), 422, "invalid"},
		{"bad base64", "POST", "/api/v1/records", rec(`"payload_base64":"***"`), 422, "invalid"},
		{"bad content type", "POST", "/api/v1/records", rec(`"payload":1,"content_type":"not a type"`), 422, "invalid"},
		{"key with NUL", "POST", "/api/v1/records", rec(`"payload":1,"idempotency_key":"a\u0000b"`), 422, "invalid"},
		{"payload over limit", "POST", "/api/v1/records", rec(`"payload":"` + big + `"`), 413, "payload_too_large"},
		{"base64 payload over limit", "POST", "/api/v1/records",
			rec(`"payload_base64":"` + base64.StdEncoding.EncodeToString([]byte(big)) + `"`), 413, "payload_too_large"},
		{"body over limit", "POST", "/api/v1/records", rec(`"payload":"` + strings.Repeat("a", 200<<10) + `"`), 413, "payload_too_large"},
		{"deleted repeater", "POST", "/api/v1/records", fmt.Sprintf(`{"repeater_id":%d,"payload":1}`, deleted.ID), 409, "conflict"},
		{"private URL", "POST", "/api/v1/repeaters", `{"domain":"acme","url":"http://127.0.0.1/hook"}`, 422, "invalid"},
		{"private URL, decimal", "POST", "/api/v1/repeaters", `{"domain":"acme","url":"http://2130706433/"}`, 422, "invalid"},
		{"ftp URL", "POST", "/api/v1/repeaters", `{"domain":"acme","url":"ftp://example.com/"}`, 422, "invalid"},
		{"no URL", "POST", "/api/v1/repeaters", `{"domain":"acme"}`, 422, "invalid"},
		{"no domain", "POST", "/api/v1/repeaters", `{"url":"https://example.com/"}`, 422, "invalid"},
		{"bad method", "POST", "/api/v1/repeaters", `{"domain":"acme","url":"https://example.com/","request_method":"GET"}`, 422, "invalid"},
		{"reserved header", "POST", "/api/v1/repeaters",
			`{"domain":"acme","url":"https://example.com/","headers":{"Webhook-Signature":"x"}}`, 422, "invalid"},
		{"header injection", "POST", "/api/v1/repeaters",
			`{"domain":"acme","url":"https://example.com/","headers":{"X-A":"a\r\nX-B: b"}}`, 422, "invalid"},
		{"bad backoff code", "POST", "/api/v1/repeaters", `{"domain":"acme","url":"https://example.com/","backoff_codes":[700]}`, 422, "invalid"},
		{"negative workers", "POST", "/api/v1/repeaters", `{"domain":"acme","url":"https://example.com/","max_workers":-1}`, 422, "invalid"},
		{"huge timeout", "POST", "/api/v1/repeaters", `{"domain":"acme","url":"https://example.com/","timeout_ms":1000000000000}`, 422, "invalid"},
		{"name with NUL", "POST", "/api/v1/repeaters", `{"domain":"acme","url":"https://example.com/","name":"a\u0000"}`, 422, "invalid"},
		{"patch unknown", "PATCH", "/api/v1/repeaters/999999", `{"name":"x"}`, 404, "not_found"},
		{"patch private URL", "PATCH", livePath, `{"url":"http://10.0.0.1/"}`, 422, "invalid"},
		{"patch domain", "PATCH", livePath, `{"domain":"globex"}`, 422, "invalid"},
		{"patch bad method", "PATCH", livePath, `{"request_method":"DELETE"}`, 422, "invalid"},
		{"patch deleted", "PATCH", deletedPath, `{"name":"x"}`, 409, "conflict"},
		{"pause deleted", "POST", deletedPath + "/pause", nil, 409, "conflict"},
		{"pause unknown", "POST", "/api/v1/repeaters/999999/pause", nil, 404, "not_found"},
		{"delete deleted", "DELETE", deletedPath, nil, 409, "conflict"},
		{"bad id", "GET", "/api/v1/repeaters/abc", nil, 400, "bad_request"},
		{"zero id", "GET", "/api/v1/records/0", nil, 400, "bad_request"},
		{"unknown record", "GET", "/api/v1/records/999999", nil, 404, "not_found"},
		{"bad cursor", "GET", "/api/v1/records?cursor=bm9wZQ", nil, 400, "bad_request"},
		{"bad repeaters cursor", "GET", "/api/v1/repeaters?cursor=!!!", nil, 400, "bad_request"},
		{"bad limit", "GET", "/api/v1/records?limit=0", nil, 400, "bad_request"},
		{"bad repeater_id filter", "GET", "/api/v1/records?repeater_id=x", nil, 400, "bad_request"},
		{"bad state", "GET", "/api/v1/records?state=done", nil, 422, "invalid"},
		{"cancel finished", "POST", fmt.Sprintf("/api/v1/records/%d/cancel", doneRec.ID), nil, 409, "conflict"},
		{"requeue on deleted repeater", "POST", fmt.Sprintf("/api/v1/records/%d/requeue", deletedRec.ID), nil, 409, "conflict"},
		{"requeue unknown", "POST", "/api/v1/records/999999/requeue", nil, 404, "not_found"},
		{"unknown flag", "PUT", "/api/v1/domains/acme/flags/go_faster", `{"enabled":true}`, 422, "invalid"},
		{"flag without enabled", "PUT", "/api/v1/domains/acme/flags/process_repeaters", `{}`, 422, "invalid"},
		{"flag enabled not bool", "PUT", "/api/v1/domains/acme/flags/process_repeaters", `{"enabled":"yes"}`, 400, "bad_json"},
		{"event, no repeaters", "POST", "/api/v1/domains/nobody/events", `{"payload":{"a":1}}`, 404, "not_found"},
		{"event, no payload", "POST", "/api/v1/domains/acme/events", `{}`, 422, "invalid"},
		{"event, too large", "POST", "/api/v1/domains/acme/events", `{"payload":"` + big + `"}`, 413, "payload_too_large"},
		{"stats bad domain", "GET", "/api/v1/stats?domain=%00", nil, 422, "invalid"},
		{"method not allowed", "PUT", "/api/v1/records", `{}`, 405, "method_not_allowed"},
		{"unknown route", "GET", "/api/v1/nothing", nil, 404, "not_found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.rowCounts()
			r := e.do(c.method, c.path, c.body)
			t.Logf("%d %s", r.Status, r.Body)
			if r.Status != c.status || r.errorCode() != c.code {
				t.Errorf("%s %s: %d %s, want %d %s", c.method, c.path, r.Status, r.Body, c.status, c.code)
			}
			var body struct{ Error struct{ Message string } }
			if json.Unmarshal(r.Body, &body); body.Error.Message == "" {
				t.Errorf("no error message: %s", r.Body)
			}
			if after := e.rowCounts(); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("rows changed by a rejected request: before %v, after %v", before, after)
			}
		})
	}
}

func TestAPIInternalErrorsDoNotLeak(t *testing.T) {
	st := storetest.NewStore(t)
	w := startWeb(t, dashboards.WebConfig{}, st, storetest.RedisClient(t))
	st.Close() // every query now fails inside the store
	e := &apiEnv{t: t, base: "http://" + w.Addr(), st: st}
	r := e.do("GET", "/api/v1/repeaters", nil)
	if r.Status != http.StatusInternalServerError || string(r.Body) != `{"error":{"code":"internal","message":"internal error"}}`+"\n" {
		t.Errorf("store failure: %d %s", r.Status, r.Body)
	}
}

func TestAPIRecordIdempotency(t *testing.T) {
	e := newAPIEnv(t, dashboards.WebConfig{})
	rep := e.repeater("acme")
	body := map[string]any{"repeater_id": rep.ID, "payload": map[string]int{"n": 1}, "idempotency_key": "order-1"}
	var first, again recordJSON
	e.must(http.StatusCreated, "POST", "/api/v1/records", body).decode(t, &first)
	body["payload"] = map[string]int{"n": 2} // a retry with another body still finds the first record
	e.must(http.StatusOK, "POST", "/api/v1/records", body).decode(t, &again)
	if again.ID != first.ID || first.State != "pending" || first.IdempotencyKey == nil || *first.IdempotencyKey != "order-1" {
		t.Errorf("first %+v, again %+v", first, again)
	}
	var other recordJSON
	e.must(http.StatusCreated, "POST", "/api/v1/records", map[string]any{
		"repeater_id": rep.ID, "payload_base64": base64.StdEncoding.EncodeToString([]byte{0, 1, 2}), "content_type": "application/x-bin",
	}).decode(t, &other)
	ready, err := e.st.ClaimRecord(t.Context(), other.ID, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ready.Body, []byte{0, 1, 2}) || ready.ContentType != "application/x-bin" {
		t.Errorf("base64 payload stored as %q %q", ready.Body, ready.ContentType)
	}
	var js recordJSON
	e.must(http.StatusCreated, "POST", "/api/v1/records", fmt.Sprintf(`{"repeater_id":%d,"payload":{"a": [1, 2]}}`, rep.ID)).decode(t, &js)
	if ready, err = e.st.ClaimRecord(t.Context(), js.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	if string(ready.Body) != `{"a": [1, 2]}` || ready.ContentType != "application/json" {
		t.Errorf("JSON payload stored as %q %q, want the bytes sent", ready.Body, ready.ContentType)
	}
}

func TestAPIConcurrentIdempotentRecords(t *testing.T) {
	e := newAPIEnv(t, dashboards.WebConfig{})
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
	e := newAPIEnv(t, dashboards.WebConfig{})
	rep := e.repeater("acme")
	rec := e.record(rep.ID)
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

func TestAPIGetRecordWithAttempts(t *testing.T) {
	e := newAPIEnv(t, dashboards.WebConfig{})
	rec := e.record(e.repeater("acme").ID)
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
	e := newAPIEnv(t, dashboards.WebConfig{})
	a, b := e.repeater("acme"), e.repeater("globex")
	var want []int64
	for range 5 {
		want = append(want, e.record(a.ID).ID)
		e.record(b.ID)
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
	e := newAPIEnv(t, dashboards.WebConfig{})
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

func TestAPIFlags(t *testing.T) {
	e := newAPIEnv(t, dashboards.WebConfig{})
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
	e := newAPIEnv(t, dashboards.WebConfig{})
	a, b := e.repeater("acme"), e.repeater("globex")
	e.record(a.ID)
	e.record(a.ID)
	e.record(b.ID)
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
	e := newAPIEnv(t, dashboards.WebConfig{})
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
	e.record(rep.ID)
	e.exec(`UPDATE repeaters SET is_deleted = true WHERE id = $1`, rep.ID) // bypasses DeleteRepeater's cancel
	if err := e.st.RefreshInvariants(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.must(http.StatusOK, "GET", "/api/v1/invariants", nil).decode(t, &got)
	if got.LastRefresh == nil || got.Totals[store.CheckReadyOnDeletedRepeater] != 1 || len(got.Violations) == 0 {
		t.Errorf("after a violation: %+v", got)
	}
}
