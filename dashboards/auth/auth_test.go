package auth

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestToken(t *testing.T) {
	open := NewToken("")
	if open.Configured() || open.Matches("") {
		t.Fatal("no token: nothing matches")
	}
	tok := NewToken("s3cret")
	if !tok.Matches("s3cret") || tok.Matches("S3cret") || tok.Matches("") {
		t.Fatal("Matches compares exactly")
	}
	for _, c := range []struct {
		header, token string
		presented     bool
	}{
		{"Bearer s3cret", "s3cret", true},
		{"bearer s3cret", "", true}, // the scheme is case-sensitive here: presented, and wrong
		{"Basic " + base64.StdEncoding.EncodeToString([]byte("u:s3cret")), "", true}, // browsers send Basic on their own
		{"", "", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if c.header != "" {
			r.Header.Set("Authorization", c.header)
		}
		if got, presented := Bearer(r); got != c.token || presented != c.presented {
			t.Errorf("Bearer(%q) = %q, %v; want %q, %v", c.header, got, presented, c.token, c.presented)
		}
	}
}

func TestCrossSite(t *testing.T) {
	for _, c := range []struct {
		site, origin string
		want         bool
	}{
		{"", "", false}, // curl, scripts
		{"same-origin", "http://evil.example", false}, // the browser's own verdict wins
		{"none", "", false},                           // typed into the address bar
		{"cross-site", "", true},
		{"same-site", "", true}, // another port of this host is same-site
		{"", "http://127.0.0.1:8080", false},
		{"", "http://evil.example", true},
		{"", "null", true},
		{"", "http://127.0.0.1:9999", true},
	} {
		r := httptest.NewRequest("POST", "http://127.0.0.1:8080/api/v1/repeaters", nil)
		if c.site != "" {
			r.Header.Set("Sec-Fetch-Site", c.site)
		}
		if c.origin != "" {
			r.Header.Set("Origin", c.origin)
		}
		if got := CrossSite(r); got != c.want {
			t.Errorf("CrossSite(Sec-Fetch-Site %q, Origin %q) = %v, want %v", c.site, c.origin, got, c.want)
		}
	}
}

func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST:8080": true, "127.0.0.1": true, "127.0.0.1:8080": true, "127.9.9.9:1": true,
		"[::1]:8080": true, "[::1]": true, "::1": true, "[::ffff:127.0.0.1]:80": true,
		"": false, "evil.example": false, "evil.example:8080": false, "localhost.evil.example": false,
		"127.0.0.1.nip.io": false, "10.0.0.1:8080": false, "[fe80::1%25lo]:80": false, "0.0.0.0:8080": false,
		"2130706433": false, "127.1": false, "localhost.": false,
	} {
		if got := LoopbackHost(host); got != want {
			t.Errorf("LoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestSessions(t *testing.T) {
	s := NewSessions(NewToken("s3cret"))
	if !s.Required() {
		t.Fatal("a token configured: login required")
	}
	rec := httptest.NewRecorder()
	if s.Login(rec, httptest.NewRequest("POST", "/ui/login", nil), "wrong") || len(rec.Result().Cookies()) != 0 {
		t.Fatal("a wrong token logged in")
	}
	rec = httptest.NewRecorder()
	if !s.Login(rec, httptest.NewRequest("POST", "/ui/login", nil), "s3cret") {
		t.Fatal("the token did not log in")
	}
	cookie := rec.Result().Cookies()[0]
	if cookie.Name != SessionCookie || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/" ||
		cookie.MaxAge != int(DefaultSessionTTL/time.Second) || strings.Contains(cookie.Value, "s3cret") {
		t.Fatalf("session cookie %+v", cookie)
	}
	with := func(value string) *http.Request {
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(&http.Cookie{Name: SessionCookie, Value: value})
		return r
	}
	if !s.Valid(with(cookie.Value)) {
		t.Fatal("the cookie Login set is not valid")
	}
	// Another replica with the same token accepts it; another token does not.
	if !NewSessions(NewToken("s3cret")).Valid(with(cookie.Value)) || NewSessions(NewToken("other")).Valid(with(cookie.Value)) {
		t.Fatal("the cookie's key is not the token's")
	}
	parts := strings.Split(cookie.Value, ".")
	forged := parts[0] + "." + "99999999999" + "." + parts[2] + "." + parts[3] // a later expiry, same MAC
	expired := s.forge(time.Now().Add(-time.Second).Unix())
	for _, bad := range []string{"", "v1", forged, expired, cookie.Value + "x", strings.Replace(cookie.Value, "v1.", "v2.", 1)} {
		if s.Valid(with(bad)) {
			t.Errorf("cookie %q accepted", bad)
		}
	}
	// CSRF tokens are bound to the session.
	csrf := s.CSRFToken(with(cookie.Value))
	if !s.CheckCSRF(with(cookie.Value), csrf) || s.CheckCSRF(with(cookie.Value), "") ||
		s.CheckCSRF(with(cookie.Value), s.CSRFToken(httptest.NewRequest("GET", "/", nil))) {
		t.Fatal("CSRF token not bound to the session")
	}
	if open := NewSessions(NewToken("")); open.Required() || open.Valid(with(cookie.Value)) ||
		!open.CheckCSRF(httptest.NewRequest("GET", "/", nil), open.CSRFToken(httptest.NewRequest("GET", "/", nil))) {
		t.Fatal("without a token: no login, and CSRF tokens of this process check")
	}
}

// forge signs a cookie expiring at exp, as Login would have.
func (s *Sessions) forge(exp int64) string {
	payload := sessionVersion + "." + itoa(exp) + ".bm9uY2U"
	return payload + "." + base64.RawURLEncoding.EncodeToString(s.mac(payload))
}
