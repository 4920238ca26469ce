package repeaters

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"time"

	"repeaterd/store"
)

// ProbeResult is what a test request to a repeater's endpoint got.
type ProbeResult struct {
	// WebhookID is the test request's webhook-id ("msg_test_…"), so the
	// receiver's logs can be searched for it.
	WebhookID string `json:"webhook_id"`
	// State is how a delivery with this answer would be classified:
	// success, fail or payload_rejected.
	State      string `json:"state"`
	OK         bool   `json:"ok"`          // the endpoint answered 2xx
	StatusCode int    `json:"status_code"` // 0 when there was no answer
	DurationMS int64  `json:"duration_ms"`
	// Excerpt is the answer's body (or the error), as an attempt would
	// store it: at most 1 KiB, credentials redacted.
	Excerpt string `json:"excerpt"`
}

// probeEvent is the body of a test request.
type probeEvent struct {
	Type       string    `json:"type"`
	RepeaterID int64     `json:"repeater_id"`
	WebhookID  string    `json:"webhook_id"`
	SentAt     time.Time `json:"sent_at"`
}

// ProbeEventType is the type in a test request's body.
const ProbeEventType = "repeaterd.test"

// Probe sends a signed test request to r now, through the same path as a
// delivery (auth, OAuth2 token, signature, TLS, proxy, SSRF guard,
// timeout, the in-flight cap), and reports the answer. It writes nothing.
func (s *Sender) Probe(ctx context.Context, r *store.Repeater) ProbeResult {
	id := "msg_test_" + rand.Text()[:16]
	res := ProbeResult{WebhookID: id, State: store.StateFail.String()}
	if !takeSendSlot(ctx, s.slots) {
		res.Excerpt = "not sent: " + context.Cause(ctx).Error()
		return res
	}
	defer func() { <-s.slots }()
	body, _ := json.Marshal(probeEvent{Type: ProbeEventType, RepeaterID: r.ID, WebhookID: id, SentAt: s.cfg.Clock.Now().UTC()})
	out := s.deliver(ctx, r, message{id: id, body: body, contentType: "application/json"})
	res.State, res.StatusCode, res.Excerpt = out.State.String(), out.StatusCode, out.Message
	res.OK = out.State == store.StateSuccess
	res.DurationMS = out.Duration.Milliseconds()
	return res
}
