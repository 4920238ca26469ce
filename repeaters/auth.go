package repeaters

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"time"

	"repeaterd/store"
)

// Endpoint authentication: a repeater's connection (store.Connection) says
// how each request proves who sends it. Basic, bearer and API-key
// credentials are set as they are stored; OAuth2 client credentials are
// exchanged for an access token (oauth.go), cached per process. The
// connection's header wins over a repeater's own header of the same name.

// applyAuth sets c's credentials on req and returns the OAuth2 access
// token it used ("" for other types), which the caller redacts and, on a
// 401, invalidates.
func (s *Sender) applyAuth(ctx context.Context, c *store.Connection, req *http.Request) (string, error) {
	if c == nil {
		return "", nil
	}
	switch c.AuthType {
	case store.AuthNone, "":
	case store.AuthBasic:
		req.SetBasicAuth(c.Username, c.Password)
	case store.AuthBearer:
		req.Header.Set("Authorization", "Bearer "+c.Token)
	case store.AuthAPIKey:
		if IsReservedHeader(c.APIKeyHeader) {
			return "", fmt.Errorf("connection %d: api_key_header %s is set by repeaterd", c.ID, c.APIKeyHeader)
		}
		req.Header.Set(c.APIKeyHeader, c.APIKey)
	case store.AuthOAuth2ClientCredentials:
		tok, err := s.oauthToken(ctx, c)
		if err != nil {
			return "", err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		return tok, nil
	default:
		return "", fmt.Errorf("connection %d has unknown auth_type %q", c.ID, c.AuthType)
	}
	return "", nil
}

// usesOAuth2 reports whether r's requests carry an OAuth2 token.
func usesOAuth2(r *store.Repeater) bool {
	return r.Connection != nil && r.Connection.AuthType == store.AuthOAuth2ClientCredentials
}

// signatureHeader is the webhook-signature value for a message sent at at:
// the current secret's signature, and during a rotation's overlap (at
// before PreviousSecretUntil) the previous secret's too, space-separated
// as Standard Webhooks allows, so a receiver that knows either verifies.
// "" when the repeater does not sign.
func signatureHeader(r *store.Repeater, msgID string, at time.Time, body []byte) string {
	var sigs []string
	if r.HasSecret() {
		sigs = append(sigs, Sign(r.SigningSecret, msgID, at, body))
	}
	if r.PreviousSigningSecret != "" && r.PreviousSecretUntil != nil && at.Before(*r.PreviousSecretUntil) {
		sigs = append(sigs, Sign(r.PreviousSigningSecret, msgID, at, body))
	}
	return strings.Join(sigs, " ")
}

// connectionCredentials lists what redaction cuts for r's connection and
// rotation: every secret, and the forms they travel in (a Basic
// credential's base64, the OAuth2 client's).
func connectionCredentials(r *store.Repeater) []string {
	var out []string
	if r.PreviousSigningSecret != "" {
		out = append(out, r.PreviousSigningSecret)
		if key, ok := strings.CutPrefix(r.PreviousSigningSecret, webhookSecretPrefix); ok {
			out = append(out, key)
		}
	}
	c := r.Connection
	if c == nil {
		return out
	}
	out = append(out, c.Secrets()...)
	switch c.AuthType {
	case store.AuthBasic:
		out = append(out, basicCredential(c.Username, c.Password))
	case store.AuthOAuth2ClientCredentials:
		out = append(out, basicCredential(oauthEscape(c.ClientID), oauthEscape(c.ClientSecret)))
	}
	return out
}

// NewSigningSecret returns a fresh Standard Webhooks secret: "whsec_" and
// 32 random bytes in base64.
func NewSigningSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return webhookSecretPrefix + base64.StdEncoding.EncodeToString(b)
}

func basicCredential(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

// credentialsRefused turns a 401 or 403 to a repeater that authenticates
// through its connection into a Fail: the credentials were refused (wrong,
// expired, revoked), which says nothing of the payload, so the record is
// retried and the repeater backs off instead of every record being
// rejected for good. Without a connection a 401 stays the endpoint's
// refusal (backoff_codes can make it retryable).
func credentialsRefused(out *store.Outcome, r *store.Repeater) {
	c := r.Connection
	if c == nil || c.AuthType == store.AuthNone || out.StatusCode != http.StatusUnauthorized && out.StatusCode != http.StatusForbidden {
		return
	}
	out.State = store.StateFail
	out.Message = fmt.Sprintf("the endpoint refused the connection's %s credentials (%d): %s", c.AuthType, out.StatusCode, out.Message)
}
