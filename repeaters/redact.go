package repeaters

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"repeaterd/store"
)

// Redaction: an attempt's message is the endpoint's answer, and endpoints
// echo requests (debug receivers, error pages quoting headers, proxies
// showing the URL), so before a message is stored, shown or logged every
// credential the request carried is cut out of it: the signing secret
// (and a whsec_ secret's key), every configured header value (and the
// credential of an "Authorization: <scheme> <credential>", and a Basic
// credential's decoded user:password), the URL's userinfo and its query
// values (those of credential-like names, and every long one). Each is cut as sent, URL-escaped and JSON-escaped, the forms an
// echo takes.

// Redacted replaces a credential in an attempt message.
const Redacted = "[redacted]"

// minRedactLen is the shortest value cut out: a value of two characters
// would erase half the message, and is no secret.
const minRedactLen = 3

// minQueryRedactLen is the shortest value of a query parameter cut out
// whatever its name: ?code=200 or ?page=2 are not secrets, and cutting them
// would garble the message; values this long may be.
const minQueryRedactLen = 8

// credentialName matches the names of query parameters that carry
// credentials, whose values are cut out however short.
var credentialName = regexp.MustCompile(`(?i)token|key|secret|sig|pass|auth|cred|session|jwt`)

// redactCredentials cuts every credential of r's request out of msg, and
// the extra ones (OAuth2 tokens sent).
func redactCredentials(msg string, r *store.Repeater, extra ...string) string {
	if msg == "" {
		return msg
	}
	secrets := requestCredentials(r, extra...)
	// Longest first: a secret that contains another is cut whole.
	slices.SortFunc(secrets, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	for _, s := range secrets {
		msg = strings.ReplaceAll(msg, s, Redacted)
	}
	return msg
}

// requestCredentials lists what redactCredentials cuts, in every form.
func requestCredentials(r *store.Repeater, extra ...string) []string {
	raw := append(connectionCredentials(r), extra...)
	if r.SigningSecret != "" {
		raw = append(raw, r.SigningSecret)
		if key, ok := strings.CutPrefix(r.SigningSecret, webhookSecretPrefix); ok {
			raw = append(raw, key)
		}
	}
	for _, v := range r.Headers {
		raw = append(raw, v)
		scheme, cred, ok := strings.Cut(strings.TrimSpace(v), " ")
		if !ok {
			continue
		}
		cred = strings.TrimSpace(cred)
		raw = append(raw, cred)
		if strings.EqualFold(scheme, "Basic") {
			if dec, err := base64.StdEncoding.DecodeString(cred); err == nil {
				user, pass, _ := strings.Cut(string(dec), ":")
				raw = append(raw, string(dec), user, pass)
			}
		}
	}
	if u, err := url.Parse(r.URL); err == nil {
		if u.User != nil {
			pass, _ := u.User.Password()
			raw = append(raw, u.User.String(), u.User.Username(), pass)
		}
		for k, vs := range u.Query() {
			for _, v := range vs {
				if credentialName.MatchString(k) || len(v) >= minQueryRedactLen {
					raw = append(raw, v)
				}
			}
		}
	}
	var out []string
	for _, s := range raw {
		if len(s) < minRedactLen {
			continue
		}
		out = append(out, s, url.QueryEscape(s), url.PathEscape(s), jsonEscaped(s))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// jsonEscaped is s as a JSON string's contents (as encoding/json writes it,
// <, > and & escaped too).
func jsonEscaped(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}
