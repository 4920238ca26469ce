package console

import (
	"cmp"
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"repeaterd/repeaters"
	"repeaterd/store"
)

// The repeater pages: every repeater with its state, backlog, last hour and
// last error (GET /ui/repeaters), one repeater with its settings and records
// (GET /ui/repeaters/{id}), and the actions on one (POST
// /ui/repeaters/{id}/{action}). Every form carries the page's CSRF token.

// Paths of the repeater pages.
const (
	repeatersPath = "/ui/repeaters"
	pageRows      = 100 // repeaters per page
	recordRows    = 50  // records per page
	// matchCountCap is where the "all N matching" count stops on a page
	// when the WAL stats cannot give it exactly.
	matchCountCap = 10_000
)

// failedStates are what "requeue failed" takes: records that failed for
// good or are waiting out a retry.
var failedStates = []store.State{store.StateFail, store.StateCancelled, store.StatePayloadRejected}

func repeaterPath(id int64) string { return repeatersPath + "/" + strconv.FormatInt(id, 10) }

// repeaterState names a repeater's state as the pages show it, with its
// badge class.
func repeaterState(r *store.Repeater, now time.Time) (state, class string) {
	switch {
	case r.IsDeleted:
		return "deleted", "off"
	case r.IsPaused:
		return "paused", "off"
	case r.NextAttemptAt != nil && r.NextAttemptAt.After(now):
		return "backed off", "bad"
	}
	return "active", "ok"
}

// effectiveWorkers is the concurrency the repeater sends with now.
func effectiveWorkers(r *store.Repeater) int {
	if r.EffectiveWorkers > 0 {
		return min(r.EffectiveWorkers, r.Workers(0))
	}
	return r.Workers(0)
}

func formatBounded(c store.Count) string {
	if c.Exact {
		return formatCount(c.N)
	}
	return formatCount(c.N) + "+"
}

func (c *Console) frame(r *http.Request, title string) Frame {
	f := Frame{Title: title, CSRF: c.sessions.CSRFToken(r), MonitorURL: c.cfg.MonitorURL, Here: r.URL.RequestURI()}
	if c.sessions.Required() {
		f.LogoutURL = logoutPath
	}
	return f
}

