package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"repeaterd/dashboards/api"
	"repeaterd/dashboards/api/apitest"
	"repeaterd/store/storetest"
)

// notYetServed are operations the document describes ahead of the code
// being merged. Once a route is served the test below fails until it is
// taken out of this list, and from then on the suite checks its exchanges.
var notYetServed = []string{}

// TestOpenAPINamesEveryRoute: the document has exactly the routes the API
// registers, so neither can gain one the other lacks.
func TestOpenAPINamesEveryRoute(t *testing.T) {
	c := apitest.Load(t)
	if servers := c.Doc().Servers; len(servers) != 1 || servers[0].URL != "/api/v1" {
		t.Fatalf("servers: want one, /api/v1")
	}
	documented := c.Operations()
	a, err := api.New(api.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	served := a.Routes()
	for _, r := range served {
		switch {
		case slices.Contains(notYetServed, r):
			t.Errorf("%s is served now: take it out of notYetServed", r)
		case !slices.Contains(documented, r):
			t.Errorf("%s is served but not in openapi.json", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(served, r) && !slices.Contains(notYetServed, r) {
			t.Errorf("openapi.json has %s, which the API does not serve", r)
		}
	}
	if len(served) < 20 {
		t.Errorf("only %d routes served: %v", len(served), served)
	}
}

// TestOpenAPIServedAsInTheRepository: the route answers the embedded
// document, byte for byte, as JSON.
func TestOpenAPIServedAsInTheRepository(t *testing.T) {
	e := newAPIEnv(t, api.Config{})
	r := e.must(http.StatusOK, "GET", "/api/v1/openapi.json", nil)
	if !bytes.Equal(r.Body, api.OpenAPI) {
		t.Fatalf("served %d bytes, not the %d of openapi.json", len(r.Body), len(api.OpenAPI))
	}
	var doc struct{ OpenAPI string }
	r.decode(t, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
}

// TestContractCatchesMismatches proves the checker bites: against a copy
// of the document with one thing wrong, a real exchange is reported.
func TestContractCatchesMismatches(t *testing.T) {
	st := storetest.NewStore(t)
	h, err := api.New(api.Config{}, st)
	if err != nil {
		t.Fatal(err)
	}
	rep := storetest.Repeater(t, st, storetest.RepeaterOpts{Domain: "acme"})
	create := `{"domain":"acme","url":"https://example.com/hook","name":"hook"}`
	for _, c := range []struct {
		name, method, path, body string
		breakDoc                 func(doc map[string]any)
		want                     string
	}{
		{"a field the document lacks", "GET", fmt.Sprintf("/api/v1/repeaters/%d", rep.ID), "",
			func(doc map[string]any) { delete(props(doc, "Repeater"), "has_secret") }, "has_secret"},
		{"a field of the wrong type", "GET", fmt.Sprintf("/api/v1/repeaters/%d", rep.ID), "",
			func(doc map[string]any) { props(doc, "Repeater")["max_attempts"] = map[string]any{"type": "string"} }, "max_attempts"},
		{"a status the document lacks", "POST", "/api/v1/records", `{"repeater_id":999999,"payload":1}`,
			func(doc map[string]any) {
				delete(operation(doc, "/records", "post")["responses"].(map[string]any), "404")
			}, "status is not supported"},
		{"a document stricter than the API", "POST", "/api/v1/repeaters", create,
			func(doc map[string]any) {
				props(doc, "RepeaterInput")["name"] = map[string]any{"type": "string", "maxLength": 2}
			},
			"accepted a request the document calls invalid"},
		{"a missing header", "POST", "/api/v1/repeaters", create,
			func(doc map[string]any) {
				ok := operation(doc, "/repeaters", "post")["responses"].(map[string]any)["201"].(map[string]any)
				delete(ok["headers"].(map[string]any), "Location")
				ok["headers"].(map[string]any)["ETag"] = map[string]any{"required": true, "schema": map[string]any{"type": "string"}}
			}, `"ETag" missing`},
		{"a status of the batch route (its path has a colon)", "POST", "/api/v1/records:batch",
			`{"records":[{"repeater_id":999999,"payload":1}]}`,
			func(doc map[string]any) {
				delete(operation(doc, "/records:batch", "post")["responses"].(map[string]any), "404")
			}, "status is not supported"},
		{"a connection field the document lacks", "POST", "/api/v1/connections", `{"domain":"acme","name":"c"}`,
			func(doc map[string]any) { delete(props(doc, "Connection"), "used_by") }, "used_by"},
		{"a method the document lacks", "GET", "/api/v1/records", "",
			func(doc map[string]any) { delete(doc["paths"].(map[string]any)["/records"].(map[string]any), "get") }, "answered 200, want 405"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var doc map[string]any
			if err := json.Unmarshal(api.OpenAPI, &doc); err != nil {
				t.Fatal(err)
			}
			c.breakDoc(doc)
			raw, _ := json.Marshal(doc)
			broken, err := apitest.Parse(raw)
			if err != nil {
				t.Fatalf("broken document: %v", err)
			}
			if errs := exchange(t, h, apitest.Load(t), c.method, c.path, c.body); len(errs) > 0 {
				t.Fatalf("the real document already refuses this exchange: %v", errs)
			}
			errs := exchange(t, h, broken, c.method, c.path, c.body)
			if !strings.Contains(fmt.Sprint(errs), c.want) {
				t.Fatalf("want an error saying %q, got %v", c.want, errs)
			}
		})
	}
}

// exchange sends one request to h and returns how it breaks contract c.
func exchange(t *testing.T, h http.Handler, c *apitest.Contract, method, path, body string) []error {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return c.Check(t.Context(), req, []byte(body), rec.Result())
}

func props(doc map[string]any, schema string) map[string]any {
	s := doc["components"].(map[string]any)["schemas"].(map[string]any)[schema].(map[string]any)
	return s["properties"].(map[string]any)
}

func operation(doc map[string]any, path, method string) map[string]any {
	return doc["paths"].(map[string]any)[path].(map[string]any)[method].(map[string]any)
}
