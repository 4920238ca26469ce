// Package repeatertest is the one test webhook receiver: a real HTTP
// endpoint that counts deliveries per webhook-id and per path, keeps their
// arrival times, watches how many are in flight at once per path, checks
// signatures, and lets a caller wait for an id or a count without polling.
// The tasks tests, the bench's sink process (`repeaterd bench-sink`) and
// `repeaterd run --demo` all deliver to it.
//
// Its control endpoints, under /_sink/, serve the same bookkeeping to
// another process (see Client).
package repeatertest

import (
	"cmp"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"repeaterd/repeaters"
)

// DefaultStatus is what the receiver answers unless told otherwise.
const DefaultStatus = http.StatusOK

// Config is how a Receiver answers and checks deliveries.
type Config struct {
	// Secret, when set, is the signing secret every delivery's signature is
	// verified against (repeaters.Verify); failures are counted, not
	// refused. Defaults to no check.
	Secret string
	// Status is answered to a delivery whose query does not say otherwise
	// (?status=CODE). Defaults to DefaultStatus.
	Status int
	// Delay is waited before answering, unless the query says otherwise
	// (?delay=DURATION). Defaults to none.
	Delay time.Duration
	// Respond, when set, answers every delivery in place of Status, Delay
	// and the query (?status=, ?delay=, ?refuse=1). The delivery is counted
	// before it is called and stays in flight until it returns. Defaults to
	// the answer the query asks for.
	Respond func(w http.ResponseWriter, r *http.Request)
	// Clock stamps arrivals. Defaults to repeaters.SystemClock{}.
	Clock repeaters.Clock
}

// WithDefaults returns c with its zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Status = cmp.Or(c.Status, DefaultStatus)
	if c.Clock == nil {
		c.Clock = repeaters.SystemClock{}
	}
	return c
}

func (c Config) validate() error {
	if c.Status < 100 || c.Status > 999 {
		return fmt.Errorf("repeatertest: status %d is not an HTTP status", c.Status)
	}
	if c.Delay < 0 {
		return fmt.Errorf("repeatertest: negative delay %s", c.Delay)
	}
	return nil
}

// Receiver is an http.Handler that answers webhook deliveries and keeps
// account of them. Use New; serve it with Listen or NewServer, or mount it.
type Receiver struct {
	cfg Config

	mu       sync.Mutex
	requests int
	noID     int
	repeats  int                 // requests repeating a webhook-id already seen
	badSigs  int                 // deliveries whose signature did not verify
	ids      map[string]*idCount // webhook-id → its deliveries
	byPath   map[string][]time.Time
	active   map[string]int // path → deliveries being answered
	peak     map[string]int // path → most deliveries answered at once
	inFlight map[string]int // webhook-id → its deliveries being answered
	overlaps int            // deliveries that arrived while their webhook-id was being answered
	// changed is closed, and replaced, on every arrival: waiters re-check
	// their condition then instead of polling.
	changed chan struct{}
}

type idCount struct {
	first time.Time
	n     int
}

// New returns a receiver answering as cfg says.
func New(cfg Config) (*Receiver, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Receiver{cfg: cfg}
	r.clear()
	return r, nil
}

func (rc *Receiver) clear() {
	rc.requests, rc.noID, rc.repeats, rc.badSigs, rc.overlaps = 0, 0, 0, 0, 0
	rc.ids = map[string]*idCount{}
	rc.byPath = map[string][]time.Time{}
	rc.active, rc.peak, rc.inFlight = map[string]int{}, map[string]int{}, map[string]int{}
	rc.changed = make(chan struct{})
}

// ServeHTTP counts a delivery and answers it; paths under /_sink/ are the
// control endpoints instead.
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, controlPrefix) {
		rc.serveControl(w, r)
		return
	}
	at := rc.cfg.Clock.Now()
	signed := true
	if rc.cfg.Secret != "" {
		body, _ := io.ReadAll(r.Body)
		unix, _ := strconv.ParseInt(r.Header.Get(repeaters.HeaderWebhookTimestamp), 10, 64)
		signed = repeaters.Verify(rc.cfg.Secret, r.Header.Get(repeaters.HeaderWebhookID), time.Unix(unix, 0), body,
			r.Header.Get(repeaters.HeaderWebhookSignature))
	} else {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	rc.arrive(r.Header.Get(repeaters.HeaderWebhookID), r.URL.Path, at, signed)
	defer rc.leave(r.Header.Get(repeaters.HeaderWebhookID), r.URL.Path)
	if rc.cfg.Respond != nil {
		rc.cfg.Respond(w, r)
		return
	}
	rc.answer(w, r)
}

// answer answers as the query asks: refuse=1 closes the connection without
// a word, status= and delay= override the configured ones.
func (rc *Receiver) answer(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("refuse") != "" {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
			}
		}
		return
	}
	delay, status := rc.cfg.Delay, rc.cfg.Status
	if v, err := time.ParseDuration(q.Get("delay")); err == nil {
		delay = v
	}
	if v, err := strconv.Atoi(q.Get("status")); err == nil {
		status = v
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
		}
	}
	w.WriteHeader(status)
}

// arrive notes one delivery and wakes whoever waits.
func (rc *Receiver) arrive(id, path string, at time.Time, signed bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests++
	rc.byPath[path] = append(rc.byPath[path], at)
	rc.active[path]++
	rc.peak[path] = max(rc.peak[path], rc.active[path])
	if !signed {
		rc.badSigs++
	}
	if id != "" {
		if rc.inFlight[id] > 0 {
			rc.overlaps++
		}
		rc.inFlight[id]++
	}
	switch c := rc.ids[id]; {
	case id == "":
		rc.noID++
	case c == nil:
		rc.ids[id] = &idCount{first: at, n: 1}
	default:
		c.n++
		rc.repeats++
	}
	close(rc.changed)
	rc.changed = make(chan struct{})
}

// leave notes that a delivery of id to path has been answered.
func (rc *Receiver) leave(id, path string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.active[path]--
	if rc.inFlight[id]--; rc.inFlight[id] <= 0 {
		delete(rc.inFlight, id)
	}
}

// Reset forgets every delivery.
func (rc *Receiver) Reset() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	close(rc.changed)
	active, inFlight := rc.active, rc.inFlight
	rc.clear()
	rc.active, rc.inFlight = active, inFlight // deliveries being answered still leave
}