// serveRepeaters is GET /ui/repeaters?domain=&after=.
func (c *Console) serveRepeaters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	domain := q.Get("domain")
	if domain != "" {
		if err := store.ValidateDomain(domain); err != nil {
			c.writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	after, ok := queryInt(q.Get("after"))
	if !ok {
		c.writeError(w, http.StatusBadRequest, "after must be a repeater id.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), loadTimeout)
	defer cancel()
	v := repeatersView{Frame: c.frame(r, "Repeaters"), Domain: domain}
	rows, err := c.st.ListRepeaterRows(ctx, store.ListRepeaterRowsParams{Domain: domain, AfterID: after, Limit: pageRows})
	now := c.cfg.Clock.Now()
	if err == nil {
		err = c.lastHour.add(ctx, c.st, now, rows)
	}
	if err != nil {
		v.Err = c.failed("repeaters", err)
	}
	for i := range rows {
		v.Rows = append(v.Rows, c.repeaterRow(&rows[i], now))
	}
	if len(rows) == pageRows {
		next := url.Values{"after": {strconv.FormatInt(rows[len(rows)-1].ID, 10)}}
		if domain != "" {
			next.Set("domain", domain)
		}
		v.NextURL = repeatersPath + "?" + next.Encode()
	}
	if v.Domains, err = c.st.Domains(ctx); err != nil {
		v.Err = c.failed("repeaters", err)
	}
	c.render(w, http.StatusOK, "repeaters", v)
}

func (c *Console) repeaterRow(row *store.RepeaterRow, now time.Time) repeaterRowView {
	v := repeaterRowView{
		ID: row.ID, Name: row.Name, Domain: row.Domain, URL: repeaterPath(row.ID), DomainURL: domainPath(row.Domain),
		Pending: formatBounded(row.Pending), Fail: formatBounded(row.Fail),
		Success: row.LastHour[store.StateSuccess] + row.LastHour[store.StateEmpty], Failed: row.LastHour[store.StateFail],
		Rejected: row.LastHour[store.StatePayloadRejected], Workers: effectiveWorkers(&row.Repeater),
		MaxWorkers: row.Workers(0), Paused: row.IsPaused, Deleted: row.IsDeleted,
	}
	v.State, v.StateClass = repeaterState(&row.Repeater, now)
	if v.State == "backed off" {
		v.Until, v.UntilIn = *row.NextAttemptAt, formatDuration(row.NextAttemptAt.Sub(now))
	}
	if a := row.LastError; a != nil {
		v.LastError = store.Truncate(a.Message, maxMessage, "…")
		v.LastStatus, v.LastState, v.LastAt = a.StatusCode, a.State.String(), a.CreatedAt
	}
	if !v.Deleted {
		v.Actions = repeaterActions(row.ID, v.State)
	}
	return v
}

// repeaterActions are the buttons a repeater in state gets.
func repeaterActions(id int64, state string) []actionView {
	base := repeaterPath(id) + "/"
	var out []actionView
	if state == "paused" {
		out = append(out, actionView{Name: "resume", Label: "Resume", URL: base + "resume"})
	} else {
		out = append(out, actionView{Name: "pause", Label: "Pause", URL: base + "pause"})
	}
	if state == "backed off" {
		out = append(out, actionView{Name: "retry", Label: "Retry now", URL: base + "retry"})
	}
	return append(out, actionView{Name: "requeue-failed", Label: "Requeue failed", URL: base + "requeue-failed"})
}

// serveRepeater is GET /ui/repeaters/{id} with the record filters state,
// key, after, before (UTC, "2006-01-02T15:04") and the cursor.
func (c *Console) serveRepeater(w http.ResponseWriter, r *http.Request) {
	id, ok := queryInt(r.PathValue("id"))
	if !ok || id == 0 {
		c.writeError(w, http.StatusNotFound, "No such repeater.")
		return
	}
	f, err := parseRecordFilter(r.URL.Query())
	if err != nil {
		c.writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), loadTimeout)
	defer cancel()
	rep, err := c.st.GetRepeater(ctx, id)
	if store.ErrorCode(err) == store.ENOTFOUND {
		c.writeError(w, http.StatusNotFound, "No such repeater.")
		return
	}
	if err != nil {
		c.writeError(w, http.StatusInternalServerError, c.failed("repeater", err))
		return
	}
	now := c.cfg.Clock.Now()
	v := repeaterView{Frame: c.frame(r, "Repeater "+cmp.Or(rep.Name, "#"+strconv.FormatInt(id, 10))),
		Row: c.repeaterRow(&store.RepeaterRow{Repeater: *rep}, now), Settings: settingsOf(rep), Filter: f.view,
		States: stateNames(), BulkAction: repeaterPath(id) + "/bulk"}
	v.Row.Actions = nil
	if !rep.IsDeleted {
		v.Row.Actions = repeaterActions(id, v.Row.State)
		if c.cfg.Prober != nil {
			v.Row.Actions = append(v.Row.Actions, actionView{Name: "test", Label: "Send test request", URL: repeaterPath(id) + "/test"})
		}
	}
	c.loadRecords(ctx, &v, id, f)
	c.render(w, http.StatusOK, "repeater", v)
}

// loadRecords fills the repeater page's counts and record page.
func (c *Console) loadRecords(ctx context.Context, v *repeaterView, id int64, f recordFilter) {
	counts, err := c.st.RepeaterCounts(ctx, []int64{id}, store.AllStates)
	if err != nil {
		v.Err = c.failed("records", err)
		return
	}
	for _, s := range store.AllStates {
		v.Counts = append(v.Counts, stateCountView{State: s.String(), Count: formatBounded(counts[id][s]),
			URL: repeaterPath(id) + "?state=" + s.String()})
	}
	p := f.page
	p.RepeaterID, p.Limit = id, recordRows
	recs, err := c.st.ListRecordPage(ctx, p)
	if err != nil {
		v.Err = c.failed("records", err)
		return
	}
	now := c.cfg.Clock.Now()
	for _, rec := range recs {
		v.Records = append(v.Records, recordRow(&rec, now))
	}
	if len(recs) == recordRows {
		next := f.query()
		next.Set("cursor", strconv.FormatInt(recs[len(recs)-1].ID, 10))
		v.NextURL = repeaterPath(id) + "?" + next.Encode()
	}
	bulk := f.bulk()
	bulk.RepeaterID = id
	n, exact, err := c.st.CountMatching(ctx, bulk, matchCountCap)
	if err != nil {
		v.Err = c.failed("records", err)
		return
	}
	v.Matching = formatBounded(store.Count{N: n, Exact: exact})
}

func recordRow(rec *store.RepeatRecord, now time.Time) recordRowView {
	v := recordRowView{ID: rec.ID, URL: recordPath(rec.ID), State: rec.State.String(), RegisteredAt: rec.RegisteredAt,
		Attempts: rec.AttemptCount, MaxTries: rec.MaxPossibleTries, PayloadID: rec.PayloadID}
	if rec.IdempotencyKey != nil {
		v.Key = *rec.IdempotencyKey
	}
	if rec.RequestedState != nil {
		v.Requested = rec.RequestedState.Request()
	}
	if rec.State.Ready() {
		v.Due = formatDuration(max(0, rec.NextCheck.Sub(now)))
		v.Sending = rec.Claimed(now)
	}
	return v
}

// settingsOf shows a repeater's settings without its secrets: header values
// and URL credentials are redacted, the signing secret only named.
func settingsOf(r *store.Repeater) []settingView {
	headers := slices.Sorted(func(yield func(string) bool) {
		for k := range r.Headers {
			if !yield(k) {
				return
			}
		}
	})
	for i, h := range headers {
		headers[i] = h + ": [redacted]"
	}
	codes := make([]string, len(r.BackoffCodes))
	for i, c := range r.BackoffCodes {
		codes[i] = strconv.Itoa(int(c))
	}
	secret := "none"
	if r.HasSecret() {
		secret = "set (not shown)"
	}
	rate := "unlimited"
	if r.RateLimitPerS > 0 {
		rate = strconv.FormatFloat(r.RateLimitPerS, 'g', -1, 64) + "/s, burst " + strconv.Itoa(r.RateBurst)
	}
	return []settingView{
		{"Domain", r.Domain}, {"URL", redactURL(r.URL)}, {"Method", r.RequestMethod},
		{"Headers", cmp.Or(strings.Join(headers, "; "), "none")}, {"Signing secret", secret},
		{"Max workers", strconv.Itoa(r.Workers(0))}, {"Rate limit", rate},
		{"Max attempts", strconv.Itoa(r.MaxAttempts)}, {"Timeout", (time.Duration(r.TimeoutMS) * time.Millisecond).String()},
		{"Extra backoff codes", cmp.Or(strings.Join(codes, ", "), "none")},
		{"Backoff count", strconv.Itoa(r.BackoffCount)},
	}
}

// redactURL hides a URL's user information (a credential).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "[unparsable URL]"
	}
	if u.User != nil {
		u.User = url.User("[redacted]")
	}
	return u.String()
}

