package dashboards_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"repeaterd/dashboards"
	"repeaterd/store"
	"repeaterd/store/storetest"
)

// The browser tests drive a real headless Chromium (scripts/chromium.sh
// installs one and prints its path for $REPEATERD_CHROMIUM).

// screenshotPath is where TestPageBrowserCountsWhileRecordsFlow leaves a
// picture of the page, for a person to look at.
const screenshotPath = "/tmp/repeaterd-dashboard.png"

// hostile is a domain, a repeater name and an attempt message as a hostile
// tenant or endpoint would write them.
const (
	hostileDomain  = `<script>alert(1)</script>`
	hostileName    = `<img src=x onerror="alert(2)">`
	hostileMessage = `</span><script>alert(3)</script>`
)

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

// newBrowser starts a headless Chromium with a fresh profile for this test
// and returns the context of its tab; cleanup closes it.
func newBrowser(t *testing.T) context.Context {
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
	return ctx
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

// waitFor polls a JavaScript condition until it holds.
func waitFor(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("waiting for %s (%s): %v", what, expr, err)
	}
}

// pageDB returns a store on a fresh database and the database's URL, for
// seeding rows no store method writes (an invariant violation).
func pageDB(t *testing.T) (*store.Store, string) {
	t.Helper()
	dbURL := storetest.NewDB(t)
	st, err := store.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st, dbURL
}

