package auth

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// CrossSite reports whether r was sent by a page of another origin, as the
// browser says: Sec-Fetch-Site other than same-origin or none (cross-site,
// and same-site, which includes another port of this host), or, from a
// browser that does not send it, an Origin whose host is not r's Host
// (Origin "null", from sandboxed frames and some redirects, included). A
// request with neither header comes from no browser page (curl, a script,
// Prometheus) and is not cross-site.
func CrossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return false
	case "":
	default:
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return true
	}
	return !strings.EqualFold(u.Host, r.Host)
}

// LoopbackHost reports whether hostport (a Host header, or a listen
// address's host) surely means this machine: localhost or a loopback IP
// literal, with or without a port. Other names are not trusted: a name a
// page's attacker controls can be made to resolve to 127.0.0.1 (DNS
// rebinding), and then only the Host header tells the request apart.
func LoopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	} else if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Zone() == "" && addr.Unmap().IsLoopback()
}
