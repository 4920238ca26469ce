package dashboards

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"repeaterd/dashboards/api"
	"repeaterd/dashboards/auth"
	"repeaterd/repeaters/lifecycle"
	"repeaterd/store"
)

// Web role defaults.
const (
	DefaultWebAddr         = "127.0.0.1:8080"
	DefaultShutdownTimeout = 10 * time.Second
)

// MonitorPath is where asynqmon is mounted.
const MonitorPath = "/monitor"

// WebConfig configures the web role: the JSON API, /healthz, /readyz,
// /metrics, asynqmon at /monitor/ and the console page at /.
type WebConfig struct {
	// Addr is the listen address. Anything but a loopback address needs an
	// APIToken. Defaults to DefaultWebAddr.
	Addr string
	// APIToken, when set, is the admin token: /api/, /monitor/ and the
	// console need it (as "Authorization: Bearer <token>", or the console's
	// session cookie that logging in with it sets), or, for /api/, a domain
	// token (store.CreateAPIToken) that sees one domain. /healthz and
	// /readyz stay open; /metrics follows MetricsAuth. Defaults to none,
	// which is only allowed on a loopback address: every loopback request
	// then acts as the admin, and only loopback Host names are served.
	APIToken string
	// MetricsAuth says who may read /metrics: MetricsLoopback (requests
	// from this machine to a loopback Host name read it freely, others need
	// the admin token), MetricsToken (always the admin token) or MetricsOpen
	// (anyone: the metrics carry no tenant's data). Defaults to
	// MetricsLoopback.
	MetricsAuth string
	// API configures the JSON API under /api/v1/; its Logger defaults to the
	// Web's (WithLogger). Defaults to api.Config's defaults.
	API api.Config
	// ReadOnlyMonitor limits asynqmon to viewing: it can otherwise delete,
	// run and archive tasks, which bypasses the dispatcher's bookkeeping.
	// nil means true. Defaults to true.
	ReadOnlyMonitor *bool
	// ShutdownTimeout bounds how long Stop waits for in-flight requests.
	// Defaults to DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
}

// MetricsAuth values.
const (
	MetricsLoopback = "loopback"
	MetricsToken    = "token"
	MetricsOpen     = "open"
)

// WithDefaults returns c with its zero fields set to their defaults (the
// API's are api.Config's own, filled by api.New).
func (c WebConfig) WithDefaults() WebConfig {
	readOnly := true
	c.Addr = cmp.Or(c.Addr, DefaultWebAddr)
	c.MetricsAuth = cmp.Or(c.MetricsAuth, MetricsLoopback)
	c.ReadOnlyMonitor = cmp.Or(c.ReadOnlyMonitor, &readOnly)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, DefaultShutdownTimeout)
	return c
}

// validate refuses an open API: without a token anyone who can reach the
// port could create repeaters pointing anywhere.
func (c WebConfig) validate() error {
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("bad listen address %q: %v", c.Addr, err)
	}
	if c.APIToken == "" && !auth.LoopbackHost(host) {
		return fmt.Errorf("refusing to listen on %s without REPEATERD_API_TOKEN; set it or listen on 127.0.0.1", c.Addr)
	}
	switch c.MetricsAuth {
	case MetricsLoopback, MetricsToken, MetricsOpen:
	default:
		return fmt.Errorf("web: metrics auth %q is not %s, %s or %s", c.MetricsAuth, MetricsLoopback, MetricsToken, MetricsOpen)
	}
	if c.ShutdownTimeout < 0 {
		return errors.New("web: ShutdownTimeout must not be negative")
	}
	return nil
}

// WebOption adjusts a Web beyond its config: the handlers other parts of
// the system provide.
type WebOption func(*Web)

// WithMetricsHandler serves h at /metrics (the process's registry, see
// metrics.NewRegistry and metrics.Handler). Defaults to promhttp.Handler().
func WithMetricsHandler(h http.Handler) WebOption { return func(w *Web) { w.SetMetricsHandler(h) } }

