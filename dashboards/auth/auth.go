// Package auth holds the web role's one credential check: the operator
// token that guards the API, the console and asynqmon.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// Token is the configured operator token. The zero value means no token is
// configured: everything is open (the web role then listens on loopback only).
type Token struct {
	sum [sha256.Size]byte
	set bool
}

// NewToken returns the Token for secret; "" means none.
func NewToken(secret string) Token {
	if secret == "" {
		return Token{}
	}
	return Token{sum: sha256.Sum256([]byte(secret)), set: true}
}

// Configured reports whether a token is set.
func (t Token) Configured() bool { return t.set }

// Matches reports whether presented is the token. Both sides are hashed
// first, so the comparison takes the same time whatever the guess's length.
// With no token configured nothing matches.
func (t Token) Matches(presented string) bool {
	if !t.set {
		return false
	}
	sum := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1
}

// Allows reports whether r carries the token, as a bearer token or as the
// password of HTTP Basic auth (any user name: what a browser sends to
// asynqmon after one prompt). With no token configured every request is
// allowed.
func (t Token) Allows(r *http.Request) bool {
	if !t.set {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		_, got, ok = r.BasicAuth()
	}
	return ok && t.Matches(got)
}
