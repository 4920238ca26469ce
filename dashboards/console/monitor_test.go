package console_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"repeaterd/store/storetest"
)

// TestBrowserMonitorBehindLogin: asynqmon, opened without a session, sends
// the browser to the console's login, which leads back to it; under its own
// CSP its inline scripts (allowed by hash) run and render the app.
func TestBrowserMonitorBehindLogin(t *testing.T) {
	b := newBrowser(t)
	ctx := b.ctx
	st := storetest.NewStore(t)
	const token = "s3cret-token"
	web := startWebConsole(t, b, st, token)
	base := "http://" + web.Addr()

	do(t, ctx, chromedp.Navigate(base+"/monitor/"), chromedp.WaitVisible(chromedp.ID("login-form")))
	if u := eval[string](t, ctx, `location.pathname + location.search`); u != "/ui/login?next=%2Fmonitor%2F" {
		t.Fatalf("asynqmon without a session: at %s, want the login form leading back", u)
	}
	do(t, ctx, chromedp.SendKeys(chromedp.ID("token"), token))
	r, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID("login")))
	if err != nil || r.Status != http.StatusOK || !strings.HasSuffix(r.URL, "/monitor/") {
		t.Fatalf("login towards asynqmon: %v, %v", r, err)
	}
	wctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(wctx, chromedp.WaitReady(chromedp.CSS(`#root > *`))); err != nil {
		t.Fatalf("asynqmon did not render under its CSP (its inline scripts blocked?): %v", err)
	}
	for _, p := range b.reported(t) {
		if strings.Contains(p, "script-src") {
			t.Errorf("asynqmon's page reported a script violation: %s", p)
		}
	}
}
