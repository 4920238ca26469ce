package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"repeaterd/dashboards/api"
	"repeaterd/dashboards/api/apitest"
	"repeaterd/store"
	"repeaterd/store/storetest"
)

// apiEnv is the API served over a fresh database, and what its tests need
// around it.
type apiEnv struct {
	t    *testing.T
	base string
	st   *store.Store

	mu     sync.Mutex
	bodies []string // every response body, for the never-render-the-secret check
}

func newAPIEnv(t *testing.T, cfg api.Config) *apiEnv {
	t.Helper()
	return serveAPI(t, cfg, storetest.NewStore(t))
}

// serveAPI serves the API over st on a loopback port, every exchange
// checked against openapi.json (apitest): a mismatch fails t.
func serveAPI(t *testing.T, cfg api.Config, st *store.Store) *apiEnv {
	t.Helper()
	h, err := api.New(cfg, st)
	if err != nil {
		t.Fatalf("api.New: %v", err)
	}
	srv := httptest.NewServer(apitest.Load(t).Handler(t, h))
	t.Cleanup(srv.Close)
	return &apiEnv{t: t, base: srv.URL, st: st}
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
func (e *apiEnv) rowCounts() map[string]int {
	e.t.Helper()
	out := map[string]int{}
	for _, table := range []string{"repeaters", "payloads", "repeat_records", "repeat_record_attempts", "domain_flags"} {
		out[table] = storetest.Count(e.t, e.st, "SELECT count(*) FROM "+table)
	}
	out["repeaters updated"] = storetest.Count(e.t, e.st, `SELECT count(*) FROM repeaters WHERE updated_at > created_at`)
	return out
}

// repeater creates a repeater of domain with the storetest factory.
func (e *apiEnv) repeater(domain string) *store.Repeater {
	e.t.Helper()
	return storetest.Repeater(e.t, e.st, storetest.RepeaterOpts{Domain: domain})
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
	RequestedState   string    `json:"requested_state"`
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
