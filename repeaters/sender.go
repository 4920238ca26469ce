package repeaters

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"repeaterd/store"
)

// Sender defaults and limits.
const (
	DefaultSenderMaxInFlight   = 256
	DefaultSenderMaxRetryAfter = 168 * time.Hour // the max repeater backoff
	DefaultSenderVersion       = "dev"
	DefaultRequestTimeout      = 30 * time.Second // a repeater's timeout when timeout_ms is 0
	MaxResponseBytes           = 64 << 10         // response body read per attempt
	MaxResponseHeaderBytes     = 64 << 10         // response headers read per attempt; more fails the attempt
	MaxMessageBytes            = 1024             // an attempt message, as stored
)

const (
	// senderDialTimeout bounds a connect. net/http dials apart from the
	// request's context (so another request may use the connection), which
	// leaves this as the only limit on a dial to a black-holed address.
	senderDialTimeout = 10 * time.Second
)

// SenderConfig configures a Sender.
type SenderConfig struct {
	// AllowPrivateTargets lifts the SSRF guard so loopback, private,
	// link-local and other internal addresses may be dialled: for local runs,
	// tests and benchmarks (REPEATERD_ALLOW_PRIVATE_TARGETS). Defaults to false.
	AllowPrivateTargets bool
	// MaxInFlight caps the HTTP requests in flight across every batch and
	// single send of the process, so many repeaters cannot exhaust sockets or
	// memory together. Defaults to 256.
	MaxInFlight int
	// MaxRetryAfter caps an endpoint's Retry-After. It should equal the max
	// backoff, so a broken endpoint cannot park a repeater longer than
	// failures would. Defaults to 168h.
	MaxRetryAfter time.Duration
	// Version is sent as User-Agent "repeaterd/<version>" so receivers can
	// tell deliveries and releases apart. Defaults to "dev".
	Version string
	// Clock stamps attempts and webhook timestamps and reads Retry-After
	// dates. Defaults to the system clock.
	Clock Clock
	// MaxTimeout caps every request's timeout, whatever the repeater was
	// saved with: lowering --max-timeout reaches repeaters saved under a
	// higher cap at once. Defaults to store.DefaultMaxTimeout.
	MaxTimeout time.Duration
	// EgressProxy is an HTTP proxy URL every request leaves through
	// (REPEATERD_EGRESS_PROXY, proxy.go); the SSRF policy still applies to
	// the destination. Defaults to none.
	EgressProxy string
}

// WithDefaults returns c with unset or non-positive fields set to defaults.
func (c SenderConfig) WithDefaults() SenderConfig {
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultSenderMaxInFlight
	}
	if c.MaxRetryAfter <= 0 {
		c.MaxRetryAfter = DefaultSenderMaxRetryAfter
	}
	if c.MaxTimeout <= 0 {
		c.MaxTimeout = store.DefaultMaxTimeout
	}
	c.Version = cmp.Or(c.Version, DefaultSenderVersion)
	c.Clock = clockOr(c.Clock)
	return c
}

// Sender delivers records over HTTP and classifies each attempt. One Sender
// is shared by the whole process: its transport pools connections and its
// slots hold the process-wide in-flight cap.
type Sender struct {
	cfg       SenderConfig
	transport *http.Transport
	client    *http.Client
	slots     chan struct{} // one per request in flight, process-wide
	proxyErr  error         // an unusable EgressProxy: every send fails saying so

	tokens     *tokenCache // OAuth2 access tokens by connection (oauth.go)
	tlsMu      sync.Mutex
	tlsClients map[int64]tlsClient // clients of connections with their own TLS (proxy.go)
}

// NewSender returns a Sender configured by cfg (see SenderConfig.WithDefaults).
func NewSender(cfg SenderConfig) *Sender {
	cfg = cfg.WithDefaults()
	dialer := &net.Dialer{Timeout: senderDialTimeout, KeepAlive: 30 * time.Second}
	if !cfg.AllowPrivateTargets {
		dialer.Control = guardDial
	}
	transport := &http.Transport{
		Proxy:             nil, // only EgressProxy, which judges destinations itself (proxy.go)
		DialContext:       dialer.DialContext,
		ForceAttemptHTTP2: true, // a custom DialContext turns HTTP/2 off otherwise
		// Many repeaters often share one receiving host, so one host may
		// have every request in flight: keep all their connections for the
		// next wave rather than re-dial (and re-handshake) the surplus. The
		// in-flight cap bounds how many there can be.
		MaxIdleConns:          cfg.MaxInFlight,
		MaxIdleConnsPerHost:   cfg.MaxInFlight,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		// net/http's default is 10 MiB per response: a hostile endpoint
		// could hold that much per request in flight.
		MaxResponseHeaderBytes: MaxResponseHeaderBytes,
	}
	proxy, proxyErr := ParseEgressProxy(cfg.EgressProxy)
	if proxy != nil {
		// The guard judges the destination before the request instead: the
		// only address dialled is the proxy's.
		routeThroughProxy(transport, &net.Dialer{Timeout: senderDialTimeout, KeepAlive: 30 * time.Second}, proxy, cfg.AllowPrivateTargets)
	}
	client := &http.Client{
		Transport: transport,
		// A redirect is the endpoint's answer, not a new destination: following
		// it would resend the payload somewhere the repeater never named.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Sender{
		cfg:        cfg,
		transport:  transport,
		client:     client,
		slots:      make(chan struct{}, cfg.MaxInFlight),
		proxyErr:   proxyErr,
		tokens:     newTokenCache(),
		tlsClients: map[int64]tlsClient{},
	}
}

