// Package auth holds the web role's credential checks, one home each: the
// admin token (Token), who a request acts for (Principal), the console's
// session cookie and CSRF token (Sessions), and the browser-origin checks
// (CrossSite, LoopbackHost). Domain tokens are rows of the store
// (store.APITokenByValue); the web role resolves them.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// Token is the configured admin token (REPEATERD_API_TOKEN). The zero value
// means no token is configured: the web role then serves loopback only,
// and a request without credentials acts as the admin.
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

// Bearer returns the token of an "Authorization: Bearer <token>" header and
// whether the request has an Authorization header at all (a malformed one
// is presented but empty). Only the bearer scheme is read: Basic
// credentials are what browsers attach on their own, which would make every
// cross-site request authenticated.
func Bearer(r *http.Request) (token string, presented bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	token, _ = strings.CutPrefix(h, "Bearer ")
	if token == h {
		return "", true
	}
	return token, true
}