// repeaterAction is POST /ui/repeaters/{id}/{action}: pause, resume,
// retry (ends the backoff now) or requeue-failed (a bulk job). It redirects
// to the form's next (a path on this server) or to the job's page.
func (c *Console) repeaterAction(w http.ResponseWriter, r *http.Request) {
	if !c.checkForm(w, r) {
		return
	}
	id, ok := queryInt(r.PathValue("id"))
	if !ok || id == 0 {
		c.writeError(w, http.StatusNotFound, "No such repeater.")
		return
	}
	ctx := r.Context()
	action := r.PathValue("action")
	var err error
	switch action {
	case "pause", "resume":
		err = c.st.SetPaused(ctx, id, action == "pause")
	case "retry":
		err = c.st.RetryNow(ctx, id)
	case "test":
		c.testRepeater(w, r, id)
		return
	case "requeue-failed":
		var job *store.BulkJob
		job, err = c.startJob(ctx, store.CreateBulkJobParams{Action: store.BulkRequeue,
			Filter: &store.BulkFilter{RepeaterID: id, States: failedStates}})
		if err == nil {
			c.cfg.Logger.Info("console: bulk job started", "job", job.ID, "repeater", id, "action", job.Action, "remote", r.RemoteAddr)
			http.Redirect(w, r, jobPath(job.ID), http.StatusSeeOther)
			return
		}
	default:
		c.writeError(w, http.StatusNotFound, "No such action.")
		return
	}
	if err != nil {
		c.writeStoreError(w, "repeater action", err)
		return
	}
	c.cfg.Logger.Info("console: repeater "+action, "repeater", id, "remote", r.RemoteAddr)
	http.Redirect(w, r, cmp.Or(localPathOrEmpty(r.PostForm.Get("next")), repeatersPath), http.StatusSeeOther)
}

