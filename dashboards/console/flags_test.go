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
	bg := context.Background()
	const token = "s3cret-token"

	repeater(t, st, "alpha.example", "orders")
	evil := repeater(t, st, hostileDomain, hostileName)
	seedBackoff(t, st, evil, time.Hour, 502, hostileMessage)

	web, err := dashboards.NewWeb(dashboards.WebConfig{Addr: "127.0.0.1:0", APIToken: token}, st,
		storetest.RedisClient(t), dashboards.WithLogger(quiet),
		dashboards.WithPage(newConsole(t, st, console.Config{Token: auth.NewToken(token), Refresh: time.Minute})))
	if err != nil {
		t.Fatal(err)
	}
	if err := web.Start(bg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = web.Stop(context.Background()) })
	// Close the browser first: Stop would wait ~5s on its preconnected,
	// never-used sockets (http.Server counts a new connection as active
	// for its first 5 seconds).
	t.Cleanup(func() { _ = chromedp.Cancel(ctx) })
	base := "http://" + web.Addr()
	dialogs := watchDialogs(ctx)

	do(t, ctx, chromedp.Navigate(base), chromedp.WaitVisible(chromedp.ID("flags")))
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
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, bad := range []string{"<script>alert(", "<img src=x", "</span><script>"} {
		if strings.Contains(string(raw), bad) {
			t.Errorf("served HTML contains %q unescaped", bad)
		}
	}
	if !strings.Contains(string(raw), "&lt;script&gt;alert(1)&lt;/script&gt;") {
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

// switchFlags drives the switches at base through the browser, as a person
// would: Enter in the token field submits nothing, a wrong token is
// refused, the right one turns alpha.example off and the page comes back
// showing it, and the hostile domain's switch reaches its escaped path.
// None of it needs the page's script.
func switchFlags(t *testing.T, b *browser, st *store.Store, base, token string) {
	t.Helper()
	ctx := b.ctx
	alphaSwitch := chromedp.CSS(`button[data-switch="process_repeaters"][data-domain="alpha.example"]`)
	alphaState := `document.querySelector('span[data-flag="process_repeaters"][data-domain="alpha.example"]')`

	// Enter in the token field submits nothing (the first switch, the hostile
	// domain's, would otherwise be the form's default button).
	do(t, ctx, chromedp.SendKeys(chromedp.ID("token"), token+"\r"))
	// A wrong token is refused.
	do(t, ctx, chromedp.SetValue(chromedp.ID("token"), "wrong"))
	if r, err := chromedp.RunResponse(ctx, chromedp.Click(alphaSwitch)); err != nil || r.Status != http.StatusForbidden {
		t.Fatalf("switch with a wrong token: %v, %v; want 403", r, err)
	}
	if msg := eval[string](t, ctx, `document.getElementById('error-message').textContent`); !strings.Contains(msg, "Wrong or missing API token") {
		t.Errorf("error page says %q", msg)
	}
	assertFlag(t, st, "alpha.example", true, false)
	assertFlag(t, st, hostileDomain, true, false)

	// The right token switches alpha off, and the page comes back showing it.
	do(t, ctx, chromedp.Navigate(base), chromedp.WaitVisible(alphaSwitch))
	if v := eval[string](t, ctx, alphaState+`.textContent`); v != "on" {
		t.Fatalf("alpha.example shown %q before the switch, want on", v)
	}
	do(t, ctx, chromedp.SendKeys(chromedp.ID("token"), token))
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
	do(t, ctx, chromedp.SendKeys(chromedp.ID("token"), token))
	if r, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(
		`button[data-switch="process_repeaters"][data-domain="`+hostileDomain+`"]`))); err != nil || r.Status != http.StatusOK {
		t.Fatalf("switch the hostile domain: %v, %v", r, err)
	}
	assertFlag(t, st, hostileDomain, false, true)
	assertFlag(t, st, "alpha.example", false, true)
	b.assertClean(t)
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

// post posts the switch's form as a browser on origin would.
func post(t *testing.T, target, origin string, form url.Values) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
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
	srv := serve(t, newConsole(t, st, console.Config{Token: auth.NewToken(token)}))
	path := srv.URL + "/ui/domains/a.example/flags/process_repeaters"

	for _, c := range []struct {
		name   string
		target string
		origin string
		form   url.Values
		status int
	}{
		{"no token", path, "", url.Values{"enabled": {"false"}}, http.StatusForbidden},
		{"wrong token", path, "", url.Values{"enabled": {"false"}, "token": {"tok2"}}, http.StatusForbidden},
		{"cross-site", path, "https://evil.example", url.Values{"enabled": {"false"}, "token": {token}}, http.StatusForbidden},
		{"unknown flag", srv.URL + "/ui/domains/a.example/flags/nope", "", url.Values{"enabled": {"false"}, "token": {token}}, http.StatusUnprocessableEntity},
		{"control character in domain", srv.URL + "/ui/domains/a%01b/flags/process_repeaters", "", url.Values{"enabled": {"false"}, "token": {token}}, http.StatusUnprocessableEntity},
		{"invalid UTF-8 in domain", srv.URL + "/ui/domains/a%ffb/flags/process_repeaters", "", url.Values{"enabled": {"false"}, "token": {token}}, http.StatusUnprocessableEntity},
		{"long domain", srv.URL + "/ui/domains/" + strings.Repeat("a", 256) + "/flags/process_repeaters", "", url.Values{"enabled": {"false"}, "token": {token}}, http.StatusUnprocessableEntity},
		{"bad enabled", path, "", url.Values{"enabled": {"maybe"}, "token": {token}}, http.StatusBadRequest},
	} {
		if resp := post(t, c.target, c.origin, c.form); resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.status)
		}
	}
	assertFlag(t, st, "a.example", true, false)

	resp := post(t, path, "", url.Values{"enabled": {"false"}, "token": {token}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("switch: %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	assertFlag(t, st, "a.example", false, true)
}

// TestFlagSwitchWithoutToken: with no token configured, the page asks for
// none and a switch needs none.
func TestFlagSwitchWithoutToken(t *testing.T) {
	st := storetest.NewStore(t)
	repeater(t, st, "a.example", "r")
	srv := serve(t, newConsole(t, st, console.Config{}))
	if html := fetch(t, srv.Config.Handler, "/"); strings.Contains(html, `id="token"`) {
		t.Error("the page asks for a token though none is configured")
	}
	resp := post(t, srv.URL+"/ui/domains/a.example/flags/process_repeaters", "", url.Values{"enabled": {"false"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("switch without a token: %d, want 303", resp.StatusCode)
	}
	assertFlag(t, st, "a.example", false, true)
}
