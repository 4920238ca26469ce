package console_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"repeaterd/dashboards/auth"
	"repeaterd/dashboards/console"
	"repeaterd/store/storetest"
)

// strictCSP is the policy every answer of the console carries.
const strictCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func TestRoutesAndHeaders(t *testing.T) {
	st := storetest.NewStore(t)
	repeater(t, st, "a.example", "r")
	srv := serve(t, newConsole(t, st, console.Config{}))
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/", http.StatusOK},
		{http.MethodGet, "/ui/fragment", http.StatusOK},
		{http.MethodGet, "/nope", http.StatusNotFound},
		{http.MethodGet, "/ui/static/", http.StatusNotFound},
		{http.MethodGet, "/ui/static/nope.js", http.StatusNotFound},
		{http.MethodGet, "/ui/static/../console.go", http.StatusNotFound},
		{http.MethodGet, "/ui/domains/a.example/flags/process_repeaters", http.StatusMethodNotAllowed},
		{http.MethodPost, "/", http.StatusMethodNotAllowed},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.status)
		}
		h := resp.Header
		if csp := h.Get("Content-Security-Policy"); csp != strictCSP {
			t.Errorf("%s %s: Content-Security-Policy %q, want %q", c.method, c.path, csp, strictCSP)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s %s: headers %v", c.method, c.path, h)
		}
		if c.status == http.StatusOK && h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s %s: Cache-Control %q, want no-store", c.method, c.path, h.Get("Cache-Control"))
		}
	}
}

// inline finds what a strict CSP would block in markup: a script with a
// body, a style element, a style or event handler attribute, a
// javascript: URL. Escaped text has no raw "<", so only tags match.
var inline = regexp.MustCompile(`(?i)<script(\s[^>]*)?>\s*[^<\s]|<style|<[a-z][^>]*\s(style|on[a-z]+)=|<[a-z][^>]*javascript:`)

// TestNoInlineScriptOrStyle reads the markup the console serves: the page,
// the fragment and an error page.
func TestNoInlineScriptOrStyle(t *testing.T) {
	st := storetest.NewStore(t)
	evil := repeater(t, st, hostileDomain, hostileName)
	seedBackoff(t, st, evil, time.Hour, 502, hostileMessage)
	h := newConsole(t, st, console.Config{Token: auth.NewToken("tok")})
	session := login(t, h, "tok")
	refused := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/ui/domains/a/flags/process_repeaters", nil)
	req.AddCookie(session)
	h.ServeHTTP(refused, req)
	if refused.Code != http.StatusForbidden {
		t.Fatalf("switch without a CSRF token: %d, want 403", refused.Code)
	}
	for name, html := range map[string]string{
		"page": fetchWith(t, h, "/", session), "fragment": fetchWith(t, h, "/ui/fragment", session),
		"error page": refused.Body.String(), "login": fetch(t, h, "/ui/login"),
	} {
		if m := inline.FindString(html); m != "" {
			t.Errorf("the %s has inline code a strict CSP blocks: %q", name, m)
		}
	}
}

var staticRE = regexp.MustCompile(`(?:src|href)="(/ui/static/[^"?]+)\?v=([0-9a-f]+)"`)

