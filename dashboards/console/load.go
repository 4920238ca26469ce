package console

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"repeaterd/store"
)

// What the console asks the store for, turned into the view model. A
// section whose query fails says so (details go to the log, not to an
// unauthenticated page); the rest is still shown.

// Limits of what one page shows, so a deployment with thousands of domains
// still renders fast; the API lists everything.
const (
	maxDomains    = 200
	maxBackoff    = 50
	maxViolations = 20
	maxMessage    = 200 // bytes of an attempt message
	// invariantsStaleAfter matches the RepeaterdInvariantsStale alert.
	invariantsStaleAfter = 2 * time.Hour
	// loadTimeout bounds one render's queries.
	loadTimeout = 20 * time.Second
)

// load reads everything the page shows.
func (c *Console) load(ctx context.Context) *dashView {
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	now := c.cfg.Clock.Now()
	d := &dashView{Now: now, RenderedNS: now.UnixNano()}
	d.Counts = c.loadCounts(ctx)
	d.Rate = c.loadRate(ctx, now)
	d.Invariants = c.loadInvariants(ctx, now)
	d.Backoff = c.loadBackoff(ctx, now)
	d.Flags = c.loadFlags(ctx, now)
	refresh := c.cfg.Refresh
	if d.Counts.Live {
		refresh = max(c.cfg.LiveRefresh, refresh)
	}
	d.RefreshMS, d.Refresh = refresh.Milliseconds(), formatDuration(refresh)
	if refresh < time.Second {
		d.Refresh = refresh.String()
	}
	return d
}

// failed logs a section's error and returns what the page says instead.
func (c *Console) failed(section string, err error) string {
	level := slog.LevelError
	if errors.Is(err, context.Canceled) { // the viewer left
		level = slog.LevelDebug
	}
	c.cfg.Logger.Log(context.Background(), level, "console: load", "section", section, "err", err)
	return "Could not load this section; see the server log."
}

func stateNames() []string {
	names := make([]string, len(store.AllStates))
	for i, s := range store.AllStates {
		names[i] = s.String()
	}
	return names
}

func (c *Console) loadCounts(ctx context.Context) countsView {
	v := countsView{States: stateNames()}
	rc, err := c.st.RecordCounts(ctx, "")
	if err != nil {
		v.Err = c.failed("counts", err)
		return v
	}
	v.Live, v.LiveReason = rc.Live, rc.LiveReason
	stateIndex := make(map[store.State]int, len(store.AllStates))
	for i, s := range store.AllStates {
		stateIndex[s] = i
	}
	totals := make([]int64, len(store.AllStates))
	var rows []countsRow
	byDomain := map[string]int{}
	for _, sc := range rc.Counts {
		i, known := stateIndex[sc.State]
		if !known || sc.Count == 0 {
			continue
		}
		r, seen := byDomain[sc.Domain]
		if !seen {
			r = len(rows)
			byDomain[sc.Domain] = r
			rows = append(rows, countsRow{Domain: sc.Domain, Counts: make([]stateCount, len(store.AllStates))})
		}
		rows[r].Counts[i].Count += sc.Count
		rows[r].Total += sc.Count
		totals[i] += sc.Count
		v.Total += sc.Count
	}
	slices.SortFunc(rows, func(a, b countsRow) int { return strings.Compare(a.Domain, b.Domain) })
	if len(rows) > maxDomains {
		v.Hidden, rows = len(rows)-maxDomains, rows[:maxDomains]
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

func (c *Console) loadRate(ctx context.Context, now time.Time) rateView {
	minutes, err := c.rate.minutes(ctx, c.st, now)
	if err != nil {
		return rateView{Err: c.failed("delivery rate", err)}
	}
	return chart(minutes, now)
}

// checkDescriptions says what each check catches, in the console's words.
var checkDescriptions = map[string]string{
	store.CheckStatsDrift:             "the WAL aggregate differs from the records",
	store.CheckReadyOnDeletedRepeater: "ready records of a deleted repeater",
	store.CheckStarvedReadyRecords:    "ready for over a day on a repeater free to send",
	store.CheckSuccessWithoutAttempt:  "Success without a Success attempt",
	store.CheckFailPastMaxAttempts:    "still ready after the last try",
	store.CheckAttemptCountMismatch:   "attempt count differs from the attempts",
	store.CheckNegativeStatsCount:     "a WAL aggregate count below zero",
	store.CheckStalePendingBatch:      "a recorded batch nobody applied",
	store.CheckPendingWithAttempts:    "Pending records with attempts",
}

func (c *Console) loadInvariants(ctx context.Context, now time.Time) invariantsView {
	var v invariantsView
	counts, err := c.st.InvariantCounts(ctx)
	if err != nil {
		v.Err = c.failed("invariants", err)
		return v
	}
	names := slices.Clone(store.InvariantChecks)
	for _, name := range slices.Sorted(maps.Keys(counts)) {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	for _, name := range names {
		check := checkView{Name: name, Description: checkDescriptions[name], Violations: counts[name]}
		if check.Violations > 0 {
			v.Violated++
		}
		v.Checks = append(v.Checks, check)
	}
	if v.LastRefresh, err = c.st.LastInvariantsRefresh(ctx); err != nil {
		v.Err = c.failed("invariants", err)
		return v
	}
	if v.LastRefresh.IsZero() {
		v.Stale = true
	} else {
		age := now.Sub(v.LastRefresh)
		v.Age, v.Stale = formatDuration(age), age > invariantsStaleAfter
	}
	if v.Violated > 0 {
		rows, err := c.st.InvariantRows(ctx)
		if err != nil {
			v.Err = c.failed("invariants", err)
			return v
		}
		slices.SortStableFunc(rows, func(a, b store.InvariantViolation) int { return cmp.Compare(b.Violations, a.Violations) })
		if len(rows) > maxViolations {
			v.Hidden, rows = len(rows)-maxViolations, rows[:maxViolations]
		}
		v.Rows = rows
	}
	return v
}

func (c *Console) loadBackoff(ctx context.Context, now time.Time) backoffView {
	var v backoffView
	reps, err := c.st.ListRepeatersInBackoff(ctx, store.RepeatersInBackoffParams{Now: now, Limit: maxBackoff})
	if err != nil {
		v.Err = c.failed("backoff", err)
		return v
	}
	if v.Total, err = c.st.RepeatersInBackoff(ctx); err != nil {
		v.Err = c.failed("backoff", err)
		return v
	}
	v.Total = max(v.Total, int64(len(reps))) // the two read different instants
	for _, r := range reps {
		row := backoffRow{BackoffRepeater: r, In: formatDuration(r.NextAttemptAt.Sub(now))}
		if r.LastAttempt != nil {
			row.Message = store.Truncate(r.LastAttempt.Message, maxMessage, "…")
		}
		v.Rows = append(v.Rows, row)
	}
	return v
}

func (c *Console) loadFlags(ctx context.Context, now time.Time) flagsView {
	v := flagsView{Flag: store.FlagProcessRepeaters, Default: c.st.ProcessRepeatersDefault()}
	domains, err := c.st.Domains(ctx)
	if err != nil {
		v.Err = c.failed("flags", err)
		return v
	}
	set, err := c.st.ListDomainFlags(ctx)
	if err != nil {
		v.Err = c.failed("flags", err)
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
	if len(domains) > maxDomains {
		v.Hidden, domains = len(domains)-maxDomains, domains[:maxDomains]
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
