package console_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"repeaterd/dashboards/auth"
	"repeaterd/dashboards/console"
	"repeaterd/store"
	"repeaterd/store/storetest"
)

// TestOperatorPagesRequests: every operator page renders for a session and
// sends others to the login; forms need the CSRF token; bad filters are
// 4xx pages; nothing changes on a refusal.
func TestOperatorPagesRequests(t *testing.T) {
	st := storetest.NewStore(t)
	r := repeater(t, st, "a.example", "orders")
	rec, _, err := st.RegisterRecord(t.Context(), store.RegisterParams{RepeaterID: r.ID, ContentType: "application/xml",
		Body: []byte(`<doc><a>1</a></doc>`)})
	if err != nil {
		t.Fatal(err)
	}
	const token = "tok"
	logs := &storetest.LogBuffer{}
	h := newConsole(t, st, console.Config{Token: auth.NewToken(token), Logger: slog.New(slog.NewTextHandler(logs, nil))})
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	session := login(t, h, token)
	for _, path := range []string{"/ui/repeaters", "/ui/repeaters?domain=a.example", fmt.Sprintf("/ui/repeaters/%d", r.ID),
		fmt.Sprintf("/ui/repeaters/%d?state=pending&key=x&after=2026-01-01T00:00&before=2027-01-01T00:00", r.ID),
		fmt.Sprintf("/ui/records/%d", rec.ID), "/ui/domains", "/ui/domains/a.example"} {
		fetchWith(t, h, path, session)
		res := httptest.NewRecorder()
		h.ServeHTTP(res, httptest.NewRequest(http.MethodGet, path, nil))
		if res.Code != http.StatusSeeOther || !strings.HasPrefix(res.Header().Get("Location"), "/ui/login") {
			t.Errorf("GET %s without a session: %d, want 303 to the login", path, res.Code)
		}
	}
	for path, want := range map[string]int{
		"/ui/repeaters/999999":                           http.StatusNotFound,
		"/ui/records/999999":                             http.StatusNotFound,
		"/ui/jobs/999999":                                http.StatusNotFound,
		"/ui/domains/nowhere":                            http.StatusNotFound,
		fmt.Sprintf("/ui/repeaters/%d?state=lost", r.ID): http.StatusBadRequest,
		fmt.Sprintf("/ui/repeaters/%d?after=0001-01-01T00:00", r.ID): http.StatusBadRequest,
		fmt.Sprintf("/ui/repeaters/%d?after=yesterday", r.ID):        http.StatusBadRequest,
		"/ui/repeaters?after=x":                                      http.StatusBadRequest,
	} {
		res := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.AddCookie(session)
		h.ServeHTTP(res, req)
		if res.Code != want {
			t.Errorf("GET %s: %d, want %d: %.300s", path, res.Code, want, res.Body)
		}
	}
	page := fetchWith(t, h, fmt.Sprintf("/ui/records/%d", rec.ID), session)
	if !strings.Contains(page, "&lt;doc&gt;\n  &lt;a&gt;1&lt;/a&gt;\n&lt;/doc&gt;") {
		t.Errorf("the XML payload is not shown indented and escaped:\n%s", page)
	}

	srv := serve(t, h)
	csrf := csrfOf(t, fetchWith(t, h, "/ui/repeaters", session))
	pause := fmt.Sprintf("%s/ui/repeaters/%d/pause", srv.URL, r.ID)
	for _, c := range []struct {
		name, target, origin string
		session              *http.Cookie
		form                 url.Values
		status               int
	}{
		{"no session", pause, "", nil, url.Values{"csrf": {csrf}}, http.StatusUnauthorized},
		{"no CSRF token", pause, "", session, url.Values{}, http.StatusForbidden},
		{"cross-site", pause, "https://evil.example", session, url.Values{"csrf": {csrf}}, http.StatusForbidden},
		{"unknown action", fmt.Sprintf("%s/ui/repeaters/%d/explode", srv.URL, r.ID), "", session, url.Values{"csrf": {csrf}}, http.StatusNotFound},
		{"unknown repeater", srv.URL + "/ui/repeaters/999999/pause", "", session, url.Values{"csrf": {csrf}}, http.StatusNotFound},
		{"bulk without a queue", fmt.Sprintf("%s/ui/repeaters/%d/bulk", srv.URL, r.ID), "", session,
			url.Values{"csrf": {csrf}, "action": {"cancel"}, "scope": {"all"}}, http.StatusInternalServerError},
		{"bulk bad scope", fmt.Sprintf("%s/ui/repeaters/%d/bulk", srv.URL, r.ID), "", session,
			url.Values{"csrf": {csrf}, "action": {"cancel"}, "scope": {"some"}}, http.StatusBadRequest},
		{"bulk nothing selected", fmt.Sprintf("%s/ui/repeaters/%d/bulk", srv.URL, r.ID), "", session,
			url.Values{"csrf": {csrf}, "action": {"cancel"}, "scope": {"selected"}}, http.StatusUnprocessableEntity},
		{"bulk bad id", fmt.Sprintf("%s/ui/repeaters/%d/bulk", srv.URL, r.ID), "", session,
			url.Values{"csrf": {csrf}, "action": {"cancel"}, "scope": {"selected"}, "ids": {"x"}}, http.StatusBadRequest},
	} {
		if resp := post(t, c.target, c.origin, c.session, c.form); resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.status)
		}
	}
	if got, _ := st.GetRepeater(t.Context(), r.ID); got.IsPaused {
		t.Error("a refused form paused the repeater")
	}
	if n := storetest.Count(t, st, `SELECT count(*) FROM bulk_jobs`); n != 0 {
		t.Errorf("refused forms made %d jobs", n)
	}
	resp := post(t, pause, "", session, url.Values{"csrf": {csrf}, "next": {"/ui/repeaters?domain=a.example"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/repeaters?domain=a.example" {
		t.Errorf("pause: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if got, _ := st.GetRepeater(t.Context(), r.ID); !got.IsPaused {
		t.Error("pause did not pause")
	}
}
