package console_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"repeaterd/dashboards/auth"
	"repeaterd/dashboards/console"
	"repeaterd/store"
	"repeaterd/store/storetest"
)

// hostile is a domain, a repeater name and an attempt message as a hostile
// tenant or endpoint would write them.
const (
	hostileDomain  = `<script>alert(1)</script>`
	hostileName    = `<img src=x onerror="alert(2)">`
	hostileMessage = `</span><script>alert(3)</script>`
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newConsole returns the console on st with cfg (logging nowhere unless
// cfg says otherwise).
func newConsole(t *testing.T, st *store.Store, cfg console.Config) *console.Console {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	c, err := console.New(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serve serves h on a loopback port until the test ends.
func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// twoAttempts makes a repeater cancel a record at its second failure.
func twoAttempts(r *store.Repeater) { r.MaxAttempts = 2 }

func repeater(t *testing.T, st *store.Store, domain, name string) *store.Repeater {
	t.Helper()
	return storetest.Repeater(t, st, storetest.RepeaterOpts{Domain: domain, Name: name, Edit: twoAttempts})
}

// execSQL runs a statement no store method makes (a violation, a slot).
func execSQL(t *testing.T, st *store.Store, sql string, args ...any) {
	t.Helper()
	if _, err := st.Pool().Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func recordOutcomes(t *testing.T, st *store.Store, outcomes []store.Outcome) {
	t.Helper()
	if _, err := st.RecordOutcomes(context.Background(), outcomes, nil); err != nil {
		t.Fatal(err)
	}
}

// seedBackoff backs r off for d with a failed attempt whose message is msg.
func seedBackoff(t *testing.T, st *store.Store, r *store.Repeater, d time.Duration, code int, msg string) {
	t.Helper()
	ids := storetest.Records(t, st, r, 3)
	recordOutcomes(t, st, []store.Outcome{{RecordID: ids[0], State: store.StateFail, StatusCode: code, Message: msg}})
	if err := st.SetBackoff(context.Background(), r.ID, time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
}

// seedHistory gives r an hour of attempts before now, so the chart has a
// shape: a wave of successes, some failures and rejections.
func seedHistory(t *testing.T, st *store.Store, r *store.Repeater, now time.Time) {
	t.Helper()
	var outcomes []store.Outcome
	add := func(at time.Time, state store.State, n int) {
		for range n {
			outcomes = append(outcomes, store.Outcome{State: state, StatusCode: 200, AttemptedAt: at})
		}
	}
	for ago := 1; ago < 60; ago++ {
		at := now.Truncate(time.Minute).Add(time.Duration(-ago)*time.Minute + 30*time.Second)
		add(at, store.StateSuccess, 12+(ago*7)%17)
		add(at, store.StateFail, ago%4)
		if ago%9 == 0 {
			add(at, store.StatePayloadRejected, 3)
		}
		if ago%13 == 0 {
			add(at, store.StateEmpty, 2)
		}
	}
	ids := storetest.Records(t, st, r, len(outcomes))
	for i := range outcomes {
		outcomes[i].RecordID = ids[i]
	}
	recordOutcomes(t, st, outcomes)
}

// attempt records n attempts at new records of r, made at at.
func attempt(t *testing.T, st *store.Store, r *store.Repeater, at time.Time, state store.State, n int) {
	t.Helper()
	var out []store.Outcome
	for _, id := range storetest.Records(t, st, r, n) {
		out = append(out, store.Outcome{RecordID: id, State: state, AttemptedAt: at})
	}
	recordOutcomes(t, st, out)
}

// flowRecords registers records and records their outcomes through the
// store, as the engine would, until stop is closed: every state appears,
// Cancelled from a second Fail (the repeaters allow 2 attempts), and one
// record of each batch stays pending. It does not cancel a store call
// midway, so once it returns every write it made is committed. It runs
// off the test's goroutine, so it returns errors instead of failing.
func flowRecords(stop <-chan struct{}, st *store.Store, repeaterIDs []int64) error {
	ctx := context.Background()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	bodies := make([][]byte, 5)
	var retry []int64
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
		for j := range bodies {
			bodies[j] = fmt.Appendf(nil, `{"batch":%d,"n":%d}`, i, j)
		}
		ids, err := st.RegisterMany(ctx, repeaterIDs[i%len(repeaterIDs)], "", bodies)
		if err != nil {
			return err
		}
		outcomes := []store.Outcome{
			{RecordID: ids[0], State: store.StateSuccess, StatusCode: 200},
			{RecordID: ids[1], State: store.StateFail, StatusCode: 500, Message: "try again"},
			{RecordID: ids[2], State: store.StatePayloadRejected, StatusCode: 400, Message: "bad payload"},
			{RecordID: ids[3], State: store.StateEmpty},
		}
		for _, id := range retry {
			outcomes = append(outcomes, store.Outcome{RecordID: id, State: store.StateFail, StatusCode: 503})
		}
		retry = ids[1:2]
		if _, err := st.RecordOutcomes(ctx, outcomes, nil); err != nil {
			return err
		}
	}
}

// fetch returns the body of GET path from h.
func fetch(t *testing.T, h http.Handler, path string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// login logs into h with token and returns the session cookie.
func login(t *testing.T, h http.Handler, token string) *http.Cookie {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/ui/login", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	h.ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		if c.Name == auth.SessionCookie && c.Value != "" {
			return c
		}
	}
	t.Fatalf("login with %q set no session cookie: %d", token, rec.Code)
	return nil
}

// fetchWith is fetch with a session cookie.
func fetchWith(t *testing.T, h http.Handler, path string, session *http.Cookie) string {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.AddCookie(session)
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
	}
	return rec.Body.String()
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf returns the CSRF token of a page.
func csrfOf(t *testing.T, html string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(html)
	if m == nil {
		t.Fatal("the page has no CSRF token")
	}
	return m[1]
}
