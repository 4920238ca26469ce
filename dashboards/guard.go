package dashboards

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"repeaterd/dashboards/api"
	"repeaterd/dashboards/auth"
	"repeaterd/store"
)

// The web role's guards, in the order a request meets them:
//
//  1. securityHeaders: nosniff, no referrer, no framing, a CSP that loads
//     nothing; the console and asynqmon set their own CSP over it.
//  2. hostGuard: with no admin token, only loopback Host names (DNS
//     rebinding: a page whose name resolves to 127.0.0.1 still sends its own
//     name as Host). Health checks are exempt.
//  3. protect (/api/, /monitor/): cross-site requests refused, then the
//     credentials: the admin token, a domain token, the console's session
//     cookie, or, with no token configured, nothing. A refusal is answered
//     before any of the body is read, and closes the connection so the
//     server does not wait for a body it will not use.
//  4. metricsGuard (/metrics): per WebConfig.MetricsAuth.
//
// The console guards its own pages (login, session, CSRF), with the same
// auth.Sessions.

// hostGuard refuses, when no admin token is configured, any Host that is
// not a loopback name.
func (w *Web) hostGuard(next http.Handler) http.Handler {
	if w.admin.Configured() {
		return next
	}
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if !auth.LoopbackHost(r.Host) && r.URL.Path != "/healthz" && r.URL.Path != "/readyz" {
			w.refuse(rw, r, store.Errorf(api.CodeForbidden, "Host %q is not a loopback name: without REPEATERD_API_TOKEN "+
				"only localhost, 127.0.0.1 and [::1] are served", r.Host))
			return
		}
		next.ServeHTTP(rw, r)
	})
}

// baseCSP is the policy of every answer that is not a page: load nothing,
// be framed by nothing.
const baseCSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		h := rw.Header()
		h.Set("Content-Security-Policy", baseCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(rw, r)
	})
}

// protect lets through same-site requests with valid credentials, carrying
// their auth.Principal in the context; adminOnly refuses domain tokens.
func (w *Web) protect(adminOnly bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if auth.CrossSite(r) {
			w.refuse(rw, r, store.Errorf(api.CodeForbidden, "cross-site requests are refused"))
			return
		}
		p, err := w.authenticate(r)
		switch {
		case err != nil && store.ErrorCode(err) == api.CodeUnauthorized && w.loginFirst(r):
			http.Redirect(rw, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		case err != nil:
			w.refuse(rw, r, err)
			return
		case adminOnly && !p.IsAdmin():
			w.refuse(rw, r, store.Errorf(api.CodeForbidden, "this needs the admin token; a domain token reaches only /api/v1"))
			return
		}
		inner := r.WithContext(auth.WithPrincipal(r.Context(), p))
		next.ServeHTTP(rw, inner)
		// The API's own mux names the route on the request it serves; the
		// access log (observe) reads it from the outer one.
		r.Pattern = inner.Pattern
	})
}

// authenticate returns who r acts for: a bearer token (the admin's or a
// domain's; a wrong one is refused even when no token is configured), the
// console's session cookie, or, with no admin token configured, the admin.
func (w *Web) authenticate(r *http.Request) (auth.Principal, error) {
	unauthorized := store.Errorf(api.CodeUnauthorized, "a valid Authorization: Bearer token is required")
	if tok, presented := auth.Bearer(r); presented {
		if w.admin.Matches(tok) {
			return auth.Admin("token"), nil
		}
		t, err := w.st.APITokenByValue(r.Context(), tok)
		if store.ErrorCode(err) == store.ENOTFOUND {
			return auth.Principal{}, unauthorized
		}
		if err != nil {
			return auth.Principal{}, err
		}
		return auth.Principal{Domain: t.Domain, TokenID: t.ID, Via: "domain-token"}, nil
	}
	if w.sessions.Valid(r) {
		return auth.Admin("session"), nil
	}
	if !w.admin.Configured() {
		return auth.Admin("loopback"), nil
	}
	return auth.Principal{}, unauthorized
}

// loginFirst reports whether an unauthenticated r is a person's browser
// opening a page (asynqmon), who is better sent to the console's login form
// than shown a JSON 401.
func (w *Web) loginFirst(r *http.Request) bool {
	return w.page != nil && r.Method == http.MethodGet && r.Header.Get("Sec-Fetch-Mode") == "navigate"
}

// refuse answers a refused request with its JSON error. It sets
// Connection: close when the request declares a body: the server would
// otherwise read (up to 256 KiB of) it before answering, waiting as long as
// the client cares to stall.
func (w *Web) refuse(rw http.ResponseWriter, r *http.Request, err error) {
	if r.ContentLength != 0 {
		rw.Header().Set("Connection", "close")
	}
	if store.ErrorCode(err) == api.CodeUnauthorized {
		rw.Header().Set("WWW-Authenticate", `Bearer realm="repeaterd"`)
	}
	api.WriteError(rw, r, w.logger, err)
}

// metricsGuard applies WebConfig.MetricsAuth to /metrics.
func (w *Web) metricsGuard(next http.Handler) http.Handler {
	guarded := w.protect(true, next)
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		switch {
		case w.cfg.MetricsAuth == MetricsOpen,
			w.cfg.MetricsAuth == MetricsLoopback && fromLoopback(r) && auth.LoopbackHost(r.Host):
			next.ServeHTTP(rw, r)
		default:
			guarded.ServeHTTP(rw, r)
		}
	})
}

// fromLoopback reports whether r's peer is on this machine. Behind a
// reverse proxy on the same host every request is: such a deployment sets
// MetricsAuth to MetricsToken.
func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	addr, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return err == nil && addr.Unmap().IsLoopback()
}
