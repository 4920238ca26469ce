// Package apitest checks the API against its contract, the OpenAPI
// document (dashboards/api/openapi.json), for the tests of the API and of
// the web role that mounts it.
//
// Every exchange a checked server serves is held to the document:
//
//   - Every answer must be one the document gives for that operation: its
//     status listed, its content type and body matching the schema, its
//     required headers present. An unknown path must be a 404 error body; a
//     method the path lacks, a 405 whose Allow lists the document's methods.
//   - A request the document calls invalid must be refused (4xx): the
//     document may not promise less than the API checks. One it calls valid
//     may still be refused (an unsafe URL, a deleted repeater: the document
//     cannot say everything), but the refusal must be a documented answer.
//
// Credentials are the web role's to check, so the document's security
// requirements are not enforced here; its 401 and 403 answers are.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"repeaterd/dashboards/api"
)

// Contract is a loaded, validated OpenAPI document and its router.
type Contract struct {
	doc    *openapi3.T
	router routers.Router
}

var (
	embedded   = sync.OnceValues(func() (*Contract, error) { return Parse(api.OpenAPI) })
	exercised  sync.Map // "METHOD /api/v1/path" of every operation checked
	maxErrText = 600
)

// Load returns the embedded document's contract, loaded once per test
// binary; a document that does not load or validate fails t.
func Load(t testing.TB) *Contract {
	t.Helper()
	c, err := embedded()
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return c
}

// Parse loads and validates an OpenAPI 3.1 document.
func Parse(raw []byte) (*Contract, error) {
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if doc.OpenAPIMajorMinor() != "3.1" {
		return nil, fmt.Errorf("openapi is %q, want 3.1.x", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("validate: %w", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	return &Contract{doc: doc, router: router}, nil
}

// Doc is the document.
func (c *Contract) Doc() *openapi3.T { return c.doc }

// Operations lists the document's operations as "METHOD /api/v1/path".
func (c *Contract) Operations() []string {
	var out []string
	for path, item := range c.doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, method+" /api/v1"+path)
		}
	}
	return out
}

// Exercised reports whether a checked server has served op ("METHOD
// /api/v1/path", as api.API.Routes names it) in this test binary.
func Exercised(op string) bool {
	_, ok := exercised.Load(op)
	return ok
}

// Handler serves next, failing t for every exchange under /api/ that
// breaks the contract.
func (c *Contract) Handler(t testing.TB, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/") {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		for _, err := range c.Check(r.Context(), r, body, rec.Result()) {
			t.Errorf("contract: %s %s → %d: %.*s\n\trequest: %.300q\n\tanswer: %.500s",
				r.Method, r.URL.RequestURI(), rec.Code, maxErrText, err, body, rec.Body.Bytes())
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// Check returns how one exchange breaks the contract: the request r (its
// body already read into body) and the answer resp.
func (c *Contract) Check(ctx context.Context, r *http.Request, body []byte, resp *http.Response) []error {
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		return []error{err}
	}
	req := r.Clone(ctx)
	req.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := c.router.FindRoute(req)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		return c.checkUnrouted(resp, respBody, http.StatusNotFound, "")
	case errors.Is(err, routers.ErrMethodNotAllowed):
		return c.checkUnrouted(resp, respBody, http.StatusMethodNotAllowed, c.allow(req))
	case err != nil:
		return []error{fmt.Errorf("routing: %w", err)}
	}
	exercised.Store(route.Method+" /api/v1"+route.Path, true)
	opts := &openapi3filter.Options{
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc, // the web role's to check
		IncludeResponseStatus: true,
		MultiError:            true,
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	var errs []error
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil && resp.StatusCode < 400 {
		errs = append(errs, fmt.Errorf("the API accepted a request the document calls invalid: %w", err))
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(respBody)), Options: opts,
	}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		errs = append(errs, fmt.Errorf("the answer is not one the document gives: %w", err))
	}
	return errs
}

// checkUnrouted checks the answer to a path or method the document does
// not have: status want, an error body, and for a 405 the Allow header
// allow.
func (c *Contract) checkUnrouted(resp *http.Response, body []byte, want int, allow string) []error {
	var errs []error
	switch resp.StatusCode {
	case want:
	case http.StatusUnauthorized, http.StatusForbidden: // the web role refuses before any route is looked up
		want = resp.StatusCode
	default:
		errs = append(errs, fmt.Errorf("a route the document does not have answered %d, want %d", resp.StatusCode, want))
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return append(errs, fmt.Errorf("error body: %w", err))
	}
	if err := c.doc.Components.Schemas["Error"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		errs = append(errs, fmt.Errorf("error body: %w", err))
	}
	if want == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != allow {
		errs = append(errs, fmt.Errorf("allow: %q, but the document has %q", resp.Header.Get("Allow"), allow))
	}
	return errs
}

// allow lists, as an Allow header does, the methods the document has for
// r's path.
func (c *Contract) allow(r *http.Request) string {
	var out []string
	for _, m := range []string{"DELETE", "GET", "PATCH", "POST", "PUT"} { // sorted, as the API's Allow
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, _, err := c.router.FindRoute(probe); err == nil {
			out = append(out, m)
		}
	}
	return strings.Join(out, ", ")
}
