package repeatertest

import (
	"net"
	"net/http"
	"sync"
	"time"

	"repeaterd/repeaters"
)

// Hostile endpoints, for the tests and the bench that check delivery
// against them: one that accepts a few requests per time window and refuses
// the rest, and one that never answers.

// Windowed answers like a rate-limited endpoint with fixed windows: the
// first PerWindow deliveries of each Window (windows aligned on the Unix
// epoch, so another process can tell them apart too) get 200, the rest 503.
// Use its Respond as a Config's Respond.
type Windowed struct {
	Window    time.Duration
	PerWindow int
	// Clock tells the window. Defaults to repeaters.SystemClock{}.
	Clock repeaters.Clock

	mu       sync.Mutex
	current  int64
	inWindow int
	accepted map[int64]int
	refused  map[int64]int
}

// WindowOf is the window index of at.
func WindowOf(at time.Time, window time.Duration) int64 { return at.UnixNano() / int64(window) }

// Respond answers one delivery.
func (w *Windowed) Respond(rw http.ResponseWriter, _ *http.Request) {
	clock := w.Clock
	if clock == nil {
		clock = repeaters.SystemClock{}
	}
	win := WindowOf(clock.Now(), w.Window)
	w.mu.Lock()
	if w.accepted == nil {
		w.accepted, w.refused = map[int64]int{}, map[int64]int{}
	}
	if win != w.current {
		w.current, w.inWindow = win, 0
	}
	ok := w.inWindow < w.PerWindow
	if ok {
		w.inWindow++
		w.accepted[win]++
	} else {
		w.refused[win]++
	}
	w.mu.Unlock()
	if ok {
		rw.WriteHeader(http.StatusOK)
		return
	}
	rw.WriteHeader(http.StatusServiceUnavailable)
}

// Counts returns how many deliveries the windows of [from, to) accepted
// and refused, and how many of those windows accepted at least one.
func (w *Windowed) Counts(from, to time.Time) (accepted, refused, windowsDelivered, windows int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	first, last := WindowOf(from, w.Window), WindowOf(to, w.Window)
	in := func(win int64) bool { return win >= first && win < last }
	for win, n := range w.accepted {
		if in(win) {
			accepted += n
			windowsDelivered++
		}
	}
	for win, n := range w.refused {
		if in(win) {
			refused += n
		}
	}
	return accepted, refused, windowsDelivered, int(last - first)
}

// BlackHole is an endpoint that accepts connections and never answers: a
// request to it lasts as long as its timeout.
type BlackHole struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	held  chan struct{} // gets a value per connection accepted
}

// NewBlackHole listens on a loopback port.
func NewBlackHole() (*BlackHole, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &BlackHole{ln: ln, held: make(chan struct{}, 1<<16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			select {
			case b.held <- struct{}{}:
			default:
			}
		}
	}()
	return b, nil
}

// URL returns the black hole's address for path.
func (b *BlackHole) URL(path string) string { return "http://" + b.ln.Addr().String() + path }

// Held returns how many connections it holds.
func (b *BlackHole) Held() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

// Accepted gets a value for each connection accepted, to wait on.
func (b *BlackHole) Accepted() <-chan struct{} { return b.held }

// Close stops listening and drops every connection held: their requests
// fail at once.
func (b *BlackHole) Close() error {
	err := b.ln.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		_ = c.Close()
	}
	b.conns = nil
	return err
}
