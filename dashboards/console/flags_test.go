package console_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"repeaterd/dashboards"
	"repeaterd/dashboards/auth"
	"repeaterd/dashboards/console"
	"repeaterd/store"
	"repeaterd/store/storetest"
)

// The console as the web role mounts it: every path no other route claims.
func TestBrowserFlagSwitchAndEscaping(t *testing.T) {
	b := newBrowser(t)
	ctx := b.ctx
	st := storetest.NewStore(t)
	const token = "s3cret-token"

	repeater(t, st, "alpha.example", "orders")
	evil := repeater(t, st, hostileDomain, hostileName)
	seedBackoff(t, st, evil, time.Hour, 502, hostileMessage)

	web := startWebConsole(t, b, st, token)
	base := "http://" + web.Addr()
	dialogs := watchDialogs(ctx)

	browserLogin(t, b, base, token)
	do(t, ctx, chromedp.WaitVisible(chromedp.ID("flags")))
	assertStyled(t, ctx) // the web role passes /ui/static/ to the console

	// Escaping: hostile text is shown as text, nothing of it became markup.
	texts := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#dash .name, #dash .msg')).map(function (e) { return e.textContent; })`)
	for _, want := range []string{hostileDomain, hostileMessage} {
		if !slices.Contains(texts, want) {
			t.Errorf("page does not show %q as text; it shows %q", want, texts)
		}
	}
	if !slices.ContainsFunc(texts, func(s string) bool { return strings.HasPrefix(s, hostileName) }) {
		t.Errorf("page does not show the repeater name %q as text; it shows %q", hostileName, texts)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('script').length`); n != 1 {
		t.Errorf("page has %d script elements, want only its own", n)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('img').length`); n != 0 {
		t.Errorf("page has %d img elements, want none", n)
	}
	raw := fetchWith(t, web.Handler(), "/", login(t, web.Handler(), token))
	for _, bad := range []string{"<script>alert(", "<img src=x", "</span><script>"} {
		if strings.Contains(raw, bad) {
			t.Errorf("served HTML contains %q unescaped", bad)
		}
	}
	if !strings.Contains(raw, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("served HTML does not contain the escaped hostile domain")
	}

	switchFlags(t, b, st, base, token)
	if got := dialogs(); len(got) > 0 {
		t.Errorf("injected script ran: dialogs %q", got)
	}
}

// watchDialogs records the dialogs the page opens, dismissing each: any
// would be an injected script running.
func watchDialogs(ctx context.Context) func() []string {
	var mu sync.Mutex
	var dialogs []string
	opened := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range opened {
			if err != nil {
				return
			}
			mu.Lock()
			dialogs = append(dialogs, ev.Message)
			mu.Unlock()
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(dialogs)
	}
}

