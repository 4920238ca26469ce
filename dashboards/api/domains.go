package api

import (
	"context"
	"net/http"
	"time"

	"repeaterd/store"
)

// flagView is one flag of one domain. Explicit is false when the domain has
// no row and follows the configured default (REPEATERD_PROCESS_REPEATERS_DEFAULT).
type flagView struct {
	Domain    string     `json:"domain"`
	Flag      string     `json:"flag"`
	Enabled   bool       `json:"enabled"`
	Explicit  bool       `json:"explicit"`
	UpdatedAt *time.Time `json:"updated_at"`
}

// domainFlags returns every known flag of domain, set or defaulted.
func (a *API) domainFlags(ctx context.Context, domain string) ([]flagView, error) {
	rows, err := a.st.ListDomainFlags(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]flagView, 0, len(store.KnownFlags))
	for _, flag := range store.KnownFlags {
		v := flagView{Domain: domain, Flag: flag}
		for _, row := range rows {
			if row.Domain == domain && row.Flag == flag {
				v.Enabled, v.Explicit, v.UpdatedAt = row.Enabled, true, &row.UpdatedAt
			}
		}
		if !v.Explicit {
			if v.Enabled, err = a.st.DomainFlagEnabled(ctx, domain, flag); err != nil {
				return nil, err
			}
		}
		out = append(out, v)
	}
	return out, nil
}

// listFlags is GET /api/v1/domains/{domain}/flags.
func (a *API) listFlags(w http.ResponseWriter, r *http.Request) error {
	domain := r.PathValue("domain")
	if err := store.ValidateDomain(domain); err != nil {
		return err
	}
	if _, err := scopedDomain(r, domain); err != nil {
		return err
	}
	flags, err := a.domainFlags(r.Context(), domain)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, map[string]any{"domain": domain, "flags": flags})
	return nil
}

// setFlag is PUT /api/v1/domains/{domain}/flags/{flag} {"enabled": bool}.
func (a *API) setFlag(w http.ResponseWriter, r *http.Request) error {
	domain, flag := r.PathValue("domain"), r.PathValue("flag")
	if err := store.ValidateDomainFlag(domain, flag); err != nil {
		return err
	}
	if _, err := scopedDomain(r, domain); err != nil {
		return err
	}
	var in struct {
		Enabled *bool `json:"enabled"`
	}
	if err := a.decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.Enabled == nil {
		return store.Errorf(store.EINVALID, "enabled is required (true or false)")
	}
	if err := a.st.SetDomainFlag(r.Context(), domain, flag, *in.Enabled); err != nil {
		return err
	}
	flags, err := a.domainFlags(r.Context(), domain)
	if err != nil {
		return err
	}
	for _, f := range flags {
		if f.Flag == flag {
			WriteJSON(w, http.StatusOK, f)
		}
	}
	return nil
}
