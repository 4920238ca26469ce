package dashboards

import (
	"context"
	"log/slog"
	"maps"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"repeaterd/dashboards/api"
	"repeaterd/store"
)

// RoleHealth answers, for each role a process runs, nil when it works or
// why it is degraded (walstats.Consumer.Health for the stats role).
type RoleHealth func() map[string]error

// Readiness states /readyz reports in "status".
const (
	ReadyOK          = "ok"          // Postgres and Redis answer, every role works
	ReadyDegraded    = "degraded"    // serving, but a role is degraded (its detail says why)
	ReadyUnavailable = "unavailable" // Postgres or Redis does not answer
)

// ReadyHandler serves /readyz: 200 while Postgres and Redis answer, 503
// when either does not. A degraded role (roles, when set) does not make the
// process unready, since its other roles serve on, but is named with its
// reason under "roles" and turns "status" to "degraded". The web role and
// the metrics server of processes without it both serve this.
func ReadyHandler(st *store.Store, rdb redis.UniversalClient, roles RoleHealth, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		body := map[string]any{"postgres": "ok", "redis": "ok", "status": ReadyOK, "secrets": SecretsStatus(st)}
		code := http.StatusOK
		if err := st.Ping(ctx); err != nil {
			logger.Warn("readyz: postgres", "err", err)
			body["postgres"], body["status"], code = ReadyUnavailable, ReadyUnavailable, http.StatusServiceUnavailable
		}
		if err := rdb.Ping(ctx).Err(); err != nil {
			logger.Warn("readyz: redis", "err", err)
			body["redis"], body["status"], code = ReadyUnavailable, ReadyUnavailable, http.StatusServiceUnavailable
		}
		if roles != nil {
			detail := map[string]string{}
			for role, err := range maps.All(roles()) {
				detail[role] = "ok"
				if err != nil {
					detail[role] = "degraded: " + err.Error()
					if code == http.StatusOK {
						body["status"] = ReadyDegraded
					}
				}
			}
			body["roles"] = detail
		}
		api.WriteJSON(rw, code, body)
	})
}
