package api_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"repeaterd/dashboards/api"
	"repeaterd/store/storetest"
)

// TestAPIRejectedRequestsWriteNothing sends one bad request per error the
// API can answer and checks the status, the code, and that no row was
// added or changed.
func TestAPIRejectedRequestsWriteNothing(t *testing.T) {
	const maxPayload = 4096
	e := newAPIEnv(t, api.Config{MaxPayloadBytes: maxPayload})
	live := e.repeater("acme")
	deleted := e.repeater("acme")
	doneRec := storetest.Record(t, e.st, live, nil)
	if _, err := e.st.CancelRecord(t.Context(), doneRec.ID); err != nil {
		t.Fatal(err)
	}
	deletedRec := storetest.Record(t, e.st, deleted, nil)
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
		{"framing header", "POST", "/api/v1/repeaters",
			`{"domain":"acme","url":"https://example.com/","headers":{"host":"evil.example"}}`, 422, "invalid"},
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
		// Strict JSON (strict.go): what encoding/json would take loosely.
		{"invalid UTF-8", "POST", "/api/v1/repeaters", "{\"domain\":\"ac\xffme\",\"url\":\"https://example.com/\"}", 400, "bad_json"},
		{"invalid UTF-8 in payload", "POST", "/api/v1/records", rec("\"payload\":\"\xc3\x28\""), 400, "bad_json"},
		{"lone surrogate", "POST", "/api/v1/repeaters", `{"domain":"ac\ud800me","url":"https://example.com/"}`, 400, "bad_json"},
		{"lone low surrogate", "POST", "/api/v1/records", rec(`"payload":"\udc00"`), 400, "bad_json"},
		{"duplicate key", "POST", "/api/v1/repeaters", `{"domain":"acme","domain":"globex","url":"https://example.com/"}`, 400, "bad_json"},
		{"syntax error inside an array", "POST", "/api/v1/repeaters", `{"domain":"acme","headers":[{S":1}]}`, 400, "bad_json"},
		{"syntax error inside a batch item", "POST", "/api/v1/records:batch", `{"records":[{"repeater_id":1,"x":[{S":1}]}]}`, 400, "bad_json"},
		{"escaped duplicate key", "POST", "/api/v1/repeaters", `{"domain":"acme","dom\u0061in":"globex","url":"https://example.com/"}`, 400, "bad_json"},
		{"case-variant key", "POST", "/api/v1/repeaters", `{"domain":"acme","Domain":"globex","url":"https://example.com/"}`, 400, "bad_json"},
		{"case-variant key alone", "POST", "/api/v1/repeaters", `{"Domain":"acme","url":"https://example.com/"}`, 400, "bad_json"},
		{"folded key", "POST", "/api/v1/repeaters", `{"domain":"acme","url":"https://example.com/","ſigning_secret":"x"}`, 400, "bad_json"},
		{"case-variant headers", "POST", "/api/v1/repeaters", `{"domain":"acme","url":"https://example.com/","headers":{"X-Key":"a","x-key":"b"}}`, 400, "bad_json"},
		{"redacted header sent back", "POST", "/api/v1/repeaters", `{"domain":"acme","url":"https://example.com/","headers":{"X-Key":"[redacted]"}}`, 422, "invalid"},
		{"sealed-looking secret", "POST", "/api/v1/repeaters", `{"domain":"acme","url":"https://example.com/","signing_secret":"enc:v1:abc"}`, 422, "invalid"},
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

// TestAPIStrictJSONLeavesPayloadAlone: the payload is the tenant's bytes,
// sent on as they are: keys differing in case are distinct there.
func TestAPIStrictJSONLeavesPayloadAlone(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	rep := e.repeater("acme")
	e.must(http.StatusCreated, "POST", "/api/v1/records", fmt.Sprintf(`{"repeater_id":%d,"payload":{"a":1,"A":2,"\ud83d\ude00":3}}`, rep.ID))
}

// TestAPIWritesNeedJSON: a write that is not declared application/json
// (what a cross-site form or a text/plain fetch sends) is refused unread,
// body or none.
func TestAPIWritesNeedJSON(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	rep := e.repeater("acme")
	before := e.rowCounts()
	for _, c := range []struct{ method, path, contentType, body string }{
		{"POST", "/api/v1/repeaters", "text/plain", `{"domain":"acme","url":"https://example.com/"}`},
		{"POST", "/api/v1/repeaters", "application/x-www-form-urlencoded", `domain=acme`},
		{"POST", "/api/v1/repeaters", "", `{"domain":"acme","url":"https://example.com/"}`},
		{"POST", fmt.Sprintf("/api/v1/repeaters/%d/pause", rep.ID), "", ``},
		{"DELETE", fmt.Sprintf("/api/v1/repeaters/%d", rep.ID), "multipart/form-data; boundary=x", ``},
		{"PUT", "/api/v1/domains/acme/flags/process_repeaters", "text/json", `{"enabled":false}`},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), c.method, e.base+c.path, strings.NewReader(c.body))
		if c.contentType != "" {
			req.Header.Set("Content-Type", c.contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("%s %s as %q: %d, want 415", c.method, c.path, c.contentType, resp.StatusCode)
		}
	}
	if after := e.rowCounts(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("refused writes changed rows: %v, then %v", before, after)
	}
	e.must(http.StatusOK, "POST", fmt.Sprintf("/api/v1/repeaters/%d/pause", rep.ID), nil) // JSON, no body
}

func TestAPIInternalErrorsDoNotLeak(t *testing.T) {
	st := storetest.NewStore(t)
	e := serveAPI(t, api.Config{}, st)
	st.Close() // every query now fails inside the store
	r := e.do("GET", "/api/v1/repeaters", nil)
	if r.Status != http.StatusInternalServerError || string(r.Body) != `{"error":{"code":"internal","message":"internal error"}}`+"\n" {
		t.Errorf("store failure: %d %s", r.Status, r.Body)
	}
}
