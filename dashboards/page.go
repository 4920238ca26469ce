package dashboards

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"repeaterd/store"
)

// Dashboard page defaults.
const (
	DefaultPageRefresh     = 5 * time.Second
	DefaultPageLiveRefresh = 30 * time.Second
)

// PageOptions configures the dashboard page (NewPage).
type PageOptions struct {
	// APIToken, when set, must be typed into the page to switch a domain
	// flag: it is the web role's token (WebConfig.APIToken), since a switch
	// does what PUT /api/v1/domains/{domain}/flags/{flag} does. Viewing the
	// page needs no token. Defaults to none: anyone who can reach the page
	// may switch flags, which the web role allows only on loopback.
	APIToken string
	// Now is the clock the page shows times against and counts the
	// delivery-rate window from. Defaults to time.Now.
	Now func() time.Time
	// Refresh is how often an open page fetches fresh data. Defaults to
	// DefaultPageRefresh (5s).
	Refresh time.Duration
	// LiveRefresh is the refresh interval while record counts are live
	// (no WAL stats consumer), since every live count reads every record.
	// Defaults to DefaultPageLiveRefresh (30s); never shorter than Refresh.
	LiveRefresh time.Duration
	// Logger logs failed queries and flag switches. Defaults to
	// slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns o with its zero fields set to their defaults.
func (o PageOptions) WithDefaults() PageOptions {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Refresh <= 0 {
		o.Refresh = DefaultPageRefresh
	}
	if o.LiveRefresh <= 0 {
		o.LiveRefresh = DefaultPageLiveRefresh
	}
	o.LiveRefresh = max(o.LiveRefresh, o.Refresh)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Routes of the page. The web role mounts the page at / and sends it every
// path no other route claims; the page answers these and 404s the rest.
const (
	pageFragmentPath = "/ui/fragment"                           // GET: the refreshing part, for the page's script
	pageFlagPattern  = "POST /ui/domains/{domain}/flags/{flag}" // form post: switch a flag, redirect to /
)

// Limits of what one page shows, so a deployment with thousands of domains
// still renders fast; the API lists everything.
const (
	pageMaxDomains    = 200
	pageMaxBackoff    = 50
	pageMaxViolations = 20
	pageMaxMessage    = 200 // bytes of an attempt message
	// invariantsStaleAfter matches the RepeaterdInvariantsStale alert.
	invariantsStaleAfter = 2 * time.Hour
)

//go:embed page.html
var pageHTML string

var pageTemplates = template.Must(template.New("dashboard").Funcs(template.FuncMap{
	"num": formatCount,
	"plural": func(n int64, one, many string) string {
		if n == 1 {
			return one
		}
		return many
	},
}).Parse(pageHTML))

// The page's only script and style sheet. They are inserted verbatim and
// allowed by hash in the Content-Security-Policy, so even markup that
// slipped past escaping could not run a script.
const (
	pageScript = `(function () {
  'use strict';
  var status = document.getElementById('refresh-status');
  function dash() { return document.getElementById('dash'); }
  function schedule() {
    var ms = parseInt(dash().getAttribute('data-refresh-ms'), 10);
    setTimeout(refresh, ms > 0 ? ms : 5000);
  }
  function refresh() {
    if (document.hidden) { schedule(); return; }
    fetch('` + pageFragmentPath + `', {cache: 'no-store', credentials: 'same-origin'})
      .then(function (resp) {
        if (!resp.ok) { throw new Error('HTTP ' + resp.status); }
        return resp.text();
      })
      .then(function (html) {
        var t = document.createElement('template');
        t.innerHTML = html;
        var next = t.content.getElementById('dash');
        if (!next) { throw new Error('unexpected response'); }
        dash().replaceWith(next);
        status.textContent = '';
        status.className = '';
      })
      .catch(function (err) {
        status.textContent = 'refresh failed (' + err.message + '); retrying';
        status.className = 'warn';
      })
      .then(schedule);
  }
  schedule();
})();`

	pageStyle = `
:root { --fg: #1f2933; --muted: #6b7280; --line: #e5e7eb; --bg: #f6f7f9; --card: #fff;
  --ok: #15803d; --bad: #b91c1c; --warn: #b45309; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 20px; padding: 10px 20px;
  background: #1f2933; color: #fff; }
header h1 { font-size: 18px; margin: 0; }
header a { color: #bfdbfe; }
header nav { display: flex; gap: 16px; }
header form { margin-left: auto; display: flex; gap: 8px; align-items: center; }
header input { padding: 3px 6px; border-radius: 4px; border: 1px solid #9ca3af; }
#refresh-status.warn { color: #fcd34d; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 16px; padding: 16px 20px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 12px 16px;
  min-width: 0; overflow-x: auto; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 15px; margin: 0 0 8px; }
p { margin: 4px 0 8px; }
.meta, .note { color: var(--muted); font-size: 12px; }
.meta { grid-column: 1 / -1; margin: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.zero { color: #c0c4cc; }
tfoot td { font-weight: 600; border-bottom: 0; }
.name { overflow-wrap: break-word; }
.msg { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.ok { background: #dcfce7; color: var(--ok); }
.bad { background: #fee2e2; color: var(--bad); }
.off { background: #e5e7eb; color: #374151; }
.warn { color: var(--warn); font-weight: 600; }
.banner { background: #fef3c7; border: 1px solid #fcd34d; border-radius: 4px; padding: 6px 10px; }
.error { color: var(--bad); }
button.switch { cursor: pointer; border: 1px solid #9ca3af; border-radius: 4px; background: #fff; padding: 2px 10px; }
button.switch:hover { background: #f3f4f6; }
svg { display: block; width: 100%; height: auto; }
svg text { font-size: 12px; fill: var(--muted); }
svg line { stroke: var(--line); }
.legend { display: flex; flex-wrap: wrap; gap: 12px; font-size: 12px; color: var(--muted); margin-top: 4px; }
.sw { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
.s-success { fill: #16a34a; background: #16a34a; }
.s-empty { fill: #60a5fa; background: #60a5fa; }
.s-payload_rejected { fill: #dc2626; background: #dc2626; }
.s-fail { fill: #f59e0b; background: #f59e0b; }
.s-cancelled { fill: #6b7280; background: #6b7280; }
`
)

// pageCSP allows nothing but the page's own script and style, fetches of
// the fragment and form posts to this origin; frame-ancestors 'none' keeps
// the flag switch from being clickjacked.
var pageCSP = fmt.Sprintf("default-src 'none'; script-src 'sha256-%s'; style-src 'sha256-%s'; "+
	"connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
	cspHash(pageScript), cspHash(pageStyle))

func cspHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// page is the web dashboard.
type page struct {
	st    *store.Store
	opts  PageOptions
	token *[sha256.Size]byte // the API token's hash; nil when none is configured
	rate  rateCache
	mux   *http.ServeMux
}

// NewPage returns the web dashboard, for the web role's WithPage: per-domain
// record counts by state, the repeaters in backoff, the invariants, a
// delivery-rate chart of the last hour and each domain's process_repeaters
// flag with a switch. It is server-rendered with html/template (everything
// from users and endpoints is escaped), needs nothing from outside the
// process (no CDN, fonts or libraries), and refreshes itself with a small
// inline script that re-fetches its data every opts.Refresh.
//
// Routes: GET / (the page), GET /ui/fragment (its refreshing part) and POST
// /ui/domains/{domain}/flags/{flag} (the switch; it redirects back to /).
// Any other path is 404, another method 405.
func NewPage(st *store.Store, opts PageOptions) http.Handler {
	p := &page{st: st, opts: opts.WithDefaults(), mux: http.NewServeMux()}
	if p.opts.APIToken != "" {
		sum := sha256.Sum256([]byte(p.opts.APIToken))
		p.token = &sum
	}
	p.mux.HandleFunc("GET /{$}", p.servePage)
	p.mux.HandleFunc("GET "+pageFragmentPath, p.serveFragment)
	// A form post is what a cross-site page can forge; the browser's
	// Sec-Fetch-Site and Origin headers tell it apart.
	p.mux.Handle(pageFlagPattern, http.NewCrossOriginProtection().Handler(http.HandlerFunc(p.setFlag)))
	// Other paths get the mux's 404, and other methods its 405.
	return p
}

func (p *page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	p.mux.ServeHTTP(w, r)
}

// pageView is the whole page; dashView its refreshing part.
type pageView struct {
	CSS           template.CSS
	JS            template.JS
	TokenRequired bool
	Monitor       string
	Dash          *dashView
}

type dashView struct {
	Now        time.Time
	RenderedNS int64 // when the data was read, for tests and debugging
	RefreshMS  int64
	Refresh    string
	Counts     countsView
	Rate       rateView
	Invariants invariantsView
	Backoff    backoffView
	Flags      flagsView
}

func (p *page) servePage(w http.ResponseWriter, r *http.Request) {
	v := pageView{
		CSS: template.CSS(pageStyle), JS: template.JS(pageScript),
		TokenRequired: p.token != nil, Monitor: MonitorPath + "/", Dash: p.load(r.Context()),
	}
	p.render(w, http.StatusOK, "page", v)
}

func (p *page) serveFragment(w http.ResponseWriter, r *http.Request) {
	p.render(w, http.StatusOK, "dash", p.load(r.Context()))
}

func (p *page) render(w http.ResponseWriter, status int, name string, data any) {
	// Rendered whole first, so a template error is a clean 500, not half a page.
	var b bytes.Buffer
	if err := pageTemplates.ExecuteTemplate(&b, name, data); err != nil {
		p.opts.Logger.Error("dashboard: render", "template", name, "err", err)
		http.Error(w, "the dashboard could not be rendered; see the server log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// load reads everything the page shows. A section whose query fails says
// so (details go to the log, not to an unauthenticated page); the rest is
// still shown.
func (p *page) load(ctx context.Context) *dashView {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	now := p.opts.Now()
	d := &dashView{Now: now, RenderedNS: now.UnixNano()}
	d.Counts = p.loadCounts(ctx)
	d.Rate = p.loadRate(ctx, now)
	d.Invariants = p.loadInvariants(ctx, now)
	d.Backoff = p.loadBackoff(ctx, now)
	d.Flags = p.loadFlags(ctx, now)
	refresh := p.opts.Refresh
	if d.Counts.Live {
		refresh = p.opts.LiveRefresh
	}
	d.RefreshMS, d.Refresh = refresh.Milliseconds(), formatDuration(refresh)
	if refresh < time.Second {
		d.Refresh = refresh.String()
	}
	return d
}

// failed logs a section's error and returns what the page says instead.
func (p *page) failed(section string, err error) string {
	level := slog.LevelError
	if errors.Is(err, context.Canceled) { // the viewer left
		level = slog.LevelDebug
	}
	p.opts.Logger.Log(context.Background(), level, "dashboard: load", "section", section, "err", err)
	return "Could not load this section; see the server log."
}

// Record counts.

type countsView struct {
	Err    string
	Live   bool
	States []string
	Rows   []countsRow
	Totals []stateCount
	Total  int64
	Hidden int // domains beyond pageMaxDomains
}

type countsRow struct {
	Domain string
	Counts []stateCount
	Total  int64
}

type stateCount struct {
	State string
	Count int64
}

func pageStateNames() []string {
	names := make([]string, len(store.AllStates))
	for i, s := range store.AllStates {
		names[i] = s.String()
	}
	return names
}

func (p *page) loadCounts(ctx context.Context) countsView {
	v := countsView{States: pageStateNames()}
	rc, err := p.st.RecordCounts(ctx, "")
	if err != nil {
		v.Err = p.failed("counts", err)
		return v
	}
	v.Live = rc.Live
	stateIndex := make(map[store.State]int, len(store.AllStates))
	for i, s := range store.AllStates {
		stateIndex[s] = i
	}
	totals := make([]int64, len(store.AllStates))
	var rows []countsRow
	byDomain := map[string]int{}
	for _, c := range rc.Counts {
		i, known := stateIndex[c.State]
		if !known || c.Count == 0 {
			continue
		}
		r, seen := byDomain[c.Domain]
		if !seen {
			r = len(rows)
			byDomain[c.Domain] = r
			rows = append(rows, countsRow{Domain: c.Domain, Counts: make([]stateCount, len(store.AllStates))})
		}
		rows[r].Counts[i].Count += c.Count
		rows[r].Total += c.Count
		totals[i] += c.Count
		v.Total += c.Count
	}
	slices.SortFunc(rows, func(a, b countsRow) int { return strings.Compare(a.Domain, b.Domain) })
	if len(rows) > pageMaxDomains {
		v.Hidden, rows = len(rows)-pageMaxDomains, rows[:pageMaxDomains]
	}
	for r := range rows {
		for i, s := range store.AllStates {
			rows[r].Counts[i].State = s.String()
		}
	}
	v.Rows = rows
	for i, s := range store.AllStates {
		v.Totals = append(v.Totals, stateCount{State: s.String(), Count: totals[i]})
	}
	return v
}

// Delivery rate.

const (
	rateMinutes = 60
	// rateSettle is how long after a minute ends its count may still grow:
	// an attempt is stored with the time it started, when its batch is
	// recorded, up to a batch's duration later. Older minutes are cached.
	rateSettle = 5 * time.Minute
)

// chartStates are the attempt outcomes the chart stacks, bottom first.
var chartStates = [...]store.State{
	store.StateSuccess, store.StateEmpty, store.StatePayloadRejected, store.StateFail, store.StateCancelled,
}

type minuteCounts [len(chartStates)]int64 // by chartStates

// rateCache keeps the counts of minutes too old to change, so a refresh
// counts only the last few minutes' attempts instead of the hour's.
type rateCache struct {
	mu     sync.Mutex
	closed map[int64]minuteCounts // by the minute's Unix time; absent = none
	until  time.Time              // every minute before this is in closed
}

// minutes returns the attempt counts of the rateMinutes minutes ending with
// now's, oldest first.
func (c *rateCache) minutes(ctx context.Context, st *store.Store, now time.Time) ([]minuteCounts, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := now.Truncate(time.Minute).Add(-(rateMinutes - 1) * time.Minute)
	end := now.Truncate(time.Minute).Add(time.Minute)
	settled := now.Add(-rateSettle).Truncate(time.Minute)
	if c.closed == nil || now.Before(c.until) { // first call, or the clock went back
		c.closed, c.until = map[int64]minuteCounts{}, time.Time{}
	}
	maps.DeleteFunc(c.closed, func(m int64, _ minuteCounts) bool { return m < start.Unix() })
	from := start
	if c.until.After(from) {
		from = c.until
	}
	counts, err := st.DeliveriesPerMinute(ctx, store.DeliveriesParams{Since: from, Until: end})
	if err != nil {
		return nil, err
	}
	fresh := map[int64]minuteCounts{}
	for _, dc := range counts {
		if i := slices.Index(chartStates[:], dc.State); i >= 0 {
			m := fresh[dc.Minute.Unix()]
			m[i] += dc.Count
			fresh[dc.Minute.Unix()] = m
		}
	}
	out := make([]minuteCounts, 0, rateMinutes)
	for m := start; m.Before(end); m = m.Add(time.Minute) {
		mc, ok := fresh[m.Unix()]
		if !ok && m.Before(from) {
			mc = c.closed[m.Unix()]
		}
		if !m.Before(from) && m.Before(settled) && mc != (minuteCounts{}) {
			c.closed[m.Unix()] = mc
		}
		out = append(out, mc)
	}
	if settled.After(c.until) {
		c.until = settled
	}
	return out, nil
}

type rateView struct {
	Err        string
	Bars       []rateBar
	Width      int
	Height     int
	PlotTop    int
	PlotBottom int
	PlotLeft   int
	YMax       int64
	YMid       int64
	YMidY      int
	XLabels    []axisLabel
	Legend     []string
	Hour       int64  // attempts in the window
	LastMinute int64  // attempts in the last full minute
	Success    string // share of Success and Empty in the window, "" without attempts
}

type rateBar struct {
	Minute string // RFC 3339
	Title  string
	Total  int64
	Segs   []barSeg
}

type barSeg struct {
	State string
	Count int64
	X, Y  int
	W, H  int
}

type axisLabel struct {
	X    int
	Text string
}

// Chart geometry, in SVG user units (the SVG scales to its box).
const (
	chartBarW   = 11
	chartGap    = 2
	chartLeft   = 48
	chartTop    = 8
	chartPlotH  = 220
	chartBottom = chartTop + chartPlotH
)

func (p *page) loadRate(ctx context.Context, now time.Time) rateView {
	v := rateView{
		Width: chartLeft + rateMinutes*chartBarW + 8, Height: chartBottom + 20,
		PlotTop: chartTop, PlotBottom: chartBottom, PlotLeft: chartLeft,
	}
	for _, s := range chartStates {
		v.Legend = append(v.Legend, s.String())
	}
	minutes, err := p.rate.minutes(ctx, p.st, now)
	if err != nil {
		v.Err = p.failed("delivery rate", err)
		return v
	}
	var peak, ok int64
	totals := make([]int64, len(minutes))
	for i, m := range minutes {
		for j, n := range m {
			totals[i] += n
			if chartStates[j] == store.StateSuccess || chartStates[j] == store.StateEmpty {
				ok += n
			}
		}
		peak = max(peak, totals[i])
		v.Hour += totals[i]
	}
	if len(totals) >= 2 {
		v.LastMinute = totals[len(totals)-2]
	}
	if v.Hour > 0 {
		v.Success = strconv.FormatFloat(100*float64(ok)/float64(v.Hour), 'f', 1, 64) + "%"
	}
	v.YMax = niceCeil(peak)
	v.YMid = v.YMax / 2
	v.YMidY = chartBottom - int(int64(chartPlotH)*v.YMid/v.YMax)
	start := now.Truncate(time.Minute).Add(-(rateMinutes - 1) * time.Minute)
	for i, m := range minutes {
		minute := start.Add(time.Duration(i) * time.Minute)
		x := chartLeft + i*chartBarW + chartGap/2
		bar := rateBar{Minute: minute.UTC().Format(time.RFC3339), Total: totals[i]}
		title := []string{fmt.Sprintf("%s: %s attempt%s", minute.Format("15:04"), formatCount(totals[i]),
			map[bool]string{true: "", false: "s"}[totals[i] == 1])}
		y := chartBottom
		for j, n := range m {
			if n == 0 {
				continue
			}
			// Heights are rounded per segment's top edge, so stacks add up.
			top := chartBottom - int(int64(chartPlotH)*cumulative(m, j+1)/v.YMax)
			bar.Segs = append(bar.Segs, barSeg{
				State: chartStates[j].String(), Count: n, X: x, Y: top, W: chartBarW - chartGap, H: y - top,
			})
			title = append(title, formatCount(n)+" "+chartStates[j].String())
			y = top
		}
		bar.Title = strings.Join(title, "\n")
		v.Bars = append(v.Bars, bar)
	}
	for _, ago := range []int{59, 45, 30, 15, 0} {
		text := "now"
		if ago > 0 {
			text = fmt.Sprintf("−%d min", ago)
		}
		v.XLabels = append(v.XLabels, axisLabel{X: chartLeft + (rateMinutes-1-ago)*chartBarW + chartBarW/2, Text: text})
	}
	return v
}

func cumulative(m minuteCounts, upTo int) int64 {
	var n int64
	for _, c := range m[:upTo] {
		n += c
	}
	return n
}

// niceCeil rounds n up to 1, 2 or 5 times a power of ten (at least 2, so
// the mid gridline is a whole number).
func niceCeil(n int64) int64 {
	for step := int64(1); ; step *= 10 {
		for _, f := range []int64{2, 5, 10} {
			if n <= f*step {
				return f * step
			}
		}
	}
}

// Invariants.

type invariantsView struct {
	Err         string
	Checks      []checkView
	Violated    int
	LastRefresh time.Time
	Age         string
	Stale       bool
	Rows        []store.InvariantViolation
	Hidden      int
}

type checkView struct {
	Name        string
	Description string
	Violations  int64
}

// checkDescriptions says what each check catches, in the page's words.
var checkDescriptions = map[string]string{
	store.CheckStatsDrift:             "the WAL aggregate differs from the records",
	store.CheckReadyOnDeletedRepeater: "ready records of a deleted repeater",
	store.CheckStarvedReadyRecords:    "ready for over a day on a repeater free to send",
	store.CheckSuccessWithoutAttempt:  "Success without a Success attempt",
	store.CheckFailPastMaxAttempts:    "still ready after the last try",
	store.CheckDomainMismatch:         "record and repeater domains differ",
}

func (p *page) loadInvariants(ctx context.Context, now time.Time) invariantsView {
	var v invariantsView
	counts, err := p.st.InvariantCounts(ctx)
	if err != nil {
		v.Err = p.failed("invariants", err)
		return v
	}
	names := slices.Clone(store.InvariantChecks)
	for _, name := range slices.Sorted(maps.Keys(counts)) {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	for _, name := range names {
		c := checkView{Name: name, Description: checkDescriptions[name], Violations: counts[name]}
		if c.Violations > 0 {
			v.Violated++
		}
		v.Checks = append(v.Checks, c)
	}
	if v.LastRefresh, err = p.st.LastInvariantsRefresh(ctx); err != nil {
		v.Err = p.failed("invariants", err)
		return v
	}
	if v.LastRefresh.IsZero() {
		v.Stale = true
	} else {
		age := now.Sub(v.LastRefresh)
		v.Age, v.Stale = formatDuration(age), age > invariantsStaleAfter
	}
	if v.Violated > 0 {
		rows, err := p.st.InvariantRows(ctx)
		if err != nil {
			v.Err = p.failed("invariants", err)
			return v
		}
		slices.SortStableFunc(rows, func(a, b store.InvariantViolation) int { return cmp.Compare(b.Violations, a.Violations) })
		if len(rows) > pageMaxViolations {
			v.Hidden, rows = len(rows)-pageMaxViolations, rows[:pageMaxViolations]
		}
		v.Rows = rows
	}
	return v
}

// Repeaters in backoff.

type backoffView struct {
	Err   string
	Total int64
	Rows  []backoffRow
}

type backoffRow struct {
	store.BackoffRepeater
	In      string // until the next attempt
	Message string // the last attempt's, shortened
}

func (p *page) loadBackoff(ctx context.Context, now time.Time) backoffView {
	var v backoffView
	reps, err := p.st.ListRepeatersInBackoff(ctx, store.RepeatersInBackoffParams{Now: now, Limit: pageMaxBackoff})
	if err != nil {
		v.Err = p.failed("backoff", err)
		return v
	}
	if v.Total, err = p.st.RepeatersInBackoff(ctx); err != nil {
		v.Err = p.failed("backoff", err)
		return v
	}
	v.Total = max(v.Total, int64(len(reps))) // the two read different instants
	for _, r := range reps {
		row := backoffRow{BackoffRepeater: r, In: formatDuration(r.NextAttemptAt.Sub(now))}
		if r.LastAttempt != nil {
			row.Message = shorten(r.LastAttempt.Message, pageMaxMessage)
		}
		v.Rows = append(v.Rows, row)
	}
	return v
}

// Domain flags.

type flagsView struct {
	Err     string
	Flag    string
	Default bool
	Rows    []flagRow
	Hidden  int
}

type flagRow struct {
	Domain   string
	Enabled  bool
	Explicit bool
	SetAgo   string
	Action   string // the switch's form action
}

func (p *page) loadFlags(ctx context.Context, now time.Time) flagsView {
	v := flagsView{Flag: store.FlagProcessRepeaters, Default: p.st.ProcessRepeatersDefault()}
	domains, err := p.st.Domains(ctx)
	if err != nil {
		v.Err = p.failed("flags", err)
		return v
	}
	set, err := p.st.ListDomainFlags(ctx)
	if err != nil {
		v.Err = p.failed("flags", err)
		return v
	}
	explicit := map[string]store.DomainFlag{}
	for _, f := range set {
		if f.Flag == v.Flag {
			explicit[f.Domain] = f
			domains = append(domains, f.Domain)
		}
	}
	slices.Sort(domains)
	domains = slices.Compact(domains)
	if len(domains) > pageMaxDomains {
		v.Hidden, domains = len(domains)-pageMaxDomains, domains[:pageMaxDomains]
	}
	for _, d := range domains {
		row := flagRow{Domain: d, Enabled: v.Default, Action: flagAction(d, v.Flag)}
		if f, ok := explicit[d]; ok {
			row.Enabled, row.Explicit, row.SetAgo = f.Enabled, true, formatDuration(now.Sub(f.UpdatedAt))
		}
		v.Rows = append(v.Rows, row)
	}
	return v
}

// flagAction is the path the switch of domain's flag posts to.
func flagAction(domain, flag string) string {
	return "/ui/domains/" + url.PathEscape(domain) + "/flags/" + url.PathEscape(flag)
}

// maxFlagForm bounds the switch's form body (a token and a boolean).
const maxFlagForm = 8 << 10

// setFlag is the switch: POST /ui/domains/{domain}/flags/{flag} with the
// form fields enabled (true or false) and, when the page has a token,
// token. It redirects back to the page.
func (p *page) setFlag(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFlagForm)
	if err := r.ParseForm(); err != nil {
		p.writeError(w, http.StatusBadRequest, "The form could not be read.")
		return
	}
	if p.token != nil {
		sum := sha256.Sum256([]byte(r.PostForm.Get("token")))
		if subtle.ConstantTimeCompare(sum[:], p.token[:]) != 1 {
			p.writeError(w, http.StatusForbidden, "Wrong or missing API token: type the web role's "+
				"REPEATERD_API_TOKEN into the token field at the top of the dashboard, then switch again.")
			return
		}
	}
	domain, flag := r.PathValue("domain"), r.PathValue("flag")
	if err := validateFlagPath(domain, flag); err != nil {
		p.writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	enabled, err := strconv.ParseBool(r.PostForm.Get("enabled"))
	if err != nil {
		p.writeError(w, http.StatusBadRequest, "enabled must be true or false.")
		return
	}
	if err := p.st.SetDomainFlag(r.Context(), domain, flag, enabled); err != nil {
		if store.ErrorCode(err) == store.EINVALID {
			p.writeError(w, http.StatusUnprocessableEntity, err.Error())
			return
		}
		p.opts.Logger.Error("dashboard: set flag", "domain", domain, "flag", flag, "err", err)
		p.writeError(w, http.StatusInternalServerError, "The flag could not be saved; see the server log.")
		return
	}
	p.opts.Logger.Info("dashboard: flag set", "domain", domain, "flag", flag, "enabled", enabled,
		"remote", r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (p *page) writeError(w http.ResponseWriter, status int, message string) {
	p.render(w, status, "error", map[string]any{
		"Status": status, "StatusText": http.StatusText(status), "Message": message,
		"CSS": template.CSS(pageStyle),
	})
}

// Formatting.

// formatCount writes n with thousands separators: 1,234,567.
func formatCount(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// formatDuration writes d to the second, in at most two units: 42s, 3m20s,
// 2h5m, 3d4h. Negative durations are written as 0s.
func formatDuration(d time.Duration) string {
	d = max(d, 0).Round(time.Second)
	switch {
	case d < time.Second:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", d/time.Second)
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", d/time.Minute, d%time.Minute/time.Second)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", d/time.Hour, d%time.Hour/time.Minute)
	}
	return fmt.Sprintf("%dd%dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
}

// shorten cuts s to at most n bytes on a rune boundary, marking the cut.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
