package repeaters

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"

	"repeaterd/store"
)

// Egress proxy (REPEATERD_EGRESS_PROXY): for deployments whose endpoints
// allow one static address, every request (deliveries, test requests and
// OAuth2 token fetches) leaves through an HTTP proxy: https targets through
// a CONNECT tunnel (the proxy sees only the host and port), http targets
// forwarded in absolute form. The SSRF policy still applies to the
// destination: before each request the destination's name is resolved and
// every address it yields is judged as the dial guard would (a literal
// address directly), and a refused destination is never sent to the proxy.
// The proxy's own address is the operator's configuration and trusted: it
// may be loopback or private (it usually is), the dial guard does not apply
// to it, and it is the only address the sender then dials (any other dial
// is refused). The proxy resolves the name again for its connection, so a
// name that rebinds between the two lookups is the proxy's to catch: give it
// an ACL refusing private ranges where that matters. Credentials in the
// proxy URL (http://user:pass@proxy:3128) are sent as Proxy-Authorization.

// ParseEgressProxy parses REPEATERD_EGRESS_PROXY: "" is none; otherwise
// an http:// or https:// URL of the proxy, with a host and nothing after
// the port. The result has its port filled in.
func ParseEgressProxy(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, nil
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, store.Errorf(store.EINVALID, "REPEATERD_EGRESS_PROXY is not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, store.Errorf(store.EINVALID, "REPEATERD_EGRESS_PROXY must be an http:// or https:// proxy URL, not %q", u.Scheme)
	case u.Hostname() == "":
		return nil, store.Errorf(store.EINVALID, "REPEATERD_EGRESS_PROXY has no host")
	case u.Path != "" && u.Path != "/" || u.RawQuery != "":
		return nil, store.Errorf(store.EINVALID, "REPEATERD_EGRESS_PROXY must be scheme://host:port, without a path or query")
	}
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	return u, nil
}

// routeThroughProxy makes t send every request through proxy, judging each
// destination first unless allowPrivate.
func routeThroughProxy(t *http.Transport, d *net.Dialer, proxy *url.URL, allowPrivate bool) {
	t.Proxy = func(req *http.Request) (*url.URL, error) {
		if !allowPrivate {
			if err := checkDestination(req.Context(), req.URL.Hostname()); err != nil {
				return nil, err
			}
		}
		return proxy, nil
	}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != proxy.Host {
			return nil, fmt.Errorf("refusing a direct connection to %s: every request goes through the egress proxy", addr)
		}
		return d.DialContext(ctx, network, addr)
	}
}

// checkDestination applies the dial guard's policy to what host resolves
// to now, for a request the proxy will connect for us.
func checkDestination(ctx context.Context, host string) error {
	if addr, err := netip.ParseAddr(host); err == nil {
		if why := blockedReason(addr); why != "" {
			return &privateTargetError{addr: host, why: why}
		}
		return nil
	}
	if err := checkTargetHost(host); err != nil { // localhost, inet_aton forms
		return &privateTargetError{addr: host, why: "it names a loopback or reserved address"}
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("resolving %s for the egress proxy: %w", host, err)
	}
	for _, a := range addrs {
		if why := blockedReason(a); why != "" {
			return &privateTargetError{addr: host + " (" + a.String() + ")", why: why}
		}
	}
	return nil
}

// tlsClient is a client with a connection's TLS settings, for its version.
type tlsClient struct {
	version   int64
	client    *http.Client
	transport *http.Transport
}

// clientFor returns the client for requests of connection c: the shared
// one, or for a connection that skips verification or trusts its own CA a
// client of its own (the shared transport cloned: same dialer, guard,
// proxy and limits), kept until the connection changes.
func (s *Sender) clientFor(c *store.Connection) (*http.Client, error) {
	if c == nil || !c.SkipTLSVerify && c.CAPEM == "" {
		return s.client, nil
	}
	s.tlsMu.Lock()
	defer s.tlsMu.Unlock()
	if tc, ok := s.tlsClients[c.ID]; ok && tc.version == c.Version() {
		return tc.client, nil
	}
	cfg, err := tlsConfig(c)
	if err != nil {
		return nil, err
	}
	if old, ok := s.tlsClients[c.ID]; ok {
		old.transport.CloseIdleConnections()
	}
	t := s.transport.Clone()
	t.TLSClientConfig = cfg
	client := &http.Client{Transport: t, CheckRedirect: s.client.CheckRedirect}
	s.tlsClients[c.ID] = tlsClient{version: c.Version(), client: client, transport: t}
	return client, nil
}

// tlsConfig is c's TLS: the system roots plus its CA, or no verification
// at all when skip_tls_verify is set (the API and console mark it loudly).
func tlsConfig(c *store.Connection) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.SkipTLSVerify {
		cfg.InsecureSkipVerify = true //nolint:gosec // the connection's explicit, flagged choice
		return cfg, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM([]byte(c.CAPEM)) {
		return nil, fmt.Errorf("connection %d: ca_pem holds no certificate", c.ID)
	}
	cfg.RootCAs = pool
	return cfg, nil
}
