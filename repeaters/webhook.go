package repeaters

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks (https://www.standardwebhooks.com) header names.
const (
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
)

// webhookSecretPrefix marks a Standard Webhooks secret whose key is the
// base64 text after it.
const webhookSecretPrefix = "whsec_"

// WebhookID returns the webhook-id of a record. It depends on the record
// alone, so every retry carries the same id and the receiver can use it as
// its idempotency key.
func WebhookID(recordID int64) string {
	return "msg_" + strconv.FormatInt(recordID, 10)
}

// Sign returns the Standard Webhooks webhook-signature value, "v1,<base64>",
// an HMAC-SHA256 over "<msgID>.<unix seconds>.<body>". A secret of the form
// "whsec_<base64>" signs with the decoded key, as the spec's libraries do;
// any other secret signs with its raw bytes.
func Sign(secret, msgID string, ts time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(webhookMAC(secret, msgID, ts, body))
}

// Verify reports whether header (a webhook-signature value, possibly several
// space-separated signatures, as during a secret rotation) holds a valid v1
// signature for the message. Comparison is constant-time. Checking that ts is
// recent, against replays, is the receiver's policy and is not done here.
func Verify(secret, msgID string, ts time.Time, body []byte, header string) bool {
	want := webhookMAC(secret, msgID, ts, body)
	ok := false
	for _, sig := range strings.Fields(header) {
		enc, found := strings.CutPrefix(sig, "v1,")
		if !found {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(enc)
		if err == nil && hmac.Equal(got, want) {
			ok = true // keep going: the time taken must not say which one matched
		}
	}
	return ok
}

func webhookMAC(secret, msgID string, ts time.Time, body []byte) []byte {
	mac := hmac.New(sha256.New, webhookKey(secret))
	mac.Write([]byte(msgID + "." + strconv.FormatInt(ts.Unix(), 10) + "."))
	mac.Write(body)
	return mac.Sum(nil)
}

// webhookKey decodes a "whsec_" secret; a malformed or empty one is treated
// as a plain secret rather than signing with no key.
func webhookKey(secret string) []byte {
	if enc, ok := strings.CutPrefix(secret, webhookSecretPrefix); ok {
		if key, err := base64.StdEncoding.DecodeString(enc); err == nil && len(key) > 0 {
			return key
		}
	}
	return []byte(secret)
}

// reservedHeaders are set by the Sender alone: a repeater's own header must
// not forge the signature, change the id receivers deduplicate on, or
// mislabel the body; nor frame the request, which net/http does from the
// request itself (host, length, encoding, connection).
var reservedHeaders = map[string]bool{
	http.CanonicalHeaderKey(HeaderWebhookID):        true,
	http.CanonicalHeaderKey(HeaderWebhookTimestamp): true,
	http.CanonicalHeaderKey(HeaderWebhookSignature): true,
	"Content-Type": true,
	"User-Agent":   true,
	"Host":         true, "Content-Length": true, "Transfer-Encoding": true,
	"Connection": true, "Te": true, "Trailer": true, "Upgrade": true,
}

// IsReservedHeader reports whether name (any case) is a header only the
// Sender (or net/http) sets; the API refuses it in a repeater's headers.
func IsReservedHeader(name string) bool { return reservedHeaders[http.CanonicalHeaderKey(name)] }
