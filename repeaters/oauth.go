package repeaters

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"repeaterd/store"
)

// OAuth2 client credentials (RFC 6749 §4.4). The token is fetched once per
// connection and process and cached until shortly before it expires: every
// batch and worker goroutine of the process shares it (a singleflight
// collapses concurrent fetches into one), so a thousand records cost one
// fetch. Each process (worker) fetches its own token; Redis holds none, so
// no token is ever stored outside a process's memory. A 401 from the
// endpoint drops the token it was sent with and the request is made once
// more with a fresh one before the attempt counts. Token fetches go through
// the sender's transport, so they obey the SSRF dial guard, the egress
// proxy and the connection's TLS settings, and are bounded by
// DefaultTokenTimeout.

// OAuth2 token defaults.
const (
	// DefaultTokenTimeout bounds one token fetch.
	DefaultTokenTimeout = 10 * time.Second
	// DefaultTokenLifetime is how long a token without expires_in is kept
	// (a 401 drops it sooner).
	DefaultTokenLifetime = time.Hour
	// maxTokenSkew is how long before its expiry a token is renewed.
	maxTokenSkew = 30 * time.Second
	// maxTokenResponse bounds the token endpoint's answer.
	maxTokenResponse = 64 << 10
)

// tokenCache holds one access token per connection, for its version.
type tokenCache struct {
	mu     sync.Mutex
	tokens map[int64]cachedToken
	flight singleflight.Group
}

type cachedToken struct {
	version int64
	value   string
	expires time.Time
}

func newTokenCache() *tokenCache { return &tokenCache{tokens: map[int64]cachedToken{}} }

func (tc *tokenCache) lookup(c *store.Connection, now time.Time) (string, bool) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	t, ok := tc.tokens[c.ID]
	if !ok || t.version != c.Version() || !now.Before(t.expires) {
		return "", false
	}
	return t.value, true
}

func (tc *tokenCache) store(c *store.Connection, t cachedToken) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.tokens[c.ID] = t
}

// invalidate drops c's token if it is still tok: a concurrent request may
// have replaced it already, and that fresh token is kept.
func (tc *tokenCache) invalidate(c *store.Connection, tok string) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if t, ok := tc.tokens[c.ID]; ok && t.value == tok {
		delete(tc.tokens, c.ID)
	}
}

// oauthToken returns c's access token, fetching it when none is cached.
func (s *Sender) oauthToken(ctx context.Context, c *store.Connection) (string, error) {
	if tok, ok := s.tokens.lookup(c, s.cfg.Clock.Now()); ok {
		return tok, nil
	}
	key := fmt.Sprintf("%d/%d", c.ID, c.Version())
	ch := s.tokens.flight.DoChan(key, func() (any, error) {
		if tok, ok := s.tokens.lookup(c, s.cfg.Clock.Now()); ok {
			return tok, nil // a fetch that just ended stored it
		}
		// Not the caller's context: the fetch serves every waiter, and one
		// waiter giving up must not fail the others.
		t, err := s.fetchToken(context.WithoutCancel(ctx), c)
		if err != nil {
			return "", err
		}
		s.tokens.store(c, t)
		return t.value, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return "", res.Err
		}
		return res.Val.(string), nil
	case <-ctx.Done():
		return "", fmt.Errorf("oauth2 token: %w", context.Cause(ctx))
	}
}

// tokenResponse is the token endpoint's JSON answer.
type tokenResponse struct {
	AccessToken string      `json:"access_token"`
	TokenType   string      `json:"token_type"`
	ExpiresIn   json.Number `json:"expires_in"`
}

