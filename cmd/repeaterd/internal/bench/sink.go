package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// SinkConfig is how the sink answers by default. A request may override it
// with query parameters: status=CODE, delay=DURATION, refuse=1 (the
// connection is closed without an answer).
type SinkConfig struct {
	// Status answered. Defaults to 200.
	Status int
	// Delay before answering. Defaults to none.
	Delay time.Duration
}

// Sink is the benchmarks' HTTP receiver. It answers at once (or as
// configured) and keeps, per webhook-id, the first arrival time, so
// registration→delivery latency can be measured from outside the system
// under test. Its control endpoints live under /_sink/.
type Sink struct {
	cfg SinkConfig

	mu       sync.Mutex
	requests int64
	noID     int64
	dups     int64
	byPath   map[string]int64
	first    map[string]int64 // webhook-id → first arrival, Unix ns
	waiters  map[string][]chan struct{}
	now      func() time.Time
}

// NewSink returns a sink answering as cfg says.
func NewSink(cfg SinkConfig) *Sink {
	if cfg.Status == 0 {
		cfg.Status = http.StatusOK
	}
	return &Sink{cfg: cfg, byPath: map[string]int64{}, first: map[string]int64{},
		waiters: map[string][]chan struct{}{}, now: time.Now}
}

// SinkStats is the sink's bookkeeping.
type SinkStats struct {
	Requests   int64            `json:"requests"`
	Unique     int64            `json:"unique"`     // distinct webhook-ids
	Duplicates int64            `json:"duplicates"` // requests repeating a webhook-id already seen
	NoID       int64            `json:"no_id"`      // requests without a webhook-id
	ByPath     map[string]int64 `json:"by_path"`
}

// record notes one request's arrival and wakes whoever waits for its id.
func (s *Sink) record(id, path string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	s.byPath[path]++
	if id == "" {
		s.noID++
		return
	}
	if _, seen := s.first[id]; seen {
		s.dups++
		return
	}
	s.first[id] = at.UnixNano()
	for _, ch := range s.waiters[id] {
		close(ch)
	}
	delete(s.waiters, id)
}

// Stats returns a copy of the counters.
func (s *Sink) Stats() SinkStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	by := make(map[string]int64, len(s.byPath))
	for k, v := range s.byPath {
		by[k] = v
	}
	return SinkStats{Requests: s.requests, Unique: int64(len(s.first)), Duplicates: s.dups, NoID: s.noID, ByPath: by}
}

// Lookup returns the first arrival (Unix ns) of each id that has arrived.
func (s *Sink) Lookup(ids []string) map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(ids))
	for _, id := range ids {
		if at, ok := s.first[id]; ok {
			out[id] = at
		}
	}
	return out
}

// Wait blocks until id has arrived or ctx ends, and returns its first
// arrival (Unix ns).
func (s *Sink) Wait(ctx context.Context, id string) (int64, bool) {
	s.mu.Lock()
	if at, ok := s.first[id]; ok {
		s.mu.Unlock()
		return at, true
	}
	ch := make(chan struct{})
	s.waiters[id] = append(s.waiters[id], ch)
	s.mu.Unlock()
	select {
	case <-ch:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.first[id], true
	case <-ctx.Done():
		return 0, false // the waiter is dropped when the id arrives
	}
}

// Reset forgets everything.
func (s *Sink) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests, s.noID, s.dups = 0, 0, 0
	s.byPath = map[string]int64{}
	s.first = map[string]int64{}
}

// ServeHTTP answers deliveries and, under /_sink/, the control endpoints.
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.Path) >= 7 && r.URL.Path[:7] == "/_sink/" {
		s.serveControl(w, r)
		return
	}
	at := s.now()
	_, _ = io.Copy(io.Discard, r.Body)
	q := r.URL.Query()
	if q.Get("refuse") != "" {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
			}
		}
		s.record(r.Header.Get("webhook-id"), r.URL.Path, at)
		return
	}
	s.record(r.Header.Get("webhook-id"), r.URL.Path, at)
	delay, status := s.cfg.Delay, s.cfg.Status
	if v := q.Get("delay"); v != "" {
		delay, _ = time.ParseDuration(v)
	}
	if v := q.Get("status"); v != "" {
		status, _ = strconv.Atoi(v)
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	w.WriteHeader(status)
}

func (s *Sink) serveControl(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/_sink/stats":
		_ = json.NewEncoder(w).Encode(s.Stats())
	case "/_sink/lookup": // POST ["msg_1", ...] → {"msg_1": ns, ...}
		var ids []string
		if err := json.NewDecoder(r.Body).Decode(&ids); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(s.Lookup(ids))
	case "/_sink/wait": // ?id=msg_1&timeout=10s → {"at": ns} or 504
		timeout, err := time.ParseDuration(r.URL.Query().Get("timeout"))
		if err != nil {
			timeout = 10 * time.Second
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		at, ok := s.Wait(ctx, r.URL.Query().Get("id"))
		if !ok {
			w.WriteHeader(http.StatusGatewayTimeout)
		}
		_ = json.NewEncoder(w).Encode(map[string]int64{"at": at})
	case "/_sink/reset":
		s.Reset()
		_ = json.NewEncoder(w).Encode(map[string]bool{"ok": true})
	default:
		http.NotFound(w, r)
	}
}

// SinkAnnouncement is the first line the sink process prints on stdout.
type SinkAnnouncement struct {
	Addr string `json:"addr"`
	PID  int    `json:"pid"`
}

// ServeSink listens on addr, prints a SinkAnnouncement line to announce and
// serves until ctx ends.
func ServeSink(ctx context.Context, addr string, cfg SinkConfig, pid int, announce io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: NewSink(cfg), ReadHeaderTimeout: 10 * time.Second}
	b, _ := json.Marshal(SinkAnnouncement{Addr: ln.Addr().String(), PID: pid})
	fmt.Fprintln(announce, string(b))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		return err
	}
}
