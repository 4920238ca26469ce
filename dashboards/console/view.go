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

// The operator pages (repeaters.go, records.go, jobs.go, domains.go).

// Frame is what every operator page's header needs.
type Frame struct {
	Title      string
	CSRF       string
	LogoutURL  string
	MonitorURL string
	// Here is the page's own path, where its forms come back to.
	Here string
	// Fragment, when set, is the URL the script refreshes #dash from.
	Fragment string
}

type repeatersView struct {
	Frame
	Err     string
	Domain  string
	Domains []string
	Rows    []repeaterRowView
	NextURL string
}

type repeaterRowView struct {
	ID                           int64
	Name, Domain, URL, DomainURL string
	State, StateClass            string
	Until                        time.Time
	UntilIn                      string
	Pending, Fail                string
	Success, Failed, Rejected    int64
	Workers, MaxWorkers          int
	Paused, Deleted              bool
	LastError, LastState         string
	LastStatus                   int
	LastAt                       time.Time
	Actions                      []actionView
}

type actionView struct {
	Name, Label, URL string
}

type settingView struct {
	Name, Value string
}

type stateCountView struct {
	State, Count, URL string
}

type filterView struct {
	State, Key, After, Before string
}

type repeaterView struct {
	Frame
	Err        string
	Row        repeaterRowView
	Settings   []settingView
	Counts     []stateCountView
	Filter     filterView
	States     []string
	Records    []recordRowView
	NextURL    string
	Matching   string
	BulkAction string
}

type recordRowView struct {
	ID           int64
	URL          string
	State        string
	RegisteredAt time.Time
	Attempts     int
	MaxTries     int
	PayloadID    int64
	Key          string
	Requested    string
	Due          string
	Sending      bool
}

type recordView struct {
	Frame
	Err         string
	Row         recordRowView
	RepeaterID  int64
	RepeaterURL string
	Domain      string
	Payload     payloadView
	Attempts    []attemptView
}

type payloadView struct {
	ContentType string
	Size        string
	Body        string
	Formatted   string // "JSON", "XML" or "" (shown as stored)
	Truncated   bool
}

type attemptView struct {
	State    string
	Status   int
	Duration time.Duration
	Message  string
	At       time.Time
}

type jobPageView struct {
	Frame
	Job jobView
}

type jobView struct {
	ID                                 int64
	Action, State, Error               string
	Total, Processed, Changed, Skipped int64
	Percent                            int
	CreatedAt                          time.Time
	FinishedAt                         *time.Time
	Finished                           bool
	RefreshMS                          int
	RepeaterURL                        string
}

type domainsView struct {
	Frame
	Err       string
	Domain    string
	States    []string
	Rows      []domainRowView
	Repeaters []repeaterRowView
}

type domainRowView struct {
	Domain, URL, RepeatersURL string
	Repeaters                 int64
	Counts                    []stateCount
	Flags                     []flagRow
	Live                      bool
}

// repeaterRowsView is the "repeater-rows" template's argument: the rows
// and what their forms carry.
type repeaterRowsView struct {
	CSRF, Here string
	Rows       []repeaterRowView
}

func rowsOf(f Frame, rows []repeaterRowView) repeaterRowsView {
	return repeaterRowsView{CSRF: f.CSRF, Here: f.Here, Rows: rows}
}
