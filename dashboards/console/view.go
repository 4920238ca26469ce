package console

import (
	"time"

	"repeaterd/store"
)

// The view model: what the templates in assets/templates render. Stable
// ids and data-* attributes in the templates carry these values for the
// script and the tests.

// pageView is the whole page ("page" template).
type pageView struct {
	// CSRF is the token the flag switches' form sends back (flags.go).
	CSRF string
	// LogoutURL is where the logout button posts, "" with no login.
	LogoutURL   string
	MonitorURL  string
	FragmentURL string
	// NoScriptRefresh is the seconds between reloads without JavaScript.
	NoScriptRefresh int64
	Dash            *dashView
}

// dashView is the part the script re-fetches ("dash" template).
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

// loginView is the login form ("login" template).
type loginView struct {
	Action string
	Next   string
	Error  string
}

// errorView is a refused request ("error" template).
type errorView struct {
	Status     int
	StatusText string
	Message    string
}

// Record counts.

type countsView struct {
	Err  string
	Live bool
	// LiveReason says why the counts are live (store.RecordCounts).
	LiveReason string
	States     []string
	Rows       []countsRow
	Totals     []stateCount
	Total      int64
	Hidden     int // domains beyond maxDomains
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

// Delivery rate.

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