func pageRepeater(t *testing.T, st *store.Store, domain, name string) *store.Repeater {
	t.Helper()
	r := &store.Repeater{Domain: domain, Name: name, URL: "http://127.0.0.1:1/hook", MaxAttempts: 2}
	if err := st.CreateRepeater(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return r
}

func bodies(n int) [][]byte {
	b := make([][]byte, n)
	for i := range b {
		b[i] = []byte(`{"n":` + strconv.Itoa(i) + `}`)
	}
	return b
}

func registerN(t *testing.T, st *store.Store, repeaterID int64, n int) []int64 {
	t.Helper()
	ids, err := st.RegisterMany(context.Background(), repeaterID, "", bodies(n))
	if err != nil {
		t.Fatal(err)
	}
	return ids
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
	ids := registerN(t, st, r.ID, 3)
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
	ids := registerN(t, st, r.ID, len(outcomes))
	for i := range outcomes {
		outcomes[i].RecordID = ids[i]
	}
	recordOutcomes(t, st, outcomes)
}

// flowRecords registers records and records their outcomes through the
// store, as the engine would, until stop is closed: every state appears,
// Cancelled from a second Fail (the repeaters allow 2 attempts), and one
// record of each batch stays pending. It does not cancel a store call
// midway, so once it returns every write it made is committed.
func flowRecords(stop <-chan struct{}, st *store.Store, repeaterIDs []int64) error {
	ctx := context.Background()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var retry []int64
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
		ids, err := st.RegisterMany(ctx, repeaterIDs[i%len(repeaterIDs)], "", bodies(5))
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

// countCell is one cell of the counts table as the browser shows it.
type countCell struct {
	Domain string `json:"domain"`
	State  string `json:"state"`
	Count  int64  `json:"count"`
	Text   string `json:"text"`
}

const readCountCells = `Array.from(document.querySelectorAll('#counts td[data-domain][data-state]')).map(function (td) {
	return {domain: td.dataset.domain, state: td.dataset.state, count: Number(td.dataset.count), text: td.textContent};
})`

// commas writes n as the page does.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func TestPageBrowserCountsWhileRecordsFlow(t *testing.T) {
	ctx := newBrowser(t)
	st, dbURL := pageDB(t)
	bg := context.Background()
	now := time.Now()

	orders := pageRepeater(t, st, "alpha.example", "orders webhook")
	billing := pageRepeater(t, st, "alpha.example", "billing")
	crm := pageRepeater(t, st, "beta.example", "crm sync")
	legacy := pageRepeater(t, st, "gamma.example", "legacy ERP")
	seedHistory(t, st, orders, now)
	seedBackoff(t, st, legacy, 7*time.Minute, 503, "503 Service Unavailable: upstream maintenance until 14:00")
	// A Success record without a Success attempt breaks an invariant.
	storetest.Exec(t, dbURL, `WITH p AS (INSERT INTO payloads (domain, body) VALUES ('gamma.example', '{}') RETURNING id)
		INSERT INTO repeat_records (domain, repeater_id, payload_id, state) SELECT 'gamma.example', $1, id, 4 FROM p`, legacy.ID)
	if err := st.RefreshInvariants(bg); err != nil {
		t.Fatal(err)
	}
	if err := st.SetDomainFlag(bg, "beta.example", store.FlagProcessRepeaters, false); err != nil {
		t.Fatal(err)
	}

	srv := httptest.NewServer(dashboards.NewPage(st, dashboards.PageOptions{
		Refresh: 250 * time.Millisecond, LiveRefresh: 250 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}))
	t.Cleanup(srv.Close)

	stop := make(chan struct{})
	flowed := make(chan error, 1)
	go func() { flowed <- flowRecords(stop, st, []int64{orders.ID, billing.ID, crm.ID}) }()
	stopFlow := sync.OnceValue(func() error {
		close(stop)
		return <-flowed
	})
	t.Cleanup(func() { _ = stopFlow() })

	do(t, ctx, chromedp.Navigate(srv.URL), chromedp.WaitVisible(chromedp.ID("counts-total")),
		chromedp.Evaluate[chromedp.Void](`window.loadedOnce = true`))
	firstRender := eval[string](t, ctx, `document.getElementById('dash').dataset.renderedNs`)
	firstTotal := eval[string](t, ctx, `document.getElementById('counts-total').dataset.count`)
	// The page refreshes itself: new data, no reload.
	waitFor(t, ctx, "a refresh showing new records", fmt.Sprintf(
		`document.getElementById('dash').dataset.renderedNs !== %q && document.getElementById('counts-total').dataset.count !== %q`,
		firstRender, firstTotal))
	if !eval[bool](t, ctx, `window.loadedOnce === true`) {
		t.Fatal("the page reloaded instead of refreshing in place")
	}

	if err := stopFlow(); err != nil {
		t.Fatalf("records flow: %v", err)
	}
	// A render that starts after the last write has committed shows it all.
	stopped := time.Now().UnixNano()
	waitFor(t, ctx, "a refresh after the flow stopped",
		fmt.Sprintf(`BigInt(document.getElementById('dash').dataset.renderedNs) > %dn`, stopped))
	cells := eval[[]countCell](t, ctx, readCountCells)
	live, err := st.LiveStatsCounts(bg, "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[[2]string]int64{}
	wantTotals := map[string]int64{}
	var wantTotal int64
	for _, c := range live {
		want[[2]string{c.Domain, c.State.String()}] += c.Count
		wantTotals[c.State.String()] += c.Count
		wantTotal += c.Count
	}
	got := map[[2]string]int64{}
	domains := map[string]bool{}
	for _, c := range cells {
		got[[2]string{c.Domain, c.State}] = c.Count
		domains[c.Domain] = true
		if c.Text != commas(c.Count) {
			t.Errorf("cell %s/%s shows %q for %d", c.Domain, c.State, c.Text, c.Count)
		}
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("page shows %d records of %s in state %s, the database has %d", got[k], k[0], k[1], n)
		}
	}
	for k, n := range got {
		if n != want[k] {
			t.Errorf("page shows %d records of %s in state %s, the database has %d", n, k[0], k[1], want[k])
		}
	}
	if len(domains) != 3 || len(cells) != 3*len(store.AllStates) {
		t.Errorf("page lists domains %v in %d cells, want alpha, beta and gamma in every state", domains, len(cells))
	}
	for _, s := range store.AllStates {
		if wantTotals[s.String()] == 0 {
			t.Errorf("the flow made no %s records; the test does not cover that state", s)
		}
		shown := eval[string](t, ctx, fmt.Sprintf(`document.querySelector('#counts td[data-total-state=%q]').dataset.count`, s.String()))
		if shown != strconv.FormatInt(wantTotals[s.String()], 10) {
			t.Errorf("total %s shown %s, want %d", s, shown, wantTotals[s.String()])
		}
	}
	if shown := eval[string](t, ctx, `document.getElementById('counts-total').dataset.count`); shown != strconv.FormatInt(wantTotal, 10) {
		t.Errorf("grand total shown %s, want %d", shown, wantTotal)
	}

	// No stats consumer runs here: the counts are live, and the page says so.
	if banner := eval[string](t, ctx, `(document.getElementById('counts-live') || {}).textContent || ''`); !strings.Contains(banner,
		"live counts (slow): the WAL stats consumer is not running") {
		t.Errorf("live counts banner = %q", banner)
	}
	// The invariant broken above, and the others OK.
	if v := eval[string](t, ctx, `document.querySelector('tr[data-check="success_without_attempt"] [data-status]').textContent`); v != "VIOLATED" {
		t.Errorf("success_without_attempt shows %q, want VIOLATED", v)
	}
	if v := eval[string](t, ctx, `document.querySelector('tr[data-check="domain_mismatch"] [data-status]').textContent`); v != "OK" {
		t.Errorf("domain_mismatch shows %q, want OK", v)
	}
	if v := eval[string](t, ctx, `document.getElementById('invariants-refreshed').textContent`); !strings.Contains(v, "As of the last refresh") {
		t.Errorf("invariants refresh time = %q", v)
	}
	// The backed-off repeater with its failure, and the flags.
	if v := eval[string](t, ctx, fmt.Sprintf(`document.querySelector('#backoff tr[data-repeater-id="%d"]').textContent`, legacy.ID)); !strings.Contains(v, "legacy ERP") ||
		!strings.Contains(v, "upstream maintenance") || !strings.Contains(v, "HTTP 503") {
		t.Errorf("backoff row = %q", v)
	}
	if v := eval[string](t, ctx, `document.querySelector('span[data-domain="beta.example"][data-flag]').dataset.enabled`); v != "false" {
		t.Errorf("beta.example process_repeaters shown %s, want false", v)
	}
	// The chart: one bar a minute, the seeded hour in it.
	if n := eval[int](t, ctx, `document.querySelectorAll('#rate-chart g.bar').length`); n != 60 {
		t.Errorf("chart has %d bars, want 60", n)
	}
	if n := eval[int](t, ctx, `Number(document.getElementById('rate-hour').dataset.count)`); n < 59*12 {
		t.Errorf("chart counts %d attempts in the hour, want at least the %d seeded", n, 59*12)
	}
	if v := eval[string](t, ctx, `document.getElementById('link-monitor').getAttribute('href') + ' ' + document.getElementById('link-metrics').getAttribute('href')`); v != "/monitor/ /metrics" {
		t.Errorf("links = %q", v)
	}

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(screenshotPath, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", screenshotPath)
}

func TestPageBrowserFlagSwitchAndEscaping(t *testing.T) {
	ctx := newBrowser(t)
	st, _ := pageDB(t)
	bg := context.Background()
	const token = "s3cret-token"

	pageRepeater(t, st, "alpha.example", "orders")
	evil := pageRepeater(t, st, hostileDomain, hostileName)
	seedBackoff(t, st, evil, time.Hour, 502, hostileMessage)

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	web, err := dashboards.NewWeb(dashboards.WebConfig{Addr: "127.0.0.1:0", APIToken: token}, st,
		storetest.RedisClient(t), dashboards.WithLogger(logger),
		dashboards.WithPage(dashboards.NewPage(st, dashboards.PageOptions{APIToken: token, Refresh: time.Minute, Logger: logger})))
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

	// Any dialog would be an injected script running.
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

	do(t, ctx, chromedp.Navigate(base), chromedp.WaitVisible(chromedp.ID("flags")))

	// Escaping: hostile text is shown as text, nothing of it became markup.
	texts := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#dash .name, #dash .msg')).map(function (e) { return e.textContent; })`)
	for _, want := range []string{hostileDomain, hostileMessage} {
		if !containsString(texts, want) {
			t.Errorf("page does not show %q as text; it shows %q", want, texts)
		}
	}
	if !containsPrefix(texts, hostileName) {
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

	mu.Lock()
	defer mu.Unlock()
	if len(dialogs) > 0 {
		t.Errorf("injected script ran: dialogs %q", dialogs)
	}
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func containsPrefix(list []string, s string) bool {
	for _, v := range list {
		if strings.HasPrefix(v, s) {
			return true
		}
	}
	return false
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
	set := false
	for _, r := range rows {
		set = set || r.Domain == domain
	}
	if got != enabled || set != explicit {
		t.Errorf("flag of %q = %v (explicit %v), want %v (explicit %v)", domain, got, set, enabled, explicit)
	}
}

// pagePost posts the switch's form as a browser on origin would.
func pagePost(t *testing.T, target, origin string, form url.Values) *http.Response {
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

func TestPageFlagSwitchRequests(t *testing.T) {
	st := storetest.NewStore(t)
	pageRepeater(t, st, "a.example", "r")
	const token = "tok"
	srv := httptest.NewServer(dashboards.NewPage(st, dashboards.PageOptions{
		APIToken: token, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}))
	t.Cleanup(srv.Close)
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
		{"bad enabled", path, "", url.Values{"enabled": {"maybe"}, "token": {token}}, http.StatusBadRequest},
	} {
		if resp := pagePost(t, c.target, c.origin, c.form); resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.status)
		}
	}
	assertFlag(t, st, "a.example", true, false)

	resp := pagePost(t, path, "", url.Values{"enabled": {"false"}, "token": {token}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("switch: %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	assertFlag(t, st, "a.example", false, true)

	for _, c := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/", http.StatusOK},
		{http.MethodGet, "/ui/fragment", http.StatusOK},
		{http.MethodGet, "/nope", http.StatusNotFound},
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
		if csp := resp.Header.Get("Content-Security-Policy"); c.status == http.StatusOK && !strings.Contains(csp, "script-src 'sha256-") {
			t.Errorf("%s %s: Content-Security-Policy %q", c.method, c.path, csp)
		}
	}
}

// pageFetch returns the body of GET path.
func pageFetch(t *testing.T, h http.Handler, path string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
	}
	return rec.Body.String()
}

var barRE = regexp.MustCompile(`data-minute="([^"]+)" data-total="(\d+)"`)

// chartBars reads the chart's bars: minute (RFC 3339) to attempts.
func chartBars(t *testing.T, html string) map[string]int64 {
	t.Helper()
	bars := map[string]int64{}
	for _, m := range barRE.FindAllStringSubmatch(html, -1) {
		n, _ := strconv.ParseInt(m[2], 10, 64)
		bars[m[1]] = n
	}
	if len(bars) != 60 {
		t.Fatalf("chart has %d bars, want 60", len(bars))
	}
	return bars
}

// TestPageDeliveryRate checks the chart's window and its cache of settled
// minutes across refreshes, on a clock the test moves.
func TestPageDeliveryRate(t *testing.T) {
	st := storetest.NewStore(t)
	r := pageRepeater(t, st, "a.example", "r")
	now := time.Date(2030, 3, 4, 10, 30, 20, 0, time.UTC)
	clock := now
	h := dashboards.NewPage(st, dashboards.PageOptions{Now: func() time.Time { return clock }})
	attempt := func(at time.Time, state store.State, n int) {
		ids := registerN(t, st, r.ID, n)
		var out []store.Outcome
		for _, id := range ids {
			out = append(out, store.Outcome{RecordID: id, State: state, AttemptedAt: at})
		}
		recordOutcomes(t, st, out)
	}
	minute := func(m time.Time) string { return m.Format(time.RFC3339) }
	attempt(now.Add(-time.Hour), store.StateSuccess, 4)                          // 09:30:20: before the window (09:31 on)
	attempt(time.Date(2030, 3, 4, 9, 31, 0, 0, time.UTC), store.StateSuccess, 2) // the first bar
	attempt(time.Date(2030, 3, 4, 10, 0, 59, 0, time.UTC), store.StateFail, 3)
	attempt(time.Date(2030, 3, 4, 10, 0, 1, 0, time.UTC), store.StateSuccess, 1)
	attempt(time.Date(2030, 3, 4, 10, 30, 0, 0, time.UTC), store.StatePayloadRejected, 5) // the current minute

	bars := chartBars(t, pageFetch(t, h, "/ui/fragment"))
	want := map[string]int64{"2030-03-04T09:31:00Z": 2, "2030-03-04T10:00:00Z": 4, "2030-03-04T10:30:00Z": 5}
	for m, n := range bars {
		if n != want[m] {
			t.Errorf("bar %s = %d, want %d", m, n, want[m])
		}
	}
	if _, ok := bars["2030-03-04T09:30:00Z"]; ok {
		t.Error("the chart shows 61 minutes")
	}

	// Ten minutes on: the old minutes come from the cache, the new from the
	// database, and the window slid.
	clock = now.Add(10 * time.Minute)
	attempt(time.Date(2030, 3, 4, 10, 35, 30, 0, time.UTC), store.StateEmpty, 7)
	attempt(time.Date(2030, 3, 4, 10, 40, 10, 0, time.UTC), store.StateSuccess, 1)
	html := pageFetch(t, h, "/ui/fragment")
	bars = chartBars(t, html)
	want = map[string]int64{"2030-03-04T10:00:00Z": 4, "2030-03-04T10:30:00Z": 5, "2030-03-04T10:35:00Z": 7, "2030-03-04T10:40:00Z": 1}
	for m, n := range bars {
		if n != want[m] {
			t.Errorf("after 10 minutes: bar %s = %d, want %d", m, n, want[m])
		}
	}
	if _, ok := bars[minute(time.Date(2030, 3, 4, 9, 41, 0, 0, time.UTC))]; !ok {
		t.Error("after 10 minutes the window does not start at 09:41")
	}
	if !strings.Contains(html, `id="rate-hour" data-count="17"`) {
		t.Errorf("hour total is not 17 (4+5+7+1)")
	}
	if !strings.Contains(html, `id="rate-last-minute" data-count="0"`) {
		t.Errorf("last full minute (10:39) is not 0")
	}
}

// TestPageWALCounts: with a slot feeding the aggregate, the page shows the
// aggregate (not a live count), says nothing about live counts, and
// refreshes at the normal rate.
func TestPageWALCounts(t *testing.T) {
	st, dbURL := pageDB(t)
	r := pageRepeater(t, st, "a.example", "r")
	registerN(t, st, r.ID, 2) // live: 2 pending
	storetest.Exec(t, dbURL, `SELECT pg_create_logical_replication_slot('page_test', 'pgoutput')`)
	storetest.Exec(t, dbURL, `INSERT INTO stats_progress (slot_name, applied_lsn) VALUES ('page_test', '0/1')`)
	storetest.Exec(t, dbURL, `INSERT INTO repeat_record_stats (domain, repeater_id, state, count)
		VALUES ('a.example', $1, 1, 1234567), ('a.example', $1, 4, 0)`, r.ID)
	h := dashboards.NewPage(st, dashboards.PageOptions{Refresh: 3 * time.Second, LiveRefresh: time.Minute})
	html := pageFetch(t, h, "/")
	for _, want := range []string{
		`data-source="wal"`,
		`data-refresh-ms="3000"`,
		`data-domain="a.example" data-state="pending" data-count="1234567">1,234,567<`,
		`data-domain="a.example" data-state="success" data-count="0">0<`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(html, "counts-live") {
		t.Error("page says its counts are live while a slot feeds the aggregate")
	}

	storetest.Exec(t, dbURL, `SELECT pg_drop_replication_slot('page_test')`)
	html = pageFetch(t, h, "/ui/fragment")
	for _, want := range []string{`data-source="live"`, `data-refresh-ms="60000"`, `id="counts-live"`,
		`data-domain="a.example" data-state="pending" data-count="2">2<`} {
		if !strings.Contains(html, want) {
			t.Errorf("without a slot, the fragment lacks %s", want)
		}
	}
}
