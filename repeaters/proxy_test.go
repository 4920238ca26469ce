package repeaters

import (
	"bufio"
	"context"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"repeaterd/store"
)

// connectProxy is a loopback HTTP CONNECT proxy that notes each tunnel's
// target.
type connectProxy struct {
	ln      net.Listener
	mu      sync.Mutex
	targets []string
	wg      sync.WaitGroup
}

func newConnectProxy(t *testing.T) *connectProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{ln: ln}
	p.wg.Go(p.serve)
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *connectProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *connectProxy) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.targets...)
}

func (p *connectProxy) serve() {
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.tunnel(conn) })
	}
}

func (p *connectProxy) tunnel(conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.targets = append(p.targets, req.Method+" "+req.Host)
	p.mu.Unlock()
	if req.Method != http.MethodConnect {
		io.WriteString(conn, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		return
	}
	up, err := net.Dial("tcp", req.Host)
	if err != nil {
		io.WriteString(conn, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer up.Close()
	io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, br); done <- struct{}{} }()
	go func() { io.Copy(conn, up); done <- struct{}{} }()
	<-done
}

func newTLSSink(t *testing.T) (*httptest.Server, string) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "tls ok")
	}))
	t.Cleanup(srv.Close)
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	return srv, ca
}

func TestEgressProxyCarriesRequestsWithTheConnectionsTLS(t *testing.T) {
	srv, ca := newTLSSink(t)
	proxy := newConnectProxy(t)
	sender := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true, EgressProxy: proxy.url()})
	host := strings.TrimPrefix(srv.URL, "https://")
	tests := []struct {
		name string
		conn *store.Connection
		want store.State
		msg  string
	}{
		{"the system roots do not know the sink", nil, store.StateFail, "certificate"},
		{"the connection's CA", &store.Connection{ID: 1, AuthType: store.AuthNone, CAPEM: ca}, store.StateSuccess, "tls ok"},
		{"skip_tls_verify", &store.Connection{ID: 2, AuthType: store.AuthNone, SkipTLSVerify: true}, store.StateSuccess, "tls ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httpRepeater(srv.URL + "/hook")
			r.Connection = tt.conn
			before := len(proxy.seen())
			out := sender.Send(context.Background(), r, httpRecord(1, `{}`))
			if out.State != tt.want || !strings.Contains(out.Message, tt.msg) {
				t.Fatalf("%s %q; want %s with %q", out.State, out.Message, tt.want, tt.msg)
			}
			if seen := proxy.seen(); len(seen) != before+1 || seen[before] != "CONNECT "+host {
				t.Fatalf("the proxy saw %v; want one CONNECT %s", seen[before:], host)
			}
		})
	}
}

// TestEgressProxyStillAppliesTheSSRFPolicy: the proxy (on loopback) is
// trusted; a loopback or private destination is refused before the proxy
// is asked.
func TestEgressProxyStillAppliesTheSSRFPolicy(t *testing.T) {
	srv, ca := newTLSSink(t)
	proxy := newConnectProxy(t)
	sender := newHTTPSender(t, SenderConfig{EgressProxy: proxy.url()})
	for _, target := range []string{srv.URL + "/hook", "https://localhost:1/hook", "https://10.1.2.3/hook", "http://[::1]:1/hook"} {
		r := httpRepeater(target)
		r.Connection = &store.Connection{ID: 1, AuthType: store.AuthNone, CAPEM: ca}
		out := sender.Send(context.Background(), r, httpRecord(1, `{}`))
		if out.State != store.StateFail || !strings.Contains(out.Message, "refused") || !strings.Contains(out.Message, privateTargetsHint) {
			t.Errorf("%s: %s %q; want the SSRF refusal", target, out.State, out.Message)
		}
	}
	if seen := proxy.seen(); len(seen) != 0 {
		t.Fatalf("the proxy was asked for %v", seen)
	}
}

func TestParseEgressProxy(t *testing.T) {
	for raw, want := range map[string]string{
		"":                          "",
		"http://127.0.0.1:3128":     "127.0.0.1:3128",
		"http://proxy.internal":     "proxy.internal:80",
		"https://u:p@proxy.example": "proxy.example:443",
	} {
		u, err := ParseEgressProxy(raw)
		if err != nil || (u == nil) != (want == "") || u != nil && u.Host != want {
			t.Errorf("ParseEgressProxy(%q) = %v, %v; want host %q", raw, u, err, want)
		}
	}
	for _, bad := range []string{"socks5://127.0.0.1:1080", "127.0.0.1:3128", "http://", "http://p:1/path", "http://p:1?x=1"} {
		if _, err := ParseEgressProxy(bad); store.ErrorCode(err) != store.EINVALID {
			t.Errorf("ParseEgressProxy(%q) = %v, want EINVALID", bad, err)
		}
	}
}