// Close closes idle connections (of connections' own TLS clients too). The
// Sender stays usable.
func (s *Sender) Close() {
	s.transport.CloseIdleConnections()
	s.tlsMu.Lock()
	defer s.tlsMu.Unlock()
	for _, tc := range s.tlsClients {
		tc.transport.CloseIdleConnections()
	}
}

// Send delivers one record and classifies the result; every failure is an
// Outcome, never an error. It waits for a process-wide slot first; if ctx
// ends before one frees, the outcome is a Fail saying it was not sent.
func (s *Sender) Send(ctx context.Context, r *store.Repeater, rec *store.ReadyRecord) store.Outcome {
	if !takeSendSlot(ctx, s.slots) {
		return store.Outcome{
			RecordID:    rec.ID,
			State:       store.StateFail,
			Message:     "not sent: " + context.Cause(ctx).Error(),
			AttemptedAt: s.cfg.Clock.Now(),
		}
	}
	defer func() { <-s.slots }()
	return s.send(ctx, r, rec)
}

// SendBatch sends recs with at most concurrency (at least 1) requests in
// flight for this batch, and within the process-wide MaxInFlight cap. It
// returns one outcome per record it attempted, in the order of recs, and the
// ids of the records it never started because ctx ended first, so the caller
// can release them. Records are started in order, so the attempted ones are
// a prefix of recs. A request in flight when ctx ends is aborted and counts
// as an attempt: the endpoint may have received it.
func (s *Sender) SendBatch(ctx context.Context, r *store.Repeater, recs []store.ReadyRecord, concurrency int) (outcomes []store.Outcome, unsent []int64) {
	return s.sendUntil(ctx, r, recs, concurrency, nil)
}

// takeSendSlot takes a slot of a semaphore, or reports false once ctx ends.
func takeSendSlot(ctx context.Context, slots chan struct{}) bool {
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	if ctx.Err() != nil { // select picks at random when both were ready
		<-slots
		return false
	}
	return true
}

// send makes one attempt; the caller holds its slots.
func (s *Sender) send(ctx context.Context, r *store.Repeater, rec *store.ReadyRecord) store.Outcome {
	if len(rec.Body) == 0 {
		// Nothing to send: done without bothering the endpoint.
		return store.Outcome{RecordID: rec.ID, State: store.StateEmpty, Message: "empty payload: nothing to send", AttemptedAt: s.cfg.Clock.Now()}
	}
	out := s.deliver(ctx, r, message{id: WebhookID(rec.ID), body: rec.Body, contentType: rec.ContentType})
	out.RecordID = rec.ID
	return out
}

// message is what one request carries.
type message struct {
	id          string // webhook-id
	body        []byte
	contentType string
}

// deliver makes one attempt at sending m to r and classifies it.
func (s *Sender) deliver(ctx context.Context, r *store.Repeater, m message) store.Outcome {
	at, began := s.cfg.Clock.Now(), time.Now()
	out := store.Outcome{State: store.StateFail, AttemptedAt: at}
	timeout := s.Timeout(r)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tokens := s.exchange(ctx, r, m, at, &out, timeout)
	out.Message = clipAttemptMessage(redactCredentials(out.Message, r, tokens...))
	out.Duration = time.Since(began)
	return out
}

