package repeaters

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"

	"repeaterd/store"
)

// privateTargetsHint ends every refusal so an operator reading an attempt or
// an API error knows the one setting that lifts the guard.
const privateTargetsHint = "private targets are blocked unless REPEATERD_ALLOW_PRIVATE_TARGETS=true"

// ValidateURL is the static check the API runs on a repeater URL: http or
// https, a host, a valid port and no userinfo (credentials belong in the
// repeater's headers, where they are not echoed with the URL). Unless
// allowPrivate, a host that is a literal address in any form Go's parsers or
// the system resolver accept (IPv4, IPv6, IPv4-mapped IPv6, inet_aton forms
// such as "2130706433" or "0177.0.0.1") or a localhost name is refused when
// it is loopback, private, link-local, multicast, unspecified, CGNAT or
// otherwise reserved. Other names are not resolved here: DNS answers change,
// so the Sender checks the resolved address at dial time. Errors are
// *store.Error with code store.EINVALID.
func ValidateURL(raw string, allowPrivate bool) error {
	u, err := parseTargetURL(raw)
	if err != nil || allowPrivate {
		return err
	}
	return checkTargetHost(u.Hostname())
}

// parseTargetURL does the checks that do not depend on the SSRF setting; the
// Sender runs them on every send too. Messages name the host at most, never
// the whole URL, whose query string may carry a token.
func parseTargetURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return nil, store.Errorf(store.EINVALID, "url is not valid: %v", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, store.Errorf(store.EINVALID, "url scheme must be http or https, not %q", u.Scheme)
	case u.Hostname() == "":
		return nil, store.Errorf(store.EINVALID, "url has no host")
	case u.User != nil:
		return nil, store.Errorf(store.EINVALID, "url must not carry credentials (user:password@); put them in the repeater's headers")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, store.Errorf(store.EINVALID, "url port %q is out of range", p)
		}
	}
	return u, nil
}

// checkTargetHost refuses a host that names a blocked address without DNS.
func checkTargetHost(host string) error {
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return store.Errorf(store.EINVALID, "url host %s is refused: it names the loopback interface; %s", host, privateTargetsHint)
	}
	addr, err := netip.ParseAddr(name)
	if err != nil {
		var ok bool
		if addr, ok = parseInetATON(name); !ok {
			return nil // a DNS name: the dial guard checks what it resolves to
		}
	}
	if why := blockedReason(addr); why != "" {
		return store.Errorf(store.EINVALID, "url host %s is refused: %s; %s", host, why, privateTargetsHint)
	}
	return nil
}

// blockedPrefixes are ranges no webhook receiver lives in that netip's
// predicates do not cover.
var blockedPrefixes = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), `"this network" (0.0.0.0/8) address`}, // Linux connects 0.x to the local host
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT (100.64.0.0/10) address"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignment (192.0.0.0/24) address"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking (198.18.0.0/15) address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved (240.0.0.0/4) or broadcast address"},
	{netip.MustParsePrefix("fec0::/10"), "site-local (fec0::/10) address"},
}

// Translation prefixes that carry an IPv4 address a gateway would connect to.
var (
	nat64Prefix     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFourPrefix = netip.MustParsePrefix("2002::/16")
)

// blockedReason says why a is not a permitted destination, "" when it is.
// IPv4-mapped IPv6 (::ffff:127.0.0.1) is unmapped first: the kernel sends it
// to the IPv4 address, so it must be judged as one.
func blockedReason(a netip.Addr) string {
	a = a.WithZone("").Unmap()
	switch {
	case !a.IsValid():
		return "invalid address"
	case a.IsUnspecified():
		return "unspecified address"
	case a.IsLoopback():
		return "loopback address"
	case a.IsPrivate():
		return "private address"
	case a.IsMulticast():
		return "multicast address"
	case a.IsLinkLocalUnicast():
		return "link-local address"
	}
	for _, b := range blockedPrefixes {
		if b.prefix.Contains(a) {
			return b.why
		}
	}
	if v4, ok := embeddedIPv4(a); ok {
		if why := blockedReason(v4); why != "" {
			return fmt.Sprintf("%s (%s) behind a NAT64/6to4 prefix", why, v4)
		}
	}
	return ""
}

// embeddedIPv4 extracts the IPv4 address a NAT64 or 6to4 gateway would reach.
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() {
		return netip.Addr{}, false
	}
	b := a.As16()
	switch {
	case nat64Prefix.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFourPrefix.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// parseInetATON parses the legacy IPv4 forms that getaddrinfo (Go's cgo
// resolver) and browsers accept but netip rejects: one to four parts, each
// decimal, octal (leading 0) or hex (0x), the last filling the remaining
// bytes — "2130706433", "0177.0.0.1", "0x7f.1", "127.1".
func parseInetATON(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var n uint64
	for i, p := range parts {
		v, ok := parseInetPart(p)
		last := i == len(parts)-1
		if !ok || !last && v > 255 || last && v >= 1<<(8*(4-i)) {
			return netip.Addr{}, false
		}
		if last {
			n |= v
		} else {
			n |= v << (8 * (3 - i))
		}
	}
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

func parseInetPart(p string) (uint64, bool) {
	base := 10
	switch {
	case len(p) >= 2 && (p[:2] == "0x" || p[:2] == "0X"):
		p, base = p[2:], 16
		if p == "" {
			return 0, true // "0x" is 0 to inet_aton and to browsers
		}
	case len(p) >= 2 && p[0] == '0':
		p, base = p[1:], 8
	}
	v, err := strconv.ParseUint(p, base, 32)
	return v, err == nil
}

// privateTargetError is the dial guard's refusal. Send reports its text as
// the attempt message.
type privateTargetError struct {
	addr string
	why  string
}

func (e *privateTargetError) Error() string {
	return fmt.Sprintf("destination %s refused: %s; %s", e.addr, e.why, privateTargetsHint)
}

// guardDial is the Sender's net.Dialer Control hook. It runs after name
// resolution and before connect(2), on the exact address about to be
// dialled, so a name that resolved to a public address when the repeater was
// saved and resolves to a private one now (DNS rebinding) is still refused,
// and no packet reaches the refused address.
func guardDial(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &privateTargetError{addr: address, why: "unparseable address"} // fail closed
	}
	if why := blockedReason(ap.Addr()); why != "" {
		return &privateTargetError{addr: address, why: why}
	}
	return nil
}

// CheckTarget applies the sender's policy to a repeater about to be saved:
// its URL must be a target the sender may reach, and its headers must leave
// alone those only the sender sets. The store checks every other field.
func CheckTarget(r *store.Repeater, allowPrivate bool) error {
	if err := ValidateURL(r.URL, allowPrivate); err != nil {
		return err
	}
	for k := range r.Headers {
		if IsReservedHeader(k) {
			return store.Errorf(store.EINVALID, "header %s is set by repeaterd and cannot be configured", k)
		}
	}
	return nil
}