// checkForm reads a bounded form and checks its CSRF token; false means
// the refusal is written.
func (c *Console) checkForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxActionForm)
	if err := r.ParseForm(); err != nil {
		c.writeError(w, http.StatusBadRequest, "The form could not be read.")
		return false
	}
	if !c.sessions.CheckCSRF(r, r.PostForm.Get("csrf")) {
		c.writeError(w, http.StatusForbidden, "This form did not come from the console's own page "+
			"(missing or stale CSRF token): reload the page and try again.")
		return false
	}
	return true
}

// maxActionForm bounds an action's form: a bulk form of a page's ids.
const maxActionForm = 64 << 10

// writeStoreError answers a failed store call by its code.
func (c *Console) writeStoreError(w http.ResponseWriter, what string, err error) {
	switch store.ErrorCode(err) {
	case store.ENOTFOUND:
		c.writeError(w, http.StatusNotFound, err.Error())
	case store.EINVALID:
		c.writeError(w, http.StatusUnprocessableEntity, err.Error())
	case store.ECONFLICT:
		c.writeError(w, http.StatusConflict, err.Error())
	default:
		c.cfg.Logger.Error("console: "+what, "err", err)
		c.writeError(w, http.StatusInternalServerError, "That did not work; see the server log.")
	}
}

// localPathOrEmpty is localPath, but "" for a path it would refuse.
func localPathOrEmpty(p string) string {
	if p == "" || localPath(p) != p {
		return ""
	}
	return p
}

func queryInt(s string) (int64, bool) {
	if s == "" {
		return 0, true
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}

// testRepeater answers the "Send test request" button: a signed test
// request through the sender every delivery uses, and a page saying what
// the endpoint answered. Nothing is written (no record, no attempt).
func (c *Console) testRepeater(w http.ResponseWriter, r *http.Request, id int64) {
	if c.cfg.Prober == nil {
		c.writeError(w, http.StatusNotFound, "No such action.")
		return
	}
	rep, err := c.st.GetRepeater(r.Context(), id)
	if err != nil {
		c.writeStoreError(w, "repeater test", err)
		return
	}
	if rep.IsDeleted {
		c.writeError(w, http.StatusConflict, "The repeater is deleted.")
		return
	}
	res := c.cfg.Prober.Probe(r.Context(), rep)
	c.cfg.Logger.Info("console: repeater tested", "repeater", id, "state", res.State, "status", res.StatusCode, "remote", r.RemoteAddr)
	c.render(w, http.StatusOK, "probe", probeView{Frame: c.frame(r, "Test request"), Repeater: rep, Result: res,
		Back: repeaterPath(id)})
}

// probeView is the test request's result page.
type probeView struct {
	Frame    Frame
	Repeater *store.Repeater
	Result   repeaters.ProbeResult
	Back     string
}
