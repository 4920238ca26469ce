// Package api is the REST API under /api/v1/: the product's write path
// (repeaters, records, fan-out events, domain flags) and its JSON reads
// (stats, invariants).
//
// Every error is {"error":{"code":"...","message":"..."}}, its status given
// by the code (statusByCode, the one table); internal errors are logged, not
// sent. Field rules of a repeater are the store's (store.Repeater); the API
// adds what only a caller facing the outside checks: the SSRF policy on
// target URLs (repeaters.ValidateURL) and the headers only the sender sets
// (repeaters.IsReservedHeader). The web role (dashboards.Web) mounts the API
// behind its credential check, which says who the request acts for
// (auth.Principal): the admin sees every domain, a domain token only its
// own, and anything of another domain is a 404, as if it did not exist
// (scope.go). Writes must be application/json (requireJSON).
package api

import (
	"cmp"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"

	"repeaterd/repeaters"
	"repeaterd/store"
)

// DefaultMaxPayloadBytes is the default largest payload of a record.
const DefaultMaxPayloadBytes = 1 << 20

// Config configures the API.
type Config struct {
	// MaxPayloadBytes is the largest payload a record may carry (after
	// base64 decoding); larger ones get 413. Defaults to
	// DefaultMaxPayloadBytes (1 MiB).
	MaxPayloadBytes int64
	// AllowPrivateTargets lets repeater URLs name loopback and private
	// addresses. Defaults to false.
	AllowPrivateTargets bool
	// Jobs queues the tasks of bulk jobs (POST /records/requeue and
	// /records/cancel); tasks.Client is one. Defaults to none: those routes
	// answer 503.
	Jobs JobQueue
	// Logger logs internal errors (their details are not sent). Defaults to
	// slog.Default().
	Logger *slog.Logger
	// Sender sends test requests (POST /repeaters/{id}/test). Defaults to
	// a sender of its own with AllowPrivateTargets.
	Sender *repeaters.Sender
}

// WithDefaults returns c with its zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.MaxPayloadBytes = cmp.Or(c.MaxPayloadBytes, DefaultMaxPayloadBytes)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	if c.Sender == nil {
		c.Sender = repeaters.NewSender(repeaters.SenderConfig{AllowPrivateTargets: c.AllowPrivateTargets})
	}
	return c
}

func (c Config) validate() error {
	if c.MaxPayloadBytes < 0 {
		return errors.New("api: MaxPayloadBytes must not be negative")
	}
	return nil
}

// API serves /api/v1/. It is an http.Handler; a panic in a route is
// answered as a logged 500.
type API struct {
	cfg     Config
	st      *store.Store
	mux     *http.ServeMux
	handler http.Handler
	served  []string // "METHOD /path" of every route, for Routes
}

// handler is a route's handler; a returned error is written by its code.
type handler func(w http.ResponseWriter, r *http.Request) error

// New returns the API over st.
func New(cfg Config, st *store.Store) (*API, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	a := &API{cfg: cfg, st: st, mux: http.NewServeMux()}
	a.routes()
	a.handler = recoverJSON(cfg.Logger, a.requireJSON(a.mux))
	return a, nil
}

// requireJSON refuses a write (POST, PUT, PATCH, DELETE) that is not
// declared application/json, with or without a body: a page of another
// site can send text/plain or a form without asking, but never JSON (that
// needs a CORS preflight, which this API does not answer), so this is the
// API's CSRF defence where the browser's own headers are missing.
func (a *API) requireJSON(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
				w.Header().Set("Connection", "close") // the body is not read
				a.writeError(w, r, store.Errorf(codeMediaType,
					"%s needs Content-Type: application/json (even without a body)", r.Method))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.handler.ServeHTTP(w, r) }