// WithPage serves h, the console, at / and every path no other route
// claims. Defaults to none: a Web without a page answers 404 there.
func WithPage(h http.Handler) WebOption { return func(w *Web) { w.page = h } }

// WithLogger logs through l. Defaults to slog.Default().
func WithLogger(l *slog.Logger) WebOption { return func(w *Web) { w.logger = l } }

// WithMonitorRedis gives asynqmon its Redis connection: repeaterd passes the
// engine's parsed REDIS_URL (tasks.RedisOptions), whatever the deployment.
// Defaults to one derived from the Web's client (a single-server
// *redis.Client or a *redis.ClusterClient; a Sentinel client is refused, as
// its options do not say where the master is).
func WithMonitorRedis(opt asynq.RedisConnOpt) WebOption { return func(w *Web) { w.monitorOpt = opt } }

// Web is the web role. It is a lifecycle.Service.
type Web struct {
	cfg        WebConfig
	st         *store.Store
	rdb        redis.UniversalClient
	admin      auth.Token
	sessions   *auth.Sessions
	logger     *slog.Logger
	metrics    atomic.Pointer[http.Handler]
	page       http.Handler
	api        *api.API
	monitorOpt asynq.RedisConnOpt
	monitor    *asynqmon.HTTPHandler
	monitorCSP string
	handler    http.Handler
	roles      atomic.Pointer[RoleHealth]

	life lifecycle.Base
	mu   sync.Mutex // guards ln
	ln   net.Listener
}

// NewWeb builds the web role. It refuses a config that would expose the API
// beyond loopback without a token.
func NewWeb(cfg WebConfig, st *store.Store, rdb redis.UniversalClient, opts ...WebOption) (*Web, error) {
	w := &Web{cfg: cfg.WithDefaults(), st: st, rdb: rdb, admin: auth.NewToken(cfg.APIToken)}
	w.sessions = auth.NewSessions(w.admin)
	if err := w.cfg.validate(); err != nil {
		return nil, err
	}
	for _, o := range opts {
		o(w)
	}
	w.logger = cmp.Or(w.logger, slog.Default())
	if w.metrics.Load() == nil {
		w.SetMetricsHandler(promhttp.Handler())
	}
	apiCfg := w.cfg.API
	apiCfg.Logger = cmp.Or(apiCfg.Logger, w.logger)
	var err error
	if w.api, err = api.New(apiCfg, st); err != nil {
		return nil, err
	}
	if w.monitorOpt == nil {
		opt, err := monitorConnOpt(rdb)
		if err != nil {
			return nil, err
		}
		w.monitorOpt = opt
	}
	w.monitor = asynqmon.New(asynqmon.Options{
		RootPath: MonitorPath, RedisConnOpt: w.monitorOpt, ReadOnly: *w.cfg.ReadOnlyMonitor,
	})
	if w.monitorCSP, err = monitorPolicy(w.monitor); err != nil {
		return nil, err
	}
	w.handler = w.routes()
	return w, nil
}

// monitorConnOpt turns the shared client's options into asynqmon's: asynqmon
// opens (and closes) its own connections, so it cannot take the client.
func monitorConnOpt(rdb redis.UniversalClient) (asynq.RedisConnOpt, error) {
	switch c := rdb.(type) {
	case *redis.Client:
		o := c.Options()
		if o.Addr == "FailoverClient" { // go-redis's mark of a Sentinel client
			break
		}
		return asynq.RedisClientOpt{
			Network: o.Network, Addr: o.Addr, Username: o.Username, Password: o.Password, DB: o.DB,
			DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
			PoolSize: 4, TLSConfig: o.TLSConfig,
		}, nil
	case *redis.ClusterClient:
		o := c.Options()
		return asynq.RedisClusterClientOpt{
			Addrs: o.Addrs, MaxRedirects: o.MaxRedirects, Username: o.Username, Password: o.Password,
			DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
			TLSConfig: o.TLSConfig,
		}, nil
	}
	return nil, fmt.Errorf("web: cannot derive asynqmon's Redis connection from a %T; use WithMonitorRedis", rdb)
}