// TestStaticFiles: the page links its files by version; that URL is cached
// for good, any other is revalidated.
func TestStaticFiles(t *testing.T) {
	st := storetest.NewStore(t)
	srv := serve(t, newConsole(t, st, console.Config{}))
	links := staticRE.FindAllStringSubmatch(fetch(t, srv.Config.Handler, "/"), -1)
	types := map[string]string{
		"/ui/static/console.js":  "text/javascript; charset=utf-8",
		"/ui/static/console.css": "text/css; charset=utf-8",
		"/ui/static/favicon.svg": "image/svg+xml",
	}
	if len(links) != len(types) {
		t.Fatalf("page links %q, want %d static files", links, len(types))
	}
	get := func(url string, header ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		for i := 0; i < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, l := range links {
		path, version := l[1], l[2]
		resp := get(srv.URL + path + "?v=" + version)
		h := resp.Header
		if resp.StatusCode != http.StatusOK || h.Get("Content-Type") != types[path] || resp.ContentLength <= 0 {
			t.Errorf("GET %s: %d, %q, %d bytes", path, resp.StatusCode, h.Get("Content-Type"), resp.ContentLength)
		}
		if cc := h.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
			t.Errorf("GET %s?v=%s: Cache-Control %q, want immutable", path, version, cc)
		}
		if etag := h.Get("ETag"); etag != `"`+version+`"` {
			t.Errorf("GET %s: ETag %q, want the version", path, etag)
		}
		if resp := get(srv.URL+path, "If-None-Match", `"`+version+`"`); resp.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s If-None-Match: %d, want 304", path, resp.StatusCode)
		}
		for _, stale := range []string{"", "?v=0000"} {
			if cc := get(srv.URL + path + stale).Header.Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("GET %s%s: Cache-Control %q, want no-cache", path, stale, cc)
			}
		}
	}
}

// TestBrowserReportsCSPViolations is the browser watch's own test: a page
// with inline code under the console's policy must be reported, or the
// other browser tests would pass over violations.
func TestBrowserReportsCSPViolations(t *testing.T) {
	b := newBrowser(t)
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Security-Policy", strictCSP)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, `<!doctype html><title>x</title><style>p{}</style>`+
			`<p style="color:red">x</p><script>document.title = 'ran'</script>`)
	}))
	do(t, b.ctx, chromedp.Navigate(srv.URL))
	if title := eval[string](t, b.ctx, `document.title`); title != "x" {
		t.Errorf("the inline script ran (title %q)", title)
	}
	got := strings.Join(b.reported(t), "\n")
	for _, directive := range []string{"script-src", "style-src"} {
		if !strings.Contains(got, directive) {
			t.Errorf("no %s violation reported; reported:\n%s", directive, got)
		}
	}
}

// TestBrowserWithoutJavaScript: with scripts off the page still shows the
// counts, reloads itself (its <noscript> meta refresh) and switches flags.
func TestBrowserWithoutJavaScript(t *testing.T) {
	b := newBrowser(t)
	ctx := b.ctx
	st := storetest.NewStore(t)
	const token = "s3cret-token"
	storetest.Records(t, st, repeater(t, st, "alpha.example", "orders"), 3)
	evil := repeater(t, st, hostileDomain, hostileName)
	seedBackoff(t, st, evil, time.Hour, 502, hostileMessage)
	reloading := serve(t, newConsole(t, st, console.Config{Refresh: time.Second, LiveRefresh: time.Second}))
	steady := serve(t, newConsole(t, st, console.Config{Token: auth.NewToken(token), Refresh: time.Minute}))
	if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled,
		emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}

	// The first load, then the reload the meta refresh makes: the page's
	// script would refresh in place instead, so a reload shows it is off.
	// (With scripts off, the parser makes the <noscript>'s content
	// elements; with scripts on, text.)
	lctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	loads := chromedp.Events(lctx, page.FrameNavigated)
	do(t, ctx, chromedp.Navigate(reloading.URL))
	if !eval[bool](t, ctx, `document.querySelector('noscript > meta[http-equiv="refresh"]') !== null`) {
		t.Error("the <noscript> refresh is not in effect: are scripts really off?")
	}
	n := 0
	for _, err := range loads {
		if err != nil {
			t.Fatalf("waiting for the page to reload itself: %v", err)
		}
		if n++; n == 2 {
			break
		}
	}
	cancel()

	browserLogin(t, b, steady.URL, token)
	do(t, ctx, chromedp.WaitVisible(chromedp.ID("counts-total")))
	assertCountsMatchStore(t, ctx, st, 2)
	switchFlags(t, b, st, steady.URL, token)
}