func (a *API) routes() {
	a.route("/api/v1/repeaters", map[string]handler{"GET": a.listRepeaters, "POST": a.createRepeater})
	a.route("/api/v1/repeaters/{id}", map[string]handler{
		"GET": a.getRepeater, "PATCH": a.patchRepeater, "DELETE": a.deleteRepeater,
	})
	a.route("/api/v1/repeaters/{id}/pause", map[string]handler{"POST": a.pauseRepeater(true)})
	a.route("/api/v1/repeaters/{id}/resume", map[string]handler{"POST": a.pauseRepeater(false)})
	a.route("/api/v1/repeaters/{id}/test", map[string]handler{"POST": a.testRepeater})
	a.route("/api/v1/repeaters/{id}/rotate-secret", map[string]handler{"POST": a.rotateSecret})
	a.route("/api/v1/connections", map[string]handler{"GET": a.listConnections, "POST": a.createConnection})
	a.route("/api/v1/connections/{id}", map[string]handler{"GET": a.getConnection, "PATCH": a.patchConnection, "DELETE": a.deleteConnection})
	a.route("/api/v1/records", map[string]handler{"GET": a.listRecords, "POST": a.createRecord})
	a.route("/api/v1/records:batch", map[string]handler{"POST": a.createRecords})
	a.route("/api/v1/records/{id}", map[string]handler{"GET": a.getRecord})
	a.route("/api/v1/records/{id}/requeue", map[string]handler{"POST": a.requeueRecord})
	a.route("/api/v1/records/{id}/cancel", map[string]handler{"POST": a.cancelRecord})
	a.route("/api/v1/domains/{domain}/events", map[string]handler{"POST": a.createEvent})
	a.route("/api/v1/domains/{domain}/flags", map[string]handler{"GET": a.listFlags})
	a.route("/api/v1/domains/{domain}/flags/{flag}", map[string]handler{"PUT": a.setFlag})
	a.route("/api/v1/stats", map[string]handler{"GET": a.stats})
	a.route("/api/v1/invariants", map[string]handler{"GET": adminOnly(a.invariants)})
	a.route("/api/v1/tokens", map[string]handler{"GET": adminOnly(a.listTokens), "POST": adminOnly(a.createToken)})
	a.route("/api/v1/tokens/{id}", map[string]handler{"DELETE": adminOnly(a.revokeToken)})
	a.route("/api/v1/openapi.json", map[string]handler{"GET": a.openAPI})
	a.route("/api/v1/repeaters/{id}/retry", map[string]handler{"POST": a.retryRepeater})
	a.postOnly("/api/v1/records/requeue", a.requeueRecords)
	a.postOnly("/api/v1/records/cancel", a.cancelRecords)
	a.route("/api/v1/jobs/{id}", map[string]handler{"GET": a.getJob})
	a.route("/api/v1/domains", map[string]handler{"GET": a.listDomains})
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.writeError(w, r, store.Errorf(store.ENOTFOUND, "no API route %s %s", r.Method, r.URL.Path))
	})
}

// route registers one handler per method on path, and a JSON 405 naming
// the allowed methods for any other (the mux's own 405 is plain text).
func (a *API) route(path string, handlers map[string]handler) {
	var allowed []string
	for method, h := range handlers {
		allowed = append(allowed, method)
		a.served = append(a.served, method+" "+path)
		a.mux.HandleFunc(method+" "+path, func(w http.ResponseWriter, r *http.Request) {
			if err := h(w, r); err != nil {
				a.writeError(w, r, err)
			}
		})
	}
	slices.Sort(allowed)
	allow := strings.Join(allowed, ", ")
	a.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		a.writeError(w, r, store.Errorf(codeMethodNotAllowed, "%s is not allowed here (allowed: %s)", r.Method, allow))
	})
}

// Routes lists every route served, as "METHOD /path" patterns (the
// OpenAPI test checks the document names exactly these).
func (a *API) Routes() []string { return slices.Sorted(slices.Values(a.served)) }

// postOnly registers a POST route on a path that /records/{id} also
// matches: a 405 route for other methods there would overlap GET
// /records/{id}, so other methods get that route's answer (a 400: the id
// is not a number).
func (a *API) postOnly(path string, h handler) {
	a.served = append(a.served, "POST "+path)
	a.mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			a.writeError(w, r, err)
		}
	})
}

func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	WriteError(w, r, a.cfg.Logger, err)
}
