package api

import (
	"net/http"
	"time"

	"repeaterd/store"
)

// Stats sources: the WAL-maintained aggregate, or a live GROUP BY when no
// consumer feeds it.
const (
	statsSourceWAL  = "wal"
	statsSourceLive = "live"
)

// statsResponse is GET /api/v1/stats. Counts are keyed by state name; totals
// list every state, zeros included.
type statsResponse struct {
	Source  string           `json:"source"`
	Domain  string           `json:"domain,omitempty"`
	Totals  map[string]int64 `json:"totals"`
	Domains []domainStats    `json:"domains"`
}

type domainStats struct {
	Domain    string           `json:"domain"`
	Totals    map[string]int64 `json:"totals"`
	Repeaters []repeaterStats  `json:"repeaters"`
}

type repeaterStats struct {
	RepeaterID int64            `json:"repeater_id"`
	Counts     map[string]int64 `json:"counts"`
}

func zeroStateCounts() map[string]int64 {
	m := make(map[string]int64, len(store.AllStates))
	for _, s := range store.AllStates {
		m[s.String()] = 0
	}
	return m
}

// stats is GET /api/v1/stats?domain=: record counts by domain, repeater and
// state, from the WAL aggregate when the stats role feeds it, else counted
// live (exact but slow on a large table); "source" says which.
func (a *API) stats(w http.ResponseWriter, r *http.Request) error {
	domain, err := queryDomain(r)
	if err != nil {
		return err
	}
	if domain, err = scopedDomain(r, domain); err != nil {
		return err
	}
	rc, err := a.st.RecordCounts(r.Context(), domain)
	if err != nil {
		return err
	}
	resp := statsResponse{Source: statsSourceWAL, Domain: domain, Totals: zeroStateCounts(), Domains: []domainStats{}}
	if rc.Live {
		resp.Source = statsSourceLive
	}
	groupStats(&resp, rc.Counts)
	WriteJSON(w, http.StatusOK, resp)
	return nil
}

// groupStats nests counts, which come ordered by domain, repeater and state.
func groupStats(resp *statsResponse, counts []store.StatCount) {
	for _, c := range counts {
		if c.Count == 0 {
			continue
		}
		n := len(resp.Domains)
		if n == 0 || resp.Domains[n-1].Domain != c.Domain {
			resp.Domains = append(resp.Domains, domainStats{Domain: c.Domain, Totals: zeroStateCounts()})
			n++
		}
		d := &resp.Domains[n-1]
		m := len(d.Repeaters)
		if m == 0 || d.Repeaters[m-1].RepeaterID != c.RepeaterID {
			d.Repeaters = append(d.Repeaters, repeaterStats{RepeaterID: c.RepeaterID, Counts: map[string]int64{}})
			m++
		}
		state := c.State.String()
		d.Repeaters[m-1].Counts[state] += c.Count
		d.Totals[state] += c.Count
		resp.Totals[state] += c.Count
	}
}

// invariants is GET /api/v1/invariants: the violations as of the last
// refresh of the view (it is not recomputed per request: that reads every
// record), the total per check, and the refresh time (null if never).
func (a *API) invariants(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	rows, err := a.st.InvariantRows(ctx)
	if err != nil {
		return err
	}
	totals, err := a.st.InvariantCounts(ctx)
	if err != nil {
		return err
	}
	at, err := a.st.LastInvariantsRefresh(ctx)
	if err != nil {
		return err
	}
	var last *time.Time
	if !at.IsZero() {
		last = &at
	}
	if rows == nil {
		rows = []store.InvariantViolation{}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"last_refresh": last, "totals": totals, "violations": rows})
	return nil
}