// fetchToken asks c's token endpoint for a token. Errors name the token
// endpoint's host, never its URL, and say what went wrong; the caller
// redacts the connection's secrets from them.
func (s *Sender) fetchToken(ctx context.Context, c *store.Connection) (cachedToken, error) {
	u, err := tokenURL(c.TokenURL, s.cfg.AllowPrivateTargets)
	if err != nil {
		return cachedToken{}, fmt.Errorf("oauth2 token: %w", err)
	}
	fail := func(format string, args ...any) (cachedToken, error) {
		return cachedToken{}, fmt.Errorf("oauth2 token from %s: %s", u.Host, fmt.Sprintf(format, args...))
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultTokenTimeout)
	defer cancel()
	client, err := s.clientFor(c)
	if err != nil {
		return fail("%v", err)
	}
	req, err := newTokenRequest(ctx, c, s.cfg.Version)
	if err != nil {
		return fail("%v", err)
	}
	asked := s.cfg.Clock.Now()
	resp, err := client.Do(req)
	if err != nil {
		return fail("%s", describeSendError(err, DefaultTokenTimeout))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse))
	if err != nil {
		return fail("reading the answer failed: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fail("answered %s: %s", resp.Status, store.Truncate(string(body), 300, "…"))
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return fail("the answer is not a JSON token response: %v", err)
	}
	switch {
	case tr.AccessToken == "":
		return fail("the answer has no access_token")
	case tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer"):
		return fail("token_type %q is not supported (only bearer)", tr.TokenType)
	}
	return cachedToken{version: c.Version(), value: tr.AccessToken, expires: asked.Add(tokenLifetime(tr.ExpiresIn))}, nil
}

// tokenLifetime is how long a token is used: its expires_in less a margin
// (a tenth, at most 30 s), so it is not sent as it expires.
func tokenLifetime(expiresIn json.Number) time.Duration {
	secs, err := expiresIn.Float64()
	if err != nil || secs <= 0 {
		return DefaultTokenLifetime
	}
	life := time.Duration(secs * float64(time.Second))
	return life - min(life/10, maxTokenSkew)
}

// newTokenRequest builds the client-credentials grant request, the client's
// credentials in HTTP Basic (client_secret_basic, each part form-encoded as
// RFC 6749 §2.3.1 says) or in the form (client_secret_post).
func newTokenRequest(ctx context.Context, c *store.Connection, version string) (*http.Request, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if c.Scope != "" {
		form.Set("scope", c.Scope)
	}
	if c.CredentialsIn == store.CredentialsInBody {
		form.Set("client_id", c.ClientID)
		form.Set("client_secret", c.ClientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "repeaterd/"+cmp.Or(version, DefaultSenderVersion))
	if c.CredentialsIn != store.CredentialsInBody {
		req.SetBasicAuth(oauthEscape(c.ClientID), oauthEscape(c.ClientSecret))
	}
	return req, nil
}

// oauthEscape form-encodes a client credential for HTTP Basic.
func oauthEscape(s string) string { return url.QueryEscape(s) }

// ValidateTokenURL is the check the API runs on an OAuth2 token URL, and
// the sender on every fetch: a valid target URL (ValidateURL), and https
// unless private targets are allowed: client secrets and tokens are not
// sent in clear text to a public host. Errors are store.EINVALID.
func ValidateTokenURL(raw string, allowPrivate bool) error {
	_, err := tokenURL(raw, allowPrivate)
	return err
}

func tokenURL(raw string, allowPrivate bool) (*url.URL, error) {
	u, err := parseTargetURL(raw)
	if err != nil {
		return nil, relabel(err, "url", "token_url")
	}
	if allowPrivate {
		return u, nil
	}
	if u.Scheme != "https" {
		return nil, store.Errorf(store.EINVALID, "token_url must be https (client secrets are not sent in clear); http is allowed only with REPEATERD_ALLOW_PRIVATE_TARGETS=true")
	}
	if err := checkTargetHost(u.Hostname()); err != nil {
		return nil, relabel(err, "url", "token_url")
	}
	return u, nil
}

// relabel renames the field an EINVALID message starts with.
func relabel(err error, from, to string) error {
	var se *store.Error
	if errors.As(err, &se) && strings.HasPrefix(se.Message, from+" ") {
		return store.Errorf(se.Code, "%s%s", to, strings.TrimPrefix(se.Message, from))
	}
	return err
}
