package console_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"repeaterd/dashboards/console"
	"repeaterd/store"
	"repeaterd/store/storetest"
)

// screenshotPath is where TestBrowserCountsWhileRecordsFlow leaves a
// picture of the page, for a person to look at.
const screenshotPath = "/tmp/repeaterd-dashboard.png"

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

func TestBrowserCountsWhileRecordsFlow(t *testing.T) {
	b := newBrowser(t)
	ctx := b.ctx
	st := storetest.NewStore(t)
	bg := context.Background()
	now := time.Now()

	orders := repeater(t, st, "alpha.example", "orders webhook")
	billing := repeater(t, st, "alpha.example", "billing")
	crm := repeater(t, st, "beta.example", "crm sync")
	legacy := repeater(t, st, "gamma.example", "legacy ERP")
	seedHistory(t, st, orders, now)
	seedBackoff(t, st, legacy, 7*time.Minute, 503, "503 Service Unavailable: upstream maintenance until 14:00")
	// A Success record without a Success attempt breaks an invariant.
	execSQL(t, st, `WITH p AS (INSERT INTO payloads (domain, body) VALUES ('gamma.example', '{}') RETURNING id)
		INSERT INTO repeat_records (domain, repeater_id, payload_id, state) SELECT 'gamma.example', $1, id, 4 FROM p`, legacy.ID)
	if err := st.RefreshInvariants(bg); err != nil {
		t.Fatal(err)
	}
	if err := st.SetDomainFlag(bg, "beta.example", store.FlagProcessRepeaters, false); err != nil {
		t.Fatal(err)
	}

	srv := serve(t, newConsole(t, st, console.Config{Refresh: 250 * time.Millisecond, LiveRefresh: 250 * time.Millisecond}))

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
	waitRefreshed(t, ctx, "a refresh showing new records", fmt.Sprintf(
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
	waitRefreshed(t, ctx, "a refresh after the flow stopped",
		fmt.Sprintf(`BigInt(document.getElementById('dash').dataset.renderedNs) > %dn`, stopped))
	byState := assertCountsMatchStore(t, ctx, st, 3)
	for _, s := range store.AllStates {
		if byState[s.String()] == 0 {
			t.Errorf("the flow made no %s records; the test does not cover that state", s)
		}
	}

	// No stats consumer runs here: the counts are live, and the page says so.
	if banner := eval[string](t, ctx, `(document.getElementById('counts-live') || {}).textContent || ''`); !strings.Contains(banner,
		"live counts (slow): the WAL stats consumer has never run on this database") {
		t.Errorf("live counts banner = %q", banner)
	}
	// The invariant broken above, and the others OK.
	if v := eval[string](t, ctx, `document.querySelector('tr[data-check="success_without_attempt"] [data-status]').textContent`); v != "VIOLATED" {
		t.Errorf("success_without_attempt shows %q, want VIOLATED", v)
	}
	if v := eval[string](t, ctx, `document.querySelector('tr[data-check="negative_stats_count"] [data-status]').textContent`); v != "OK" {
		t.Errorf("negative_stats_count shows %q, want OK", v)
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
	assertStyled(t, ctx)
	b.assertClean(t)

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(screenshotPath, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", screenshotPath)
}

// assertStyled checks that console.css applies: the header is dark, as
// the style sheet says.
func assertStyled(t *testing.T, ctx context.Context) {
	t.Helper()
	if v := eval[string](t, ctx, `getComputedStyle(document.querySelector('header')).backgroundColor`); v != "rgb(31, 41, 51)" {
		t.Errorf("header background %q: console.css is not applied", v)
	}
}

// assertCountsMatchStore checks every cell and total of the counts table
// the browser shows against a live count of the records, and that the page
// lists domains domains. It returns the records by state.
func assertCountsMatchStore(t *testing.T, ctx context.Context, st *store.Store, domains int) map[string]int64 {
	t.Helper()
	cells := eval[[]countCell](t, ctx, readCountCells)
	live, err := st.LiveStatsCounts(context.Background(), "")
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
	shown := map[string]bool{}
	for _, c := range cells {
		got[[2]string{c.Domain, c.State}] = c.Count
		shown[c.Domain] = true
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
	if len(shown) != domains || len(cells) != domains*len(store.AllStates) {
		t.Errorf("page lists domains %v in %d cells, want %d domains in every state", shown, len(cells), domains)
	}
	for _, s := range store.AllStates {
		shown := eval[string](t, ctx, fmt.Sprintf(`document.querySelector('#counts td[data-total-state=%q]').dataset.count`, s.String()))
		if shown != strconv.FormatInt(wantTotals[s.String()], 10) {
			t.Errorf("total %s shown %s, want %d", s, shown, wantTotals[s.String()])
		}
	}
	if shown := eval[string](t, ctx, `document.getElementById('counts-total').dataset.count`); shown != strconv.FormatInt(wantTotal, 10) {
		t.Errorf("grand total shown %s, want %d", shown, wantTotal)
	}
	return wantTotals
}

// TestWALCounts: with a slot feeding the aggregate, the page shows the
// aggregate (not a live count), says nothing about live counts, and
// refreshes at the normal rate.
func TestWALCounts(t *testing.T) {
	st := storetest.NewStore(t)
	r := repeater(t, st, "a.example", "r")
	storetest.Records(t, st, r, 2) // live: 2 pending
	execSQL(t, st, `SELECT pg_create_logical_replication_slot('page_test', 'pgoutput')`)
	execSQL(t, st, `INSERT INTO stats_progress (slot_name, applied_lsn) VALUES ('page_test', '0/1')`)
	execSQL(t, st, `INSERT INTO repeat_record_stats (domain, repeater_id, state, count)
		VALUES ('a.example', $1, 1, 1234567), ('a.example', $1, 4, 0)`, r.ID)
	h := newConsole(t, st, console.Config{Refresh: 3 * time.Second, LiveRefresh: time.Minute})
	html := fetch(t, h, "/")
	for _, want := range []string{
		`data-source="wal"`,
		`data-refresh-ms="3000"`,
		`<meta http-equiv="refresh" content="3">`,
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

	execSQL(t, st, `SELECT pg_drop_replication_slot('page_test')`)
	html = fetch(t, h, "/ui/fragment")
	for _, want := range []string{`data-source="live"`, `data-refresh-ms="60000"`, `id="counts-live"`,
		`data-domain="a.example" data-state="pending" data-count="2">2<`} {
		if !strings.Contains(html, want) {
			t.Errorf("without a slot, the fragment lacks %s", want)
		}
	}
}
