package console_test

import (
	"context"
	"fmt"
	"iter"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// The browser tests drive a real headless Chromium (scripts/chromium.sh
// installs one and prints its path for $REPEATERD_CHROMIUM).

// waitTimeout bounds every wait on the browser.
const waitTimeout = 20 * time.Second

// chromiumPath returns $REPEATERD_CHROMIUM, else /usr/bin/chromium. With
// neither, the test fails under CI (a skipped browser test would hide a
// broken page) and skips elsewhere.
func chromiumPath(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, path := range []string{os.Getenv("REPEATERD_CHROMIUM"), "/usr/bin/chromium"} {
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err == nil {
			return path
		}
		tried = append(tried, path)
	}
	msg := fmt.Sprintf("no Chromium (tried %s): run scripts/chromium.sh and set REPEATERD_CHROMIUM to the path it prints",
		strings.Join(tried, ", "))
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// browser is a headless Chromium tab that records what the page reports
// going wrong: CSP violations, uncaught exceptions and console errors.
type browser struct {
	ctx context.Context

	mu       sync.Mutex
	problems []string
	synced   chan string // sync markers, in the order the console saw them
	syncs    int
}

// syncMarker starts the console.log lines assertClean writes to know that
// every earlier message has been read.
const syncMarker = "console-test-sync "

// reportViolations runs in every document before its own scripts: it
// turns each CSP violation into a console error, so one is reported even
// where the browser's own log line would be missed.
const reportViolations = `document.addEventListener('securitypolicyviolation', function (e) {
	console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') +
		' at ' + e.sourceFile + ':' + e.lineNumber);
});`

// newBrowser starts a headless Chromium with a fresh profile for this test
// and watches its tab; cleanup closes it.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// Start it now, so a broken install fails here and says so.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument,
		page.AddScriptToEvaluateOnNewDocumentParams{Source: reportViolations}); err != nil {
		t.Fatal(err)
	}
	b := &browser{ctx: ctx, synced: make(chan string, 16)}
	messages := chromedp.Console(ctx)
	go b.watch(messages)
	return b
}

// watch records every message that says the page is broken. Network errors
// are the server's answers (a refused switch is a 403 page) unless they
// are for the console's own files.
func (b *browser) watch(messages iter.Seq2[chromedp.ConsoleMessage, error]) {
	for m, err := range messages {
		if err != nil {
			return
		}
		if text, ok := strings.CutPrefix(m.Text, syncMarker); ok && m.Type == chromedp.ConsoleLog {
			b.synced <- text
			continue
		}
		bad := m.IsException() || m.Source == "security" || strings.Contains(m.Text, "Content Security Policy") ||
			(m.Type == chromedp.ConsoleError && (m.Source != "network" || strings.Contains(m.URL, "/ui/static/")))
		if bad {
			b.mu.Lock()
			b.problems = append(b.problems, fmt.Sprintf("%s (source %q, %s)", m, m.Source, m.URL))
			b.mu.Unlock()
		}
	}
}

// reported returns what the page reported going wrong so far. A marker
// logged through the page's console, and read back, shows every earlier
// message has been read: the console keeps their order.
func (b *browser) reported(t *testing.T) []string {
	t.Helper()
	b.syncs++
	marker := fmt.Sprint(b.syncs)
	do(t, b.ctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`console.log(%q)`, syncMarker+marker)))
	timeout := time.After(waitTimeout)
	for {
		select {
		case got := <-b.synced:
			if got != marker {
				continue // a marker of an earlier, timed-out call
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			return append([]string(nil), b.problems...)
		case <-timeout:
			t.Fatalf("the browser console did not echo sync marker %s", marker)
		}
	}
}

// assertClean fails the test if the page reported a CSP violation, an
// uncaught exception or a console error.
func (b *browser) assertClean(t *testing.T) {
	t.Helper()
	for _, p := range b.reported(t) {
		t.Errorf("the page reported: %s", p)
	}
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitRefreshed waits until, after one of the page's own refreshes (its
// "console:refreshed" event), the JavaScript condition cond holds; it holds
// at once if it is already true. A failed refresh fails the wait.
func waitRefreshed(t *testing.T, ctx context.Context, what, cond string) {
	t.Helper()
	expr := `new Promise(function (resolve, reject) {
		function check() {
			if (` + cond + `) {
				document.removeEventListener('console:refreshed', check);
				resolve(true);
			}
		}
		document.addEventListener('console:refreshed', check);
		document.addEventListener('console:refresh-failed', function (e) { reject(new Error(e.detail.error)); });
		check();
	})`
	wctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if _, err := chromedp.Run(wctx, chromedp.Evaluate[bool](expr, chromedp.EvalAwaitPromise)); err != nil {
		t.Fatalf("waiting for %s (%s): %v", what, cond, err)
	}
}
