package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"repeaterd/dashboards"
	"repeaterd/dashboards/auth"
	"repeaterd/dashboards/console"
	"repeaterd/repeaters"
	"repeaterd/repeaters/lifecycle"
	"repeaterd/repeaters/repeatertest"
	"repeaterd/store"
	"repeaterd/store/storetest"
	"repeaterd/tasks"
)

// hostilePayload would close the payload's <pre> and run a script if it
// were not escaped.
const hostilePayload = `{"note":"</pre><script>alert(4)</script>","img":"<img src=x onerror=alert(5)>"}`

// artefactsDir is where the operator test saves its screenshots:
// $REPEATERD_ARTIFACTS, else .artifacts/console at the repository root
// (ignored by git).
func artefactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("REPEATERD_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", ".artifacts")
	}
	dir = filepath.Join(dir, "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// operatorEnv is a real engine (dispatcher and worker, bulk jobs included)
// and the web role with the console, on one fresh database.
type operatorEnv struct {
	eng  *tasks.Engine
	st   *store.Store
	base string
	web  *dashboards.Web
}

func startOperatorEnv(t *testing.T, b *browser, token string) *operatorEnv {
	t.Helper()
	cfg := tasks.EngineConfig{DatabaseURL: storetest.NewDB(t), RedisURL: storetest.RedisDB(t),
		Sender: repeaters.SenderConfig{AllowPrivateTargets: true}}
	eng, err := tasks.OpenEngine(t.Context(), cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	page := newConsole(t, eng.Store, console.Config{Token: auth.NewToken(token), Refresh: time.Minute, Jobs: eng.Client})
	web, err := dashboards.NewWeb(dashboards.WebConfig{Addr: "127.0.0.1:0", APIToken: token}, eng.Store, eng.Redis,
		dashboards.WithLogger(quiet), dashboards.WithPage(page))
	if err != nil {
		t.Fatal(err)
	}
	services := []lifecycle.Service{eng.NewDispatcher(), eng.NewWorker(), web}
	if err := lifecycle.StartAll(t.Context(), services); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lifecycle.StopAll(context.Background(), services) })
	t.Cleanup(func() { _ = chromedp.Cancel(b.ctx) }) // before the web role stops (startWebConsole says why)
	return &operatorEnv{eng: eng, st: eng.Store, base: "http://" + web.Addr(), web: web}
}

// clickThrough clicks sel and waits for the page it leads to.
func clickThrough(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	r, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("click %s: %v, %v", sel, r, err)
	}
}

