package console

import (
	"net/http"
	"net/url"
	"strconv"

	"repeaterd/store"
)

// maxFlagForm bounds the switch's form body (a CSRF token and a boolean).
const maxFlagForm = 8 << 10

// flagAction is the path the switch of domain's flag posts to.
func flagAction(domain, flag string) string {
	return "/ui/domains/" + url.PathEscape(domain) + "/flags/" + url.PathEscape(flag)
}

// setFlag is the switch: POST /ui/domains/{domain}/flags/{flag} with the
// form fields enabled (true or false) and csrf, the page's CSRF token (the
// session is checked before, requireSession). It redirects back to the
// page.
func (c *Console) setFlag(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFlagForm)
	if err := r.ParseForm(); err != nil {
		c.writeError(w, http.StatusBadRequest, "The form could not be read.")
		return
	}
	if !c.sessions.CheckCSRF(r, r.PostForm.Get("csrf")) {
		c.writeError(w, http.StatusForbidden, "This switch did not come from the dashboard's own page "+
			"(missing or stale CSRF token): reload the dashboard and switch again.")
		return
	}
	domain, flag := r.PathValue("domain"), r.PathValue("flag")
	if err := store.ValidateDomainFlag(domain, flag); err != nil {
		c.writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	enabled, err := strconv.ParseBool(r.PostForm.Get("enabled"))
	if err != nil {
		c.writeError(w, http.StatusBadRequest, "enabled must be true or false.")
		return
	}
	if err := c.st.SetDomainFlag(r.Context(), domain, flag, enabled); err != nil {
		if store.ErrorCode(err) == store.EINVALID {
			c.writeError(w, http.StatusUnprocessableEntity, err.Error())
			return
		}
		c.cfg.Logger.Error("console: set flag", "domain", domain, "flag", flag, "err", err)
		c.writeError(w, http.StatusInternalServerError, "The flag could not be saved; see the server log.")
		return
	}
	c.cfg.Logger.Info("console: flag set", "domain", domain, "flag", flag, "enabled", enabled,
		"remote", r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
