package dashboards

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// requestDuration is the web role's request metric. Its route label is the
// pattern that served the request ("GET /api/v1/records/{id}"), never the
// path, so ids and tenants do not become series.
var requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "repeaterd_http_request_duration_seconds",
	Help:    "Duration of the web role's HTTP requests, by route pattern, method and status code.",
	Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
}, []string{"route", "method", "code"})

// Collectors returns the web role's metrics, for the process's registry.
func (w *Web) Collectors() []prometheus.Collector { return []prometheus.Collector{requestDuration} }

// quietPaths are logged at DEBUG: probes and scrapes would drown the rest.
var quietPaths = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// observe wraps the web role's routes with the access log and the request
// metric. The log names the method, the path without its query string (a
// query may carry what should not be kept), the status, the size, the
// duration and the client; never a header, so no token reaches it.
func (w *Web) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		began := time.Now()
		rec := &statusRecorder{ResponseWriter: rw, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		took := time.Since(began)
		route := r.Pattern // set by the mux that served it (the API's own, under /api/)
		if route == "" {
			route = "unmatched"
		}
		requestDuration.WithLabelValues(route, r.Method, strconv.Itoa(rec.status)).Observe(took.Seconds())
		level := slog.LevelInfo
		if quietPaths[r.URL.Path] {
			level = slog.LevelDebug
		}
		w.logger.LogAttrs(r.Context(), level, "http request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("route", route),
			slog.Int("status", rec.status), slog.Int64("bytes", rec.bytes),
			slog.Duration("took", took), slog.String("remote", r.RemoteAddr))
	})
}

// statusRecorder remembers the status and counts the body of a response.
type statusRecorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wroteHeader {
		s.status, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	s.wroteHeader = true
	n, err := s.ResponseWriter.Write(p)
	s.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the writer's Flush and
// deadlines (asynqmon and the console stream through it).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush passes a flush through when the writer can.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
