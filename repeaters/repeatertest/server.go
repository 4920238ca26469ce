package repeatertest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server is a Receiver listening on its own address.
type Server struct {
	*Receiver
	ln     net.Listener
	srv    *http.Server
	served chan error

	closeOnce sync.Once
	closeErr  error
}

// Listen serves rc on addr (host:port; port 0 picks one) until Close.
func Listen(addr string, rc *Receiver) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{Receiver: rc, ln: ln, served: make(chan error, 1),
		srv: &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second}}
	go func() { s.served <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address the server listens on, host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Port is the port the server listens on.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// URL returns the server's address for path ("/hook"), for a repeater.
func (s *Server) URL(path string) string { return "http://" + s.Addr() + path }

// Close stops listening and waits for the deliveries being answered, until
// ctx ends; then it drops their connections. A second Close returns the
// first one's error.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		err := s.srv.Shutdown(ctx)
		if err != nil {
			err = errors.Join(err, s.srv.Close())
		}
		if serr := <-s.served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		s.closeErr = err
	})
	return s.closeErr
}

// TB is the part of testing.TB that NewServer uses. It is spelled out so
// that the programs serving a receiver (the bench sink, the demo) need not
// link package testing.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// closeWait bounds how long a test's cleanup waits for deliveries still
// being answered.
const closeWait = 5 * time.Second

// NewServer starts a receiver on a loopback port for one test and closes it
// when the test ends.
func NewServer(t TB, cfg Config) *Server {
	t.Helper()
	rc, err := New(cfg)
	if err != nil {
		t.Fatalf("repeatertest: %v", err)
	}
	s, err := Listen("127.0.0.1:0", rc)
	if err != nil {
		t.Fatalf("repeatertest: listen: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), closeWait)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}