// SetMetricsHandler serves h at /metrics from now on. It is for a registry
// that can only be built once every role exists (their collectors), after
// NewWeb; WithMetricsHandler is the same at construction.
func (w *Web) SetMetricsHandler(h http.Handler) { w.metrics.Store(&h) }

// Handler returns every route, behind auth where it applies, for tests and
// for embedding in another server.
func (w *Web) Handler() http.Handler { return w.handler }

func (w *Web) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		api.WriteJSON(rw, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", w.readyz)
	mux.Handle("GET /metrics", w.metricsGuard(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		(*w.metrics.Load()).ServeHTTP(rw, r)
	})))
	mux.Handle(MonitorPath+"/", w.protect(true, w.monitorHeaders(w.monitor)))
	mux.Handle("GET /api/v1/openapi.json", w.api) // public: the API's description, no tenant's data
	mux.Handle("/api/", w.protect(false, w.api))
	mux.Handle("/", cmp.Or(w.page, http.NotFoundHandler()))
	return w.observe(securityHeaders(w.hostGuard(mux)))
}

// SetRoleHealth has /readyz report the process's roles (ReadyHandler); set
// once every role exists, like SetMetricsHandler.
func (w *Web) SetRoleHealth(h RoleHealth) { w.roles.Store(&h) }

// readyz says whether this process can serve (ReadyHandler), with the
// detail of its roles once SetRoleHealth has named them.
func (w *Web) readyz(rw http.ResponseWriter, r *http.Request) {
	var roles RoleHealth
	if h := w.roles.Load(); h != nil {
		roles = *h
	}
	ReadyHandler(w.st, w.rdb, roles, w.logger).ServeHTTP(rw, r)
}

// SecretsStatus says how st keeps secrets at rest, for /readyz and the
// start-up log.
func SecretsStatus(st *store.Store) string {
	if !st.SecretsEncrypted() {
		return "NOT ENCRYPTED: REPEATERD_SECRET_KEY is not set, so signing secrets and header values are stored in plaintext"
	}
	return "encrypted (AES-256-GCM, key " + st.SecretKeyID() + ")"
}

// Start listens on cfg.Addr and serves until Stop.
func (w *Web) Start(ctx context.Context) error {
	return w.life.Start(ctx, func(ctx context.Context) error {
		ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", w.cfg.Addr)
		if err != nil {
			return fmt.Errorf("web: %w", err)
		}
		srv := &http.Server{
			Handler:           w.handler,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       time.Minute,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(w.logger.Handler(), slog.LevelWarn),
		}
		w.mu.Lock()
		w.ln = ln
		w.mu.Unlock()
		w.life.Go(func() {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				w.logger.Error("web: serve", "err", err)
			}
		})
		w.life.Go(func() { <-ctx.Done(); w.shutdown(srv) })
		w.logger.Info("web listening", "addr", ln.Addr().String(), "auth", w.cfg.APIToken != "",
			"metrics_auth", w.cfg.MetricsAuth)
		return nil
	})
}

// shutdown lets in-flight requests finish (up to ShutdownTimeout), then
// closes the connections left and asynqmon's Redis connections.
func (w *Web) shutdown(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		w.logger.Warn("web: shutdown timed out; closing connections", "err", err)
		_ = srv.Close()
	}
	if err := w.monitor.Close(); err != nil {
		w.logger.Warn("web: close asynqmon", "err", err)
	}
}

// Addr returns the address the server listens on, "" before Start. With
// Addr "127.0.0.1:0" it names the port the system picked.
func (w *Web) Addr() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ln == nil {
		return ""
	}
	return w.ln.Addr().String()
}

// Stop lets in-flight requests finish (up to ShutdownTimeout, or until ctx
// ends), then closes the listener and asynqmon's Redis connections.
func (w *Web) Stop(ctx context.Context) error {
	return w.life.Stop(ctx, nil)
}
