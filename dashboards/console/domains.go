package console

import (
	"context"
	"net/http"
	"net/url"

	"repeaterd/store"
)

// The domain pages: every domain with its repeaters, flags and counts (GET
// /ui/domains), and one domain's repeaters (GET /ui/domains/{domain}).

const domainsPath = "/ui/domains"

func domainPath(domain string) string { return domainsPath + "/" + url.PathEscape(domain) }

// serveDomains is GET /ui/domains and GET /ui/domains/{domain}.
func (c *Console) serveDomains(w http.ResponseWriter, r *http.Request) {
	domain := r.PathValue("domain")
	title := "Domains"
	if domain != "" {
		if err := store.ValidateDomain(domain); err != nil {
			c.writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		title = "Domain " + domain
	}
	ctx, cancel := context.WithTimeout(r.Context(), loadTimeout)
	defer cancel()
	v := domainsView{Frame: c.frame(r, title), Domain: domain, States: stateNames()}
	sums, err := c.st.DomainSummaries(ctx, domain)
	if err != nil {
		v.Err = c.failed("domains", err)
	}
	if domain != "" && err == nil && len(sums) == 0 {
		c.writeError(w, http.StatusNotFound, "No such domain.")
		return
	}
	for _, d := range sums {
		row := domainRowView{Domain: d.Domain, URL: domainPath(d.Domain), Repeaters: d.Repeaters,
			RepeatersURL: repeatersPath + "?domain=" + url.QueryEscape(d.Domain), Live: d.Live}
		for _, s := range store.AllStates {
			row.Counts = append(row.Counts, stateCount{State: s.String(), Count: d.Counts[s]})
		}
		for _, f := range store.KnownFlags {
			row.Flags = append(row.Flags, flagRow{Domain: d.Domain, Enabled: d.Flags[f], Action: flagAction(d.Domain, f)})
		}
		v.Rows = append(v.Rows, row)
	}
	if domain != "" && err == nil {
		rows, err := c.st.ListRepeaterRows(ctx, store.ListRepeaterRowsParams{Domain: domain, Limit: pageRows})
		now := c.cfg.Clock.Now()
		if err == nil {
			err = c.lastHour.add(ctx, c.st, now, rows)
		}
		if err != nil {
			v.Err = c.failed("domains", err)
		}
		for i := range rows {
			v.Repeaters = append(v.Repeaters, c.repeaterRow(&rows[i], now))
		}
	}
	c.render(w, http.StatusOK, "domains", v)
}