// exchange sends m and reads the answer into out. An endpoint that answers
// 401 to an OAuth2 token gets the request once more with a fresh token
// before the attempt counts. It returns the tokens sent, for redaction.
func (s *Sender) exchange(ctx context.Context, r *store.Repeater, m message, at time.Time, out *store.Outcome, timeout time.Duration) (tokens []string) {
	client, err := s.clientFor(r.Connection)
	if err != nil {
		out.Message = "not sent: " + err.Error()
		return nil
	}
	for try := 0; ; try++ {
		req, token, err := s.newRequest(ctx, r, m, at)
		tokens = append(tokens, token)
		if err != nil {
			out.Message = "not sent: " + err.Error()
			return tokens
		}
		resp, err := client.Do(req)
		if err != nil {
			out.Message = describeSendError(err, timeout)
			return tokens
		}
		if resp.StatusCode == http.StatusUnauthorized && try == 0 && usesOAuth2(r) {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxResponseBytes))
			resp.Body.Close()
			s.tokens.invalidate(r.Connection, token)
			continue
		}
		s.readResponse(out, r, resp)
		credentialsRefused(out, r)
		return tokens
	}
}

// Timeout is a request's timeout to r: the repeater's (the default when
// unset), at most MaxTimeout.
func (s *Sender) Timeout(r *store.Repeater) time.Duration {
	d := r.Timeout()
	if d <= 0 {
		d = DefaultRequestTimeout
	}
	return min(d, s.cfg.MaxTimeout)
}

// newRequest builds m's request to r, and returns the OAuth2 token it
// carries ("" when none).
func (s *Sender) newRequest(ctx context.Context, r *store.Repeater, m message, at time.Time) (*http.Request, string, error) {
	if s.proxyErr != nil {
		return nil, "", s.proxyErr
	}
	if _, err := parseTargetURL(r.URL); err != nil {
		return nil, "", err
	}
	method := cmp.Or(r.RequestMethod, http.MethodPost) // net/http would default to GET
	req, err := http.NewRequestWithContext(ctx, method, r.URL, bytes.NewReader(m.body))
	if err != nil {
		return nil, "", err
	}
	for k, v := range r.Headers {
		if !IsReservedHeader(k) {
			req.Header.Set(k, v)
		}
	}
	req.Header.Set(HeaderWebhookID, m.id)
	req.Header.Set(HeaderWebhookTimestamp, strconv.FormatInt(at.Unix(), 10))
	if sig := signatureHeader(r, m.id, at, m.body); sig != "" {
		req.Header.Set(HeaderWebhookSignature, sig)
	}
	req.Header.Set("User-Agent", "repeaterd/"+s.cfg.Version)
	if m.contentType != "" {
		req.Header.Set("Content-Type", m.contentType)
	}
	token, err := s.applyAuth(ctx, r.Connection, req)
	return req, token, err
}

// readResponse classifies resp and keeps an excerpt of its body. At most
// MaxResponseBytes are read: a body that fits is read to EOF, so the
// connection goes back to the pool; a longer one is cut off by closing the
// connection, which is cheaper than downloading it.
func (s *Sender) readResponse(out *store.Outcome, r *store.Repeater, resp *http.Response) {
	defer resp.Body.Close()
	out.StatusCode = resp.StatusCode
	out.State = classifyStatus(resp.StatusCode, r.BackoffCodes)
	if d, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), s.cfg.Clock.Now()); ok {
		out.RetryAfter = min(d, s.cfg.MaxRetryAfter)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes))
	out.Message = cmp.Or(string(body), resp.Status)
	if err != nil {
		// The status already decided the outcome: a 2xx was delivered even
		// if its body then stalled. The error goes first, where clipping
		// cannot drop it.
		out.Message = "reading the response failed: " + err.Error() + "; body: " + out.Message
	}
}

// classifyStatus maps a final HTTP status to a record state. 2xx wins over
// backoff_codes so a delivered record is never sent again.
func classifyStatus(code int, backoffCodes store.Int32Array) store.State {
	switch {
	case code >= 200 && code < 300:
		return store.StateSuccess
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests,
		code == http.StatusInternalServerError, code == http.StatusBadGateway,
		code == http.StatusServiceUnavailable, code == http.StatusGatewayTimeout,
		backoffCodes.Contains(code):
		return store.StateFail
	}
	return store.StatePayloadRejected
}

// describeSendError words a request that got no response. The URL that
// net/http wraps around the cause is dropped: its query may hold a token.
func describeSendError(err error, timeout time.Duration) string {
	if pe, ok := errors.AsType[*privateTargetError](err); ok {
		return pe.Error()
	}
	var timedOut bool
	if ue, ok := errors.AsType[*url.Error](err); ok {
		timedOut, err = ue.Timeout(), ue.Err
	}
	switch {
	case timedOut || errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("timed out (timeout %s): %v", timeout, err)
	case errors.Is(err, context.Canceled):
		return "cancelled before a response: " + err.Error()
	}
	return "connection error: " + err.Error()
}

// clipAttemptMessage makes msg storable as an attempt's message.
func clipAttemptMessage(msg string) string { return store.Storable(msg, MaxMessageBytes) }
