package console

import (
	"bytes"
	"net/http"

	"repeaterd/dashboards/auth"
	"repeaterd/store"
)

// Paths of the console besides / and StaticPrefix.
const (
	fragmentPath = "/ui/fragment"                           // GET: the refreshing part, for the script
	flagPattern  = "POST /ui/domains/{domain}/flags/{flag}" // form post: switch a flag, redirect to /
)

// contentSecurityPolicy allows the console's own script, style sheet and
// icon, fetches of the fragment and form posts to this origin, and nothing
// else: no inline script or style, so text that slipped past escaping could
// become neither. img-src also allows data: images, which a template may use
// without a request (the console has none today); frame-ancestors 'none'
// keeps the flag switch from being clickjacked.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Console is the web UI. It is an http.Handler for every path it serves.
type Console struct {
	st       *store.Store
	cfg      Config
	sessions *auth.Sessions
	rate     rateCache
	lastHour lastHourCache
	mux      *http.ServeMux
}

// New returns the console on st, for the web role's WithPage. It refuses a
// config with negative refresh intervals.
func New(st *store.Store, cfg Config) (*Console, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Console{st: st, cfg: cfg, sessions: auth.NewSessions(cfg.Token), mux: http.NewServeMux()}
	c.mux.HandleFunc("GET /{$}", c.requireSession(true, c.servePage))
	c.mux.HandleFunc("GET "+fragmentPath, c.requireSession(false, c.serveFragment))
	c.mux.HandleFunc("GET "+StaticPrefix+"{file}", serveStatic)
	c.mux.HandleFunc("GET "+loginPath, c.serveLogin)
	// A form post is what a cross-site page can forge; the browser's
	// Sec-Fetch-Site and Origin headers tell it apart, the session cookie is
	// SameSite=Strict, and the switch also checks the page's CSRF token.
	xorigin := http.NewCrossOriginProtection()
	c.mux.Handle("POST "+loginPath, xorigin.Handler(http.HandlerFunc(c.login)))
	c.mux.Handle("POST "+logoutPath, xorigin.Handler(http.HandlerFunc(c.logout)))
	c.mux.Handle(flagPattern, xorigin.Handler(c.requireSession(false, c.setFlag)))
	// The operator pages (repeaters.go, records.go, jobs.go, domains.go);
	// their forms are guarded as the switch is.
	c.mux.HandleFunc("GET "+repeatersPath, c.requireSession(true, c.serveRepeaters))
	c.mux.HandleFunc("GET "+repeatersPath+"/{id}", c.requireSession(true, c.serveRepeater))
	c.mux.Handle("POST "+repeatersPath+"/{id}/{action}", xorigin.Handler(c.requireSession(false, c.repeaterAction)))
	c.mux.Handle("POST "+repeatersPath+"/{id}/bulk", xorigin.Handler(c.requireSession(false, c.bulkAction)))
	c.mux.HandleFunc("GET "+recordsPath+"/{id}", c.requireSession(true, c.serveRecord))
	c.mux.HandleFunc("GET "+jobsPath+"/{id}", c.requireSession(true, c.serveJob))
	c.mux.HandleFunc("GET "+jobsPath+"/{id}/fragment", c.requireSession(false, c.serveJobFragment))
	c.mux.HandleFunc("GET "+domainsPath, c.requireSession(true, c.serveDomains))
	c.mux.HandleFunc("GET "+domainsPath+"/{domain}", c.requireSession(true, c.serveDomains))
	// Other paths get the mux's 404, and other methods its 405.
	return c, nil
}

// ServeHTTP serves the console's routes, every answer under the CSP.
// Pages are never cached (they show live data); static files set their own
// caching.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	c.mux.ServeHTTP(w, r)
}

func (c *Console) servePage(w http.ResponseWriter, r *http.Request) {
	dash := c.load(r.Context())
	var logout string
	if c.sessions.Required() {
		logout = logoutPath
	}
	c.render(w, http.StatusOK, "page", pageView{
		CSRF:            c.sessions.CSRFToken(r),
		LogoutURL:       logout,
		MonitorURL:      c.cfg.MonitorURL,
		FragmentURL:     fragmentPath,
		NoScriptRefresh: max(1, (dash.RefreshMS+999)/1000),
		Dash:            dash,
	})
}

func (c *Console) serveFragment(w http.ResponseWriter, r *http.Request) {
	c.render(w, http.StatusOK, "dash", c.load(r.Context()))
}

// writeError answers a refused request with a page saying why.
func (c *Console) writeError(w http.ResponseWriter, status int, message string) {
	c.render(w, status, "error", errorView{Status: status, StatusText: http.StatusText(status), Message: message})
}

func (c *Console) render(w http.ResponseWriter, status int, name string, data any) {
	// Rendered whole first, so a template error is a clean 500, not half a page.
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, name, data); err != nil {
		c.cfg.Logger.Error("console: render", "template", name, "err", err)
		http.Error(w, "the console could not be rendered; see the server log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}
