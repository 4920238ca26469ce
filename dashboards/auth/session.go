package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// SessionCookie is the console's session cookie: HttpOnly (no script reads
// it), SameSite=Strict (no other site's page makes the browser send it),
// Path=/ (the console, asynqmon and the API's GETs behind one login),
// Secure when served over HTTPS.
const SessionCookie = "repeaterd_session"

// DefaultSessionTTL is how long a login lasts.
const DefaultSessionTTL = 12 * time.Hour

// sessionVersion starts a cookie value: v1.<expiry unix>.<nonce>.<mac>.
const sessionVersion = "v1"

// maxCookieLen bounds what parseSession reads; a real value is ~80 bytes.
const maxCookieLen = 256

// Sessions issues and checks the console's login cookie and its CSRF
// tokens. A cookie is signed (HMAC-SHA256) with a key derived from the
// admin token, so every web replica checks it without shared state, and
// changing the token ends every session. Logging out deletes the cookie
// from the browser; a copy taken before stays valid until it expires (TTL),
// so the TTL is short.
type Sessions struct {
	admin Token
	key   []byte
	ttl   time.Duration
}

// NewSessions returns the sessions of admin. Without a configured token no
// login exists and none is needed (Required is false); the CSRF key is then
// random, as no replica needs to share it.
func NewSessions(admin Token) *Sessions {
	s := &Sessions{admin: admin, ttl: DefaultSessionTTL}
	if admin.Configured() {
		mac := hmac.New(sha256.New, admin.sum[:])
		mac.Write([]byte("repeaterd console session v1"))
		s.key = mac.Sum(nil)
	} else {
		s.key = make([]byte, sha256.Size)
		_, _ = rand.Read(s.key)
	}
	return s
}

// Required reports whether the console needs a login.
func (s *Sessions) Required() bool { return s.admin.Configured() }

// Login sets the session cookie if presented is the admin token, and
// reports whether it was.
func (s *Sessions) Login(w http.ResponseWriter, r *http.Request, presented string) bool {
	if !s.admin.Matches(presented) {
		return false
	}
	exp := time.Now().Add(s.ttl).Unix()
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	payload := sessionVersion + "." + strconv.FormatInt(exp, 10) + "." + base64.RawURLEncoding.EncodeToString(nonce)
	s.setCookie(w, r, payload+"."+base64.RawURLEncoding.EncodeToString(s.mac(payload)), int(s.ttl/time.Second))
	return true
}

// Logout deletes the session cookie.
func (s *Sessions) Logout(w http.ResponseWriter, r *http.Request) { s.setCookie(w, r, "", -1) }

func (s *Sessions) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https",
	})
}

// Valid reports whether r carries a live session cookie.
func (s *Sessions) Valid(r *http.Request) bool {
	_, ok := s.session(r)
	return ok
}

// session returns the nonce of r's live session.
func (s *Sessions) session(r *http.Request) (nonce string, ok bool) {
	if !s.Required() {
		return "", false
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return "", false
	}
	payload, exp, nonce, mac, ok := parseSession(c.Value)
	if !ok || !hmac.Equal(mac, s.mac(payload)) || time.Now().Unix() >= exp {
		return "", false
	}
	return nonce, true
}

// CSRFToken is the token a form of the page served for r must send back:
// bound to r's session, or, with no login configured, to this process.
func (s *Sessions) CSRFToken(r *http.Request) string {
	nonce, ok := s.session(r)
	if !ok {
		nonce = "no-session"
	}
	return base64.RawURLEncoding.EncodeToString(s.mac("csrf." + nonce))
}

// CheckCSRF reports whether presented is r's CSRF token. A page of another
// origin cannot read the token, so it cannot forge the form.
func (s *Sessions) CheckCSRF(r *http.Request, presented string) bool {
	want := s.CSRFToken(r)
	return presented != "" && hmac.Equal([]byte(presented), []byte(want))
}

func (s *Sessions) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// parseSession splits a cookie value into its signed payload, expiry,
// nonce and MAC; ok is false for anything Login could not have made.
func parseSession(v string) (payload string, exp int64, nonce string, mac []byte, ok bool) {
	if len(v) > maxCookieLen {
		return "", 0, "", nil, false
	}
	parts := strings.Split(v, ".")
	if len(parts) != 4 || parts[0] != sessionVersion || parts[2] == "" {
		return "", 0, "", nil, false
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || exp <= 0 || strconv.FormatInt(exp, 10) != parts[1] {
		return "", 0, "", nil, false
	}
	// Decoders skip \r and \n even when strict: only the canonical
	// encoding of the MAC is a session.
	mac, err = base64.RawURLEncoding.Strict().DecodeString(parts[3])
	if err != nil || len(mac) != sha256.Size || base64.RawURLEncoding.EncodeToString(mac) != parts[3] {
		return "", 0, "", nil, false
	}
	return strings.Join(parts[:3], "."), exp, parts[2], mac, true
}
