package chaostest

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"
)

// Proxy forwards TCP connections from its own address to a target: it
// stands between the system and Postgres or Redis, so a drill can cut the
// path, or make a service listening on loopback reachable from a network
// namespace. Cut drops every connection and refuses new ones for a while,
// as a restart does.
type Proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	downTo time.Time
}

// NewProxy listens on listen (host:port; port 0 picks one) and forwards to
// target until the test ends.
func NewProxy(t testing.TB, listen, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.Cut(0) })
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is raw with its host:port replaced by the proxy's.
func (p *Proxy) URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err) // the drills' own URLs
	}
	u.Host = p.Addr()
	return u.String()
}

// TargetOf is raw's host:port, a proxy's target.
func TargetOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	return u.Host
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := time.Now().Before(p.downTo)
		if !down {
			p.conns = append(p.conns, c)
		}
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		go p.pipe(c)
	}
}

func (p *Proxy) pipe(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, up)
	p.mu.Unlock()
	go func() { io.Copy(up, c); up.Close() }()
	io.Copy(c, up)
	c.Close()
}

// Cut closes every connection and refuses new ones for down.
func (p *Proxy) Cut(down time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.downTo = time.Now().Add(down)
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
