package console

import (
	"net/http"
	"net/url"
	"strings"
)

// Paths of the login.
const (
	loginPath  = "/ui/login"  // GET: the form; POST: the token, which sets the session cookie
	logoutPath = "/ui/logout" // POST: ends the session
)

// maxLoginForm bounds the login form's body (a token and a path).
const maxLoginForm = 8 << 10

// requireSession lets a request through when no login is configured or it
// carries a live session; otherwise a page is sent to the login form (and
// back to where it was going after), and anything else gets a 401.
func (c *Console) requireSession(page bool, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !c.sessions.Required() || c.sessions.Valid(r) {
			next(w, r)
			return
		}
		if page {
			http.Redirect(w, r, loginPath+"?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		c.writeError(w, http.StatusUnauthorized, "Your session has ended: log in again.")
	}
}

// serveLogin is GET /ui/login: the form, or / when no login is needed or the
// session is live.
func (c *Console) serveLogin(w http.ResponseWriter, r *http.Request) {
	next := localPath(r.URL.Query().Get("next"))
	if !c.sessions.Required() || c.sessions.Valid(r) {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	c.render(w, http.StatusOK, "login", loginView{Action: loginPath, Next: next})
}

// login is POST /ui/login with the form fields token and next: the admin
// token sets the session cookie and goes on to next; anything else shows
// the form again with a 401. Only the admin token logs in: the console
// shows every domain.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginForm)
	if err := r.ParseForm(); err != nil {
		c.writeError(w, http.StatusBadRequest, "The form could not be read.")
		return
	}
	next := localPath(r.PostForm.Get("next"))
	if !c.sessions.Required() {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	if !c.sessions.Login(w, r, r.PostForm.Get("token")) {
		c.cfg.Logger.Warn("console: failed login", "remote", r.RemoteAddr)
		c.render(w, http.StatusUnauthorized, "login", loginView{Action: loginPath, Next: next,
			Error: "Wrong token: the console takes the admin token (REPEATERD_API_TOKEN)."})
		return
	}
	c.cfg.Logger.Info("console: login", "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout is POST /ui/logout: the cookie is deleted and the form shown.
func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	c.sessions.Logout(w, r)
	http.Redirect(w, r, loginPath, http.StatusSeeOther)
}

// localPath returns p if it is a path on this server, else "/": a login
// must not be a way to send someone to another site.
func localPath(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n\t") {
		return "/"
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return p
}