// switchFlags drives the console at base through the browser, as a person
// would: the page sends them to the login form, a wrong token is refused,
// the right one lands on the page, the switch turns alpha.example off and
// the page comes back showing it, the hostile domain's switch reaches its
// escaped path, a form on another site posting to the switch is refused,
// and logging out ends the session. None of it needs the page's script.
func switchFlags(t *testing.T, b *browser, st *store.Store, base, token string) {
	t.Helper()
	ctx := b.ctx
	alphaSwitch := chromedp.CSS(`button[data-switch="process_repeaters"][data-domain="alpha.example"]`)
	alphaState := `document.querySelector('span[data-flag="process_repeaters"][data-domain="alpha.example"]')`

	// Without a session the page redirects to the login form.
	if _, err := chromedp.Call(ctx, network.ClearBrowserCookies, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, chromedp.Navigate(base), chromedp.WaitVisible(chromedp.ID("login-form")))
	if path := eval[string](t, ctx, `location.pathname`); path != "/ui/login" {
		t.Fatalf("without a session the page is %s, want the login form", path)
	}
	// A wrong token is refused.
	do(t, ctx, chromedp.SendKeys(chromedp.ID("token"), "wrong"))
	if r, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID("login"))); err != nil || r.Status != http.StatusUnauthorized {
		t.Fatalf("login with a wrong token: %v, %v; want 401", r, err)
	}
	if msg := eval[string](t, ctx, `document.getElementById('login-error').textContent`); !strings.Contains(msg, "Wrong token") {
		t.Errorf("login error says %q", msg)
	}
	// The right one lands on the page.
	do(t, ctx, chromedp.SendKeys(chromedp.ID("token"), token))
	if r, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID("login"))); err != nil || r.Status != http.StatusOK {
		t.Fatalf("login: %v, %v", r, err)
	}
	do(t, ctx, chromedp.WaitVisible(alphaSwitch))
	if v := eval[string](t, ctx, alphaState+`.textContent`); v != "on" {
		t.Fatalf("alpha.example shown %q before the switch, want on", v)
	}
	if n := eval[int](t, ctx, `document.cookie.length`); n != 0 {
		t.Errorf("the page's script can read %d bytes of cookies; the session cookie is HttpOnly", n)
	}

	r, err := chromedp.RunResponse(ctx, chromedp.Click(alphaSwitch))
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("switch: %v, %v", r, err)
	}
	if u, _ := url.Parse(r.URL); u == nil || u.Path != "/" {
		t.Errorf("switch ended on %s, want the dashboard", r.URL)
	}
	if v := eval[string](t, ctx, alphaState+`.textContent + ' ' + `+alphaState+`.dataset.enabled`); v != "off false" {
		t.Errorf("alpha.example shown %q after the switch, want off", v)
	}
	assertFlag(t, st, "alpha.example", false, true)

	// The hostile domain's switch posts to its escaped path and reaches it.
	if r, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(
		`button[data-switch="process_repeaters"][data-domain="`+hostileDomain+`"]`))); err != nil || r.Status != http.StatusOK {
		t.Fatalf("switch the hostile domain: %v, %v", r, err)
	}
	assertFlag(t, st, hostileDomain, false, true)
	assertFlag(t, st, "alpha.example", false, true)

	// Another site's page posting the switch's form (no CSRF token; the
	// browser marks it cross-site and withholds the SameSite=Strict cookie)
	// is refused, and the flag stays as it was.
	evil := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, `<!doctype html><title>evil</title><form method="post" action="`+base+
			`/ui/domains/alpha.example/flags/process_repeaters"><input type="hidden" name="enabled" value="true">`+
			`<button id="go" type="submit">win a prize</button></form>`)
	}))
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1) // another site than 127.0.0.1
	do(t, ctx, chromedp.Navigate(evilURL), chromedp.WaitVisible(chromedp.ID("go")))
	if r, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID("go"))); err != nil || r.Status != http.StatusForbidden {
		t.Fatalf("a cross-origin form post: %v, %v; want 403", r, err)
	}
	assertFlag(t, st, "alpha.example", false, true)

	// Logging out ends the session: the page sends the browser to the form.
	do(t, ctx, chromedp.Navigate(base), chromedp.WaitVisible(chromedp.ID("logout")))
	do(t, ctx, chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
	do(t, ctx, chromedp.Navigate(base), chromedp.WaitVisible(chromedp.ID("login-form")))
	b.assertClean(t)
}

// startWebConsole starts the web role with the console on st behind token,
// for b's tests; the browser is closed before the server stops.
func startWebConsole(t *testing.T, b *browser, st *store.Store, token string) *dashboards.Web {
	t.Helper()
	web, err := dashboards.NewWeb(dashboards.WebConfig{Addr: "127.0.0.1:0", APIToken: token}, st,
		storetest.RedisClient(t), dashboards.WithLogger(quiet),
		dashboards.WithPage(newConsole(t, st, console.Config{Token: auth.NewToken(token), Refresh: time.Minute})))
	if err != nil {
		t.Fatal(err)
	}
	if err := web.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = web.Stop(context.Background()) })
	// Close the browser first: Stop would wait ~5s on its preconnected,
	// never-used sockets (http.Server counts a new connection as active
	// for its first 5 seconds).
	t.Cleanup(func() { _ = chromedp.Cancel(b.ctx) })
	return web
}