// TestBrowserOperatorWorkflow drives the operator pages as a person
// would, against a running engine: retry a backed-off repeater now and
// see its delivery arrive; filter records by state and open one; requeue
// 5,000 failed records as a bulk job and watch it finish; pause and
// resume; hostile names and payloads shown as text. Every page is saved as
// a screenshot.
func TestBrowserOperatorWorkflow(t *testing.T) {
	b := newBrowser(t)
	ctx := b.ctx
	const token = "operator-token"
	env := startOperatorEnv(t, b, token)
	st := env.st
	shots := artefactsDir(t)
	dialogs := watchDialogs(ctx)

	sink, err := repeatertest.New(repeatertest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	sinkSrv := httptest.NewServer(sink)
	t.Cleanup(sinkSrv.Close)

	// A backed-off repeater with one record waiting, pointing at the sink.
	backedOff := storetest.Repeater(t, st, storetest.RepeaterOpts{Domain: "alpha.example", Name: "orders", URL: sinkSrv.URL + "/ok"})
	if err := st.SetBackoff(t.Context(), backedOff.ID, time.Now().Add(6*time.Hour)); err != nil {
		t.Fatal(err)
	}
	storetest.Records(t, st, backedOff, 1)
	// A paused repeater with 5,000 cancelled records (the engine leaves it
	// alone, so the requeued records stay put for the count).
	bulk := storetest.Repeater(t, st, storetest.RepeaterOpts{Domain: "alpha.example", Name: "ledger",
		Edit: func(r *store.Repeater) { r.IsPaused = true }})
	if err := st.SetPaused(t.Context(), bulk.ID, true); err != nil {
		t.Fatal(err)
	}
	execSQL(t, st, `UPDATE repeat_records SET state = 8 WHERE id = ANY($1)`, storetest.Records(t, st, bulk, 5000))
	// A hostile tenant: its name, domain, payload and endpoint's answer.
	evil := storetest.Repeater(t, st, storetest.RepeaterOpts{Domain: hostileDomain, Name: hostileName,
		Edit: func(r *store.Repeater) { r.IsPaused = true }})
	if err := st.SetPaused(t.Context(), evil.ID, true); err != nil {
		t.Fatal(err)
	}
	evilRec, _, err := st.RegisterRecord(t.Context(), store.RegisterParams{RepeaterID: evil.ID, Body: []byte(hostilePayload)})
	if err != nil {
		t.Fatal(err)
	}
	recordOutcomes(t, st, []store.Outcome{{RecordID: evilRec.ID, State: store.StateFail, StatusCode: 502, Message: hostileMessage,
		Duration: 1500 * time.Millisecond}})
	attempt(t, st, evil, time.Now(), store.StateSuccess, 3)

	browserLogin(t, b, env.base, token)
	screenshot(t, ctx, shots, "overview")

	// Repeaters: the backed-off one is listed so, with its actions.
	do(t, ctx, chromedp.Navigate(env.base+"/ui/repeaters"), chromedp.WaitVisible(chromedp.ID("repeater-table")))
	row := fmt.Sprintf(`tr[data-repeater-id="%d"]`, backedOff.ID)
	if s := eval[string](t, ctx, `document.querySelector('`+row+`').dataset.state`); s != "backed off" {
		t.Fatalf("the backed-off repeater is listed %q", s)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#repeater-table tbody tr').length`); n != 3 {
		t.Errorf("%d repeaters listed, want 3", n)
	}
	screenshot(t, ctx, shots, "repeaters")
	clickThrough(t, ctx, row+` button[data-action="retry"]`)
	if s := eval[string](t, ctx, `document.querySelector('`+row+`').dataset.state`); s != "active" {
		t.Errorf("after retry now the repeater is listed %q, want active", s)
	}
	wait, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if !sink.WaitCount(wait, "/ok", 1) {
		t.Fatal("retry now: no delivery reached the sink in 20s")
	}

	// Pause and resume.
	clickThrough(t, ctx, row+` button[data-action="pause"]`)
	if r, _ := st.GetRepeater(t.Context(), backedOff.ID); !r.IsPaused {
		t.Error("pause did not pause")
	}
	if s := eval[string](t, ctx, `document.querySelector('`+row+`').dataset.state`); s != "paused" {
		t.Errorf("after pause the repeater is listed %q", s)
	}
	clickThrough(t, ctx, row+` button[data-action="resume"]`)
	if r, _ := st.GetRepeater(t.Context(), backedOff.ID); r.IsPaused {
		t.Error("resume did not resume")
	}

	// The hostile repeater: filter by state, open the record, its attempts.
	do(t, ctx, chromedp.Navigate(fmt.Sprintf("%s/ui/repeaters/%d", env.base, evil.ID)), chromedp.WaitVisible(chromedp.ID("record-table")))
	if n := eval[int](t, ctx, `document.querySelectorAll('#record-table tbody tr[data-record-id]').length`); n != 4 {
		t.Errorf("%d records listed, want 4", n)
	}
	do(t, ctx, chromedp.SetValue(chromedp.ID("state"), "fail"))
	clickThrough(t, ctx, "#apply-filter")
	states := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#record-table tbody tr[data-record-id]')).map(function (r) { return r.dataset.state; })`)
	if len(states) != 1 || states[0] != "fail" {
		t.Errorf("filtered by fail, the page lists %v", states)
	}
	screenshot(t, ctx, shots, "repeater")
	clickThrough(t, ctx, fmt.Sprintf(`a[data-record-link="%d"]`, evilRec.ID))
	attempts := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('tr.attempt')).map(function (r) { return r.dataset.status + ' ' + r.querySelector('.msg').textContent; })`)
	if len(attempts) != 1 || attempts[0] != "502 "+hostileMessage {
		t.Errorf("attempts shown %q, want the 502 with its message as text", attempts)
	}
	if body := eval[string](t, ctx, `document.getElementById('payload-body').textContent`); !strings.Contains(body, `"note": "</pre><script>alert(4)</script>"`) {
		t.Errorf("payload shown as %q, want it indented, as text", body)
	}
	assertNoInjectedMarkup(t, ctx)
	screenshot(t, ctx, shots, "record")

	// Bulk: requeue every failed record of the paused repeater.
	do(t, ctx, chromedp.Navigate(fmt.Sprintf("%s/ui/repeaters/%d", env.base, bulk.ID)), chromedp.WaitVisible(chromedp.ID("record-table")))
	clickThrough(t, ctx, `button[data-action="requeue-failed"]`)
	if path := eval[string](t, ctx, `location.pathname`); !strings.HasPrefix(path, "/ui/jobs/") {
		t.Fatalf("requeue failed led to %s, want the job's page", path)
	}
	waitRefreshed(t, ctx, "the bulk job to finish", `document.getElementById('job').dataset.state === 'done'`)
	if v := eval[string](t, ctx, `document.getElementById('job').dataset.changed + ' ' + document.getElementById('job').dataset.processed`); v != "5000 5000" {
		t.Errorf("job shows changed/processed %s, want 5000 5000", v)
	}
	if n := storetest.Count(t, st, `SELECT count(*) FROM repeat_records WHERE repeater_id = $1 AND state = 2 AND next_check <= now()`, bulk.ID); n != 5000 {
		t.Errorf("%d records requeued in the database, want 5000", n)
	}
	screenshot(t, ctx, shots, "job")

	// Bulk by selection: cancel two rows of the page.
	do(t, ctx, chromedp.Navigate(fmt.Sprintf("%s/ui/repeaters/%d?state=fail", env.base, bulk.ID)), chromedp.WaitVisible(chromedp.ID("record-table")))
	do(t, ctx, chromedp.Click(chromedp.CSS(`#record-table tbody tr:nth-child(1) input.select-row`)),
		chromedp.Click(chromedp.CSS(`#record-table tbody tr:nth-child(2) input.select-row`)),
		chromedp.SetValue(chromedp.ID("bulk-action"), "cancel"))
	clickThrough(t, ctx, "#bulk-selected")
	waitRefreshed(t, ctx, "the selection's job to finish", `document.getElementById('job').dataset.state === 'done'`)
	if v := eval[string](t, ctx, `document.getElementById('job').dataset.changed`); v != "2" {
		t.Errorf("cancel of two selected rows changed %s", v)
	}

	// The domain pages, the hostile one included.
	do(t, ctx, chromedp.Navigate(env.base+"/ui/domains"), chromedp.WaitVisible(chromedp.ID("domains")))
	screenshot(t, ctx, shots, "domains")
	do(t, ctx, chromedp.Navigate(env.base+"/ui/domains/alpha.example"), chromedp.WaitVisible(chromedp.ID("repeater-table")))
	if n := eval[int](t, ctx, `document.querySelectorAll('#repeater-table tbody tr[data-repeater-id]').length`); n != 2 {
		t.Errorf("alpha.example's page lists %d repeaters, want 2", n)
	}
	screenshot(t, ctx, shots, "domain")
	do(t, ctx, chromedp.Navigate(env.base+"/ui/repeaters?domain="+url.QueryEscape(hostileDomain)), chromedp.WaitVisible(chromedp.ID("repeater-table")))
	names := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#repeater-table [data-repeater-link], #repeater-table .msg')).map(function (e) { return e.textContent; })`)
	if len(names) == 0 || names[0] != hostileName {
		t.Errorf("the hostile repeater's name is shown as %q", names)
	}
	if v := eval[string](t, ctx, fmt.Sprintf(`document.querySelector('tr[data-repeater-id="%d"] td:nth-child(6)').textContent.trim()`, evil.ID)); v != "3 / 1 / 0" {
		t.Errorf("the hostile repeater's last hour (ok / fail / rejected) shows %q, want 3 / 1 / 0", v)
	}
	assertNoInjectedMarkup(t, ctx)
	screenshot(t, ctx, shots, "repeaters-hostile")

	if got := dialogs(); len(got) > 0 {
		t.Errorf("injected script ran: dialogs %q", got)
	}
	b.assertClean(t)
}

// assertNoInjectedMarkup: the page has only its own script and no images.
func assertNoInjectedMarkup(t *testing.T, ctx context.Context) {
	t.Helper()
	if n := eval[int](t, ctx, `document.querySelectorAll('script').length`); n != 1 {
		t.Errorf("page has %d script elements, want only its own", n)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('img').length`); n != 0 {
		t.Errorf("page has %d img elements, want none", n)
	}
}
