package auth

import "context"

// Principal is who a request acts for: the admin (every domain) or one
// domain, through a domain token.
type Principal struct {
	// Domain is the one domain the request may see and change; "" is every
	// domain (the admin).
	Domain string
	// TokenID is the domain token's id, 0 for the admin.
	TokenID int64
	// Via says how the request proved it: "token" (admin bearer),
	// "domain-token", "session" (the console's cookie) or "loopback" (no
	// token configured).
	Via string
}

// Admin is the principal of the admin token, a console session and, with
// no token configured, of every loopback request.
func Admin(via string) Principal { return Principal{Via: via} }

// IsAdmin reports whether p may see and change every domain.
func (p Principal) IsAdmin() bool { return p.Domain == "" }

// Sees reports whether p may see and change domain's data.
func (p Principal) Sees(domain string) bool { return p.Domain == "" || p.Domain == domain }

type principalKey struct{}

// WithPrincipal returns ctx carrying p, for the handlers behind the check.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal the web role set on ctx. A request
// that never passed the web role's check (the API mounted by itself, as in
// its own tests) has none, and acts as the admin: the web role always sets
// one.
func PrincipalFrom(ctx context.Context) Principal {
	if p, ok := ctx.Value(principalKey{}).(Principal); ok {
		return p
	}
	return Admin("unchecked")
}
