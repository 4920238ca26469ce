package auth

import (
	"encoding/base64"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// FuzzParseSession: whatever parseSession accepts is exactly what Login
// makes: the payload and MAC put back together give the input.
func FuzzParseSession(f *testing.F) {
	s := NewSessions(NewToken("t"))
	for _, v := range []string{"", "v1", "v1.1.a.", s.forge(1 << 40), "v1.01.a.AAAA", "v1.-1.a.b", strings.Repeat("v1.", 100)} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		payload, exp, nonce, mac, ok := parseSession(v)
		if !ok {
			return
		}
		if payload+"."+base64.RawURLEncoding.EncodeToString(mac) != v || exp <= 0 || nonce == "" ||
			!strings.HasPrefix(payload, sessionVersion+"."+itoa(exp)+".") {
			t.Fatalf("parseSession(%q) = %q, %d, %q, %x", v, payload, exp, nonce, mac)
		}
	})
}

// FuzzLoopbackHost: a Host it trusts is localhost or a loopback literal.
func FuzzLoopbackHost(f *testing.F) {
	for _, h := range []string{"localhost:8080", "[::1]:80", "127.0.0.1", "evil.example", "[::ffff:127.0.0.1]", "[fe80::1%lo]:1", "::1", "["} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, host string) {
		if !LoopbackHost(host) {
			return
		}
		name := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if i := strings.LastIndex(host, ":"); i >= 0 && !strings.HasSuffix(host, "]") && strings.Count(host, ":") == 1 {
			name = host[:i]
		} else if j := strings.LastIndex(host, "]:"); j >= 0 {
			name = host[1:j]
		}
		if strings.EqualFold(name, "localhost") {
			return
		}
		if a, err := netip.ParseAddr(name); err != nil || !a.Unmap().IsLoopback() {
			t.Fatalf("LoopbackHost(%q) trusts %q", host, name)
		}
	})
}