// browserLogin opens base, which sends the browser to the login form, and
// logs in with token, landing on the page.
func browserLogin(t *testing.T, b *browser, base, token string) {
	t.Helper()
	do(t, b.ctx, chromedp.Navigate(base), chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("token"), token))
	if r, err := chromedp.RunResponse(b.ctx, chromedp.Click(chromedp.ID("login"))); err != nil || r.Status != http.StatusOK {
		t.Fatalf("login: %v, %v", r, err)
	}
}

// assertFlag checks domain's process_repeaters flag in the store, and
// whether it is set explicitly (a row) or follows the default.
func assertFlag(t *testing.T, st *store.Store, domain string, enabled, explicit bool) {
	t.Helper()
	got, err := st.DomainFlagEnabled(context.Background(), domain, store.FlagProcessRepeaters)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := st.ListDomainFlags(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	set := slices.ContainsFunc(rows, func(r store.DomainFlag) bool { return r.Domain == domain })
	if got != enabled || set != explicit {
		t.Errorf("flag of %q = %v (explicit %v), want %v (explicit %v)", domain, got, set, enabled, explicit)
	}
}

// post posts a form as a browser on origin would, with the session
// cookie when one is given.
func post(t *testing.T, target, origin string, session *http.Cookie, form url.Values) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if session != nil {
		req.AddCookie(session)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
		req.Header.Set("Sec-Fetch-Site", "cross-site")
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestFlagSwitchRequests(t *testing.T) {
	st := storetest.NewStore(t)
	repeater(t, st, "a.example", "r")
	const token = "tok"
	h := newConsole(t, st, console.Config{Token: auth.NewToken(token)})
	srv := serve(t, h)
	path := srv.URL + "/ui/domains/a.example/flags/process_repeaters"
	session := login(t, h, token)
	csrf := csrfOf(t, fetchWith(t, h, "/", session))

	for _, c := range []struct {
		name    string
		target  string
		origin  string
		session *http.Cookie
		form    url.Values
		status  int
	}{
		{"no session", path, "", nil, url.Values{"enabled": {"false"}, "csrf": {csrf}}, http.StatusUnauthorized},
		{"forged session", path, "", &http.Cookie{Name: auth.SessionCookie, Value: "v1.99999999999.bm9uY2U.AAAA"},
			url.Values{"enabled": {"false"}, "csrf": {csrf}}, http.StatusUnauthorized},
		{"no CSRF token", path, "", session, url.Values{"enabled": {"false"}}, http.StatusForbidden},
		{"wrong CSRF token", path, "", session, url.Values{"enabled": {"false"}, "csrf": {"x" + csrf}}, http.StatusForbidden},
		{"the token as CSRF", path, "", session, url.Values{"enabled": {"false"}, "csrf": {token}}, http.StatusForbidden},
		{"cross-site", path, "https://evil.example", session, url.Values{"enabled": {"false"}, "csrf": {csrf}}, http.StatusForbidden},
		{"unknown flag", srv.URL + "/ui/domains/a.example/flags/nope", "", session, url.Values{"enabled": {"false"}, "csrf": {csrf}}, http.StatusUnprocessableEntity},
		{"control character in domain", srv.URL + "/ui/domains/a%01b/flags/process_repeaters", "", session, url.Values{"enabled": {"false"}, "csrf": {csrf}}, http.StatusUnprocessableEntity},
		{"invalid UTF-8 in domain", srv.URL + "/ui/domains/a%ffb/flags/process_repeaters", "", session, url.Values{"enabled": {"false"}, "csrf": {csrf}}, http.StatusUnprocessableEntity},
		{"long domain", srv.URL + "/ui/domains/" + strings.Repeat("a", 256) + "/flags/process_repeaters", "", session, url.Values{"enabled": {"false"}, "csrf": {csrf}}, http.StatusUnprocessableEntity},
		{"bad enabled", path, "", session, url.Values{"enabled": {"maybe"}, "csrf": {csrf}}, http.StatusBadRequest},
	} {
		if resp := post(t, c.target, c.origin, c.session, c.form); resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.status)
		}
	}
	assertFlag(t, st, "a.example", true, false)

	resp := post(t, path, "", session, url.Values{"enabled": {"false"}, "csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("switch: %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	assertFlag(t, st, "a.example", false, true)
}

// TestLoginRequests: the page and fragment need a session, the form takes
// only the admin token, next stays on this server, logout deletes the
// cookie.
func TestLoginRequests(t *testing.T) {
	st := storetest.NewStore(t)
	const token = "tok"
	h := newConsole(t, st, console.Config{Token: auth.NewToken(token)})
	srv := serve(t, h)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) *http.Response {
		resp, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := get("/"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login?next=%2F" {
		t.Errorf("GET / without a session: %d to %q, want 303 to the login", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp := get("/ui/fragment"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /ui/fragment without a session: %d, want 401", resp.StatusCode)
	}
	if resp := get("/ui/login"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /ui/login: %d", resp.StatusCode)
	}
	for _, c := range []struct {
		token, next, location string
		status                int
	}{
		{"wrong", "/", "", http.StatusUnauthorized},
		{"", "/", "", http.StatusUnauthorized},
		{token, "/monitor/", "/monitor/", http.StatusSeeOther},
		{token, "https://evil.example/", "/", http.StatusSeeOther},
		{token, "//evil.example/", "/", http.StatusSeeOther},
		{token, "/\\evil.example", "/", http.StatusSeeOther},
	} {
		resp := post(t, srv.URL+"/ui/login", "", nil, url.Values{"token": {c.token}, "next": {c.next}})
		if resp.StatusCode != c.status || resp.Header.Get("Location") != c.location {
			t.Errorf("login %q next %q: %d to %q, want %d to %q", c.token, c.next, resp.StatusCode,
				resp.Header.Get("Location"), c.status, c.location)
		}
		if set := len(resp.Cookies()) > 0; set != (c.status == http.StatusSeeOther) {
			t.Errorf("login %q: cookie set %v", c.token, set)
		}
	}
	if resp := post(t, srv.URL+"/ui/login", "https://evil.example", nil, url.Values{"token": {token}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-site login (login CSRF): %d, want 403", resp.StatusCode)
	}
	resp := post(t, srv.URL+"/ui/logout", "", login(t, h, token), nil)
	if c := resp.Cookies(); resp.StatusCode != http.StatusSeeOther || len(c) != 1 || c[0].MaxAge >= 0 {
		t.Errorf("logout: %d, cookies %v; want the session cookie deleted", resp.StatusCode, c)
	}
}

// TestFlagSwitchWithoutToken: with no token configured, the page needs no
// login, and a switch needs only the page's CSRF token.
func TestFlagSwitchWithoutToken(t *testing.T) {
	st := storetest.NewStore(t)
	repeater(t, st, "a.example", "r")
	h := newConsole(t, st, console.Config{})
	srv := serve(t, h)
	html := fetch(t, srv.Config.Handler, "/")
	if strings.Contains(html, `id="token"`) || strings.Contains(html, `id="logout"`) {
		t.Error("the page asks for a token, or offers a logout, though none is configured")
	}
	target := srv.URL + "/ui/domains/a.example/flags/process_repeaters"
	if resp := post(t, target, "", nil, url.Values{"enabled": {"false"}}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("switch without the CSRF token: %d, want 403", resp.StatusCode)
	}
	resp := post(t, target, "", nil, url.Values{"enabled": {"false"}, "csrf": {csrfOf(t, html)}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("switch without a token: %d, want 303", resp.StatusCode)
	}
	assertFlag(t, st, "a.example", false, true)
}
