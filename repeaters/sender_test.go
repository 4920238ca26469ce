package repeaters

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"repeaterd/store"
)

// signalTimeout bounds every wait on a signal, so a bug fails the test
// instead of hanging it.
const signalTimeout = 10 * time.Second

// newHTTPSender returns a Sender closed when the test ends.
func newHTTPSender(t *testing.T, cfg SenderConfig) *Sender {
	t.Helper()
	s := NewSender(cfg)
	t.Cleanup(s.Close)
	return s
}

func httpRepeater(url string) *store.Repeater {
	return &store.Repeater{ID: 1, Domain: "d1", URL: url, RequestMethod: http.MethodPost, TimeoutMS: 5000}
}

func httpRecord(id int64, body string) *store.ReadyRecord {
	return &store.ReadyRecord{
		RepeatRecord: store.RepeatRecord{ID: id, Domain: "d1", RepeaterID: 1},
		ContentType:  "application/json",
		Body:         []byte(body),
	}
}

func httpRecords(ids ...int64) []store.ReadyRecord {
	recs := make([]store.ReadyRecord, len(ids))
	for i, id := range ids {
		recs[i] = *httpRecord(id, "{}")
	}
	return recs
}

// newHTTPSink starts a loopback server closed when the test ends.
func newHTTPSink(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// awaitSignal waits for ch to close or deliver.
func awaitSignal[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(signalTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func TestSendClassification(t *testing.T) {
	var redirected atomic.Int32
	srv := newHTTPSink(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/landed" {
			redirected.Add(1)
			return
		}
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		if code >= 300 && code < 400 {
			w.Header().Set("Location", "/landed")
		}
		w.WriteHeader(code)
		io.WriteString(w, "status "+strconv.Itoa(code))
	})
	tests := []struct {
		code    int
		backoff store.Int32Array
		want    store.State
	}{
		{200, nil, store.StateSuccess},
		{201, nil, store.StateSuccess},
		{202, nil, store.StateSuccess},
		{204, nil, store.StateSuccess},
		{200, store.Int32Array{200}, store.StateSuccess}, // delivered is delivered
		{301, nil, store.StatePayloadRejected},
		{302, nil, store.StatePayloadRejected},
		{307, nil, store.StatePayloadRejected},
		{308, nil, store.StatePayloadRejected},
		{400, nil, store.StatePayloadRejected},
		{401, nil, store.StatePayloadRejected},
		{404, nil, store.StatePayloadRejected},
		{408, nil, store.StateFail},
		{409, nil, store.StatePayloadRejected},
		{409, store.Int32Array{409, 423}, store.StateFail},
		{422, nil, store.StatePayloadRejected},
		{429, nil, store.StateFail},
		{500, nil, store.StateFail},
		{501, nil, store.StatePayloadRejected},
		{502, nil, store.StateFail},
		{503, nil, store.StateFail},
		{504, nil, store.StateFail},
		{505, nil, store.StatePayloadRejected},
		{520, store.Int32Array{520}, store.StateFail},
	}
	s := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true})
	for _, tt := range tests {
		r := httpRepeater(srv.URL + "/hook?code=" + strconv.Itoa(tt.code))
		r.BackoffCodes = tt.backoff
		out := s.Send(context.Background(), r, httpRecord(7, "{}"))
		if out.State != tt.want || out.StatusCode != tt.code || out.RecordID != 7 {
			t.Errorf("HTTP %d (backoff_codes %v): got %s/%d for record %d, want %s/%d",
				tt.code, tt.backoff, out.State, out.StatusCode, out.RecordID, tt.want, tt.code)
		}
		if tt.code != 204 && out.Message != "status "+strconv.Itoa(tt.code) {
			t.Errorf("HTTP %d: message %q, want the response body", tt.code, out.Message)
		}
		if out.AttemptedAt.IsZero() || out.Duration <= 0 {
			t.Errorf("HTTP %d: AttemptedAt %v, Duration %v; want both set", tt.code, out.AttemptedAt, out.Duration)
		}
	}
	if n := redirected.Load(); n != 0 {
		t.Errorf("%d redirects were followed", n)
	}
}

func TestSendTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := newHTTPSink(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // lets the server notice the client hang up
		// Hold the request until the client gives up.
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	r := httpRepeater(srv.URL)
	r.TimeoutMS = 50
	out := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true}).Send(context.Background(), r, httpRecord(1, "{}"))
	if out.State != store.StateFail || out.StatusCode != 0 || !strings.Contains(out.Message, "timed out (timeout 50ms)") {
		t.Fatalf("outcome = %+v; want a Fail that says it timed out", out)
	}
}

func TestSendConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	out := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true}).
		Send(context.Background(), httpRepeater("http://"+addr+"/hook?token=s3cret"), httpRecord(1, "{}"))
	if out.State != store.StateFail || out.StatusCode != 0 || !strings.Contains(out.Message, "connection error") ||
		!strings.Contains(out.Message, "refused") {
		t.Fatalf("outcome = %+v; want a Fail for the refused connection", out)
	}
	if strings.Contains(out.Message, "s3cret") {
		t.Errorf("message %q repeats the URL's query", out.Message)
	}
}

func TestSendInvalidURL(t *testing.T) {
	s := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true})
	for _, raw := range []string{"ftp://example.com/", "http://u:p@127.0.0.1/", "http://"} {
		if out := s.Send(context.Background(), httpRepeater(raw), httpRecord(1, "{}")); out.State != store.StateFail ||
			!strings.HasPrefix(out.Message, "not sent: url") {
			t.Errorf("Send to %q = %+v; want a Fail that names the URL problem", raw, out)
		}
	}
}

func TestSendRetryAfter(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	srv := newHTTPSink(t, func(w http.ResponseWriter, r *http.Request) {
		if v := r.URL.Query().Get("ra"); v != "" {
			w.Header().Set("Retry-After", v)
		}
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		w.WriteHeader(code)
	})
	tests := []struct {
		code int
		ra   string
		want time.Duration
	}{
		{429, "120", 120 * time.Second},
		{503, now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{429, "999999999", time.Hour}, // capped at MaxRetryAfter
		{429, "-3", 0},
		{429, "soon", 0},
		{429, "", 0},
		{200, "30", 30 * time.Second}, // any response that has one
	}
	s := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true, MaxRetryAfter: time.Hour, Clock: NewFakeClock(now)})
	for _, tt := range tests {
		u := srv.URL + "/?code=" + strconv.Itoa(tt.code) + "&ra=" + strings.ReplaceAll(tt.ra, " ", "%20")
		if out := s.Send(context.Background(), httpRepeater(u), httpRecord(1, "{}")); out.RetryAfter != tt.want {
			t.Errorf("%d with Retry-After %q: RetryAfter = %v, want %v", tt.code, tt.ra, out.RetryAfter, tt.want)
		}
	}
}

// verifyingReceiver answers 204 to requests whose signature verifies with
// secret, 401 otherwise, and passes each request's headers to seen.
func verifyingReceiver(secret string, seen chan<- http.Header) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen <- r.Header.Clone()
		secs, err := strconv.ParseInt(r.Header.Get(HeaderWebhookTimestamp), 10, 64)
		if err != nil || r.Method != http.MethodPost ||
			!Verify(secret, r.Header.Get(HeaderWebhookID), time.Unix(secs, 0), body, r.Header.Get(HeaderWebhookSignature)) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func TestSendHeadersAndSignature(t *testing.T) {
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	seen := make(chan http.Header, 4)
	srv := newHTTPSink(t, verifyingReceiver(secret, seen))
	r := httpRepeater(srv.URL)
	r.SigningSecret = secret
	r.Headers = map[string]string{
		"Authorization":     "Bearer tok",
		"X-Custom":          "yes",
		"webhook-id":        "forged",
		"Webhook-Signature": "v1,forged",
		"WEBHOOK-TIMESTAMP": "1",
		"content-type":      "text/evil",
		"user-agent":        "evil",
	}
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := NewFakeClock(now)
	s := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true, Version: "1.2.3", Clock: clock})

	if out := s.Send(context.Background(), r, httpRecord(42, `{"a":1}`)); out.State != store.StateSuccess || out.StatusCode != 204 {
		t.Fatalf("outcome = %+v; want the receiver to verify the signature", out)
	}
	h := awaitSignal(t, seen, "the request")
	want := map[string]string{
		"Webhook-Id":        "msg_42",
		"Webhook-Timestamp": strconv.FormatInt(now.Unix(), 10),
		"Content-Type":      "application/json",
		"User-Agent":        "repeaterd/1.2.3",
		"Authorization":     "Bearer tok",
		"X-Custom":          "yes",
	}
	for k, v := range want {
		if got := h.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("header %s = %q, want exactly %q", k, got, v)
		}
	}
	if sig := h.Values("Webhook-Signature"); len(sig) != 1 || !strings.HasPrefix(sig[0], "v1,") || sig[0] == "v1,forged" {
		t.Errorf("webhook-signature = %q, want one real v1 signature", sig)
	}

	// A retry later carries the same webhook-id.
	clock.Advance(time.Hour)
	s.Send(context.Background(), r, httpRecord(42, `{"a":1}`))
	if h := awaitSignal(t, seen, "the retry"); h.Get("Webhook-Id") != "msg_42" {
		t.Errorf("retry webhook-id = %q, want msg_42", h.Get("Webhook-Id"))
	}

	// A receiver holding another secret refuses the signature.
	wrong := newHTTPSink(t, verifyingReceiver("whsec_"+base64.StdEncoding.EncodeToString([]byte("another key")), seen))
	r.URL = wrong.URL
	if out := s.Send(context.Background(), r, httpRecord(42, `{"a":1}`)); out.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong secret: outcome %+v, want 401", out)
	}
	awaitSignal(t, seen, "the request to the wrong receiver")
}

func TestSendUnsignedWithoutSecret(t *testing.T) {
	seen := make(chan http.Header, 1)
	srv := newHTTPSink(t, verifyingReceiver("", seen))
	r := httpRepeater(srv.URL)
	r.Headers = map[string]string{"Webhook-Signature": "v1,forged"}
	r.RequestMethod = "" // defaults to POST
	newHTTPSender(t, SenderConfig{AllowPrivateTargets: true}).Send(context.Background(), r, httpRecord(1, "{}"))
	h := awaitSignal(t, seen, "the request")
	if sig := h.Values("Webhook-Signature"); len(sig) != 0 {
		t.Errorf("webhook-signature %q sent for a repeater without a secret", sig)
	}
	if ua := h.Get("User-Agent"); ua != "repeaterd/dev" {
		t.Errorf("User-Agent = %q, want repeaterd/dev", ua)
	}
}

func TestSendMessageRedactsSecret(t *testing.T) {
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	srv := newHTTPSink(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "debug: your secret is whsec_"+key+" and key "+key)
	})
	r := httpRepeater(srv.URL)
	r.SigningSecret = "whsec_" + key
	out := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true}).Send(context.Background(), r, httpRecord(1, "{}"))
	if strings.Contains(out.Message, key) || !strings.Contains(out.Message, "[redacted]") {
		t.Fatalf("message %q leaks the signing secret", out.Message)
	}
}

// TestSendResponseCap answers with a 10 MiB body and then holds the
// connection open: a sender that read past its cap would hang until its
// timeout and report it.
func TestSendResponseCap(t *testing.T) {
	srv := newHTTPSink(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("é", 32<<10)) // 64 KiB of two-byte runes
		for range 160 {
			if _, err := w.Write(chunk); err != nil {
				return // the client hung up, as it should
			}
		}
		<-r.Context().Done()
	})
	r := httpRepeater(srv.URL)
	r.TimeoutMS = int(signalTimeout / time.Millisecond)
	out := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true}).Send(context.Background(), r, httpRecord(1, "{}"))
	if out.State != store.StateSuccess || strings.Contains(out.Message, "reading the response") || out.Duration >= signalTimeout {
		t.Fatalf("outcome %s/%d %.100q; want Success without waiting for the whole body", out.State, out.StatusCode, out.Message)
	}
	if len(out.Message) > MaxMessageBytes || !utf8.ValidString(out.Message) || !strings.HasPrefix(out.Message, "éé") {
		t.Fatalf("message of %d bytes (valid UTF-8: %v); want an excerpt of at most %d", len(out.Message), utf8.ValidString(out.Message), MaxMessageBytes)
	}
}

// newConnCountingSink starts a loopback server, closed when the test ends,
// that counts the connections it accepts.
func newConnCountingSink(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	conns := new(atomic.Int32)
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, conns
}

func TestSendReusesConnections(t *testing.T) {
	srv, conns := newConnCountingSink(t, func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok")
	})
	s := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true})
	for i := range 3 {
		if out := s.Send(context.Background(), httpRepeater(srv.URL), httpRecord(int64(i), "{}")); out.State != store.StateSuccess {
			t.Fatalf("send %d: %+v", i, out)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("3 sequential sends opened %d connections, want 1", n)
	}
}

func TestSendClipMessage(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"short", "ok"},
		{"long ascii", strings.Repeat("a", 5000)},
		{"long multibyte", strings.Repeat("日本", 1000)},
		{"invalid utf8", "ab\xff\xfecd"},
		{"nul", "a\x00b"},
	}
	for _, tt := range tests {
		got := clipAttemptMessage(tt.in)
		if len(got) > MaxMessageBytes || !utf8.ValidString(got) || strings.ContainsRune(got, 0) {
			t.Errorf("%s: clipped to %d bytes, valid %v, NUL %v", tt.name, len(got), utf8.ValidString(got), strings.ContainsRune(got, 0))
		}
		if len(tt.in) <= MaxMessageBytes && utf8.ValidString(tt.in) && !strings.ContainsRune(tt.in, 0) && got != tt.in {
			t.Errorf("%s: storable message changed to %q", tt.name, got)
		}
	}
}

// concurrencySink counts requests in flight. Requests hold until release is
// closed; full is closed when want requests are in flight at once.
type concurrencySink struct {
	want          int32
	cur, peak     atomic.Int32
	hits          atomic.Int32
	full, release chan struct{}
	fullOnce      sync.Once
}

func newConcurrencySink(want int32) *concurrencySink {
	return &concurrencySink{want: want, full: make(chan struct{}), release: make(chan struct{})}
}

// excessWindow is how long a full sink keeps holding requests before it
// releases them. A request beyond the cap is the absence of an event, which
// no signal can announce, so this one test waits a fixed time for it.
const excessWindow = 100 * time.Millisecond

// holdThenRelease gives requests beyond the cap time to arrive while the
// ones in flight are held, then lets all of them finish.
func (c *concurrencySink) holdThenRelease() {
	time.Sleep(excessWindow)
	close(c.release)
}

func (c *concurrencySink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	n := c.cur.Add(1)
	for p := c.peak.Load(); n > p && !c.peak.CompareAndSwap(p, n); p = c.peak.Load() {
	}
	if n >= c.want {
		c.fullOnce.Do(func() { close(c.full) })
	}
	select {
	case <-c.release:
	case <-r.Context().Done():
	}
	c.cur.Add(-1) // before the response, so the client's count is never lower
	c.hits.Add(1)
}

func TestSendBatchConcurrency(t *testing.T) {
	const limit = 3
	sink := newConcurrencySink(limit)
	srv := newHTTPSink(t, sink.ServeHTTP)
	recs := httpRecords(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
	s := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true})

	type result struct {
		outcomes []store.Outcome
		unsent   []int64
	}
	done := make(chan result, 1)
	go func() {
		o, u := s.SendBatch(context.Background(), httpRepeater(srv.URL), recs, limit)
		done <- result{o, u}
	}()
	awaitSignal(t, sink.full, "the batch to fill its concurrency")
	sink.holdThenRelease()
	res := awaitSignal(t, done, "the batch")

	if p := sink.peak.Load(); p != limit {
		t.Errorf("peak concurrency %d, want %d", p, limit)
	}
	if len(res.outcomes) != len(recs) || len(res.unsent) != 0 {
		t.Fatalf("%d outcomes, unsent %v; want %d and none", len(res.outcomes), res.unsent, len(recs))
	}
	for i, o := range res.outcomes {
		if o.RecordID != recs[i].ID || o.State != store.StateSuccess {
			t.Errorf("outcome %d = record %d %s, want record %d success", i, o.RecordID, o.State, recs[i].ID)
		}
	}
}

func TestSendBatchMaxInFlight(t *testing.T) {
	const maxInFlight = 2
	sink := newConcurrencySink(maxInFlight)
	srv := newHTTPSink(t, sink.ServeHTTP)
	s := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true, MaxInFlight: maxInFlight})

	var wg sync.WaitGroup
	counts := make([]int, 2)
	for b := range 2 {
		wg.Go(func() {
			recs := httpRecords(int64(b*10+1), int64(b*10+2), int64(b*10+3), int64(b*10+4))
			outcomes, _ := s.SendBatch(context.Background(), httpRepeater(srv.URL), recs, 4)
			counts[b] = len(outcomes)
		})
	}
	awaitSignal(t, sink.full, "the batches to fill the process-wide cap")
	sink.holdThenRelease()
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()
	awaitSignal(t, allDone, "both batches")

	if p := sink.peak.Load(); p != maxInFlight {
		t.Errorf("peak in flight across two batches %d, want %d", p, maxInFlight)
	}
	if counts[0] != 4 || counts[1] != 4 || sink.hits.Load() != 8 {
		t.Errorf("outcomes %v, hits %d; want 4 per batch, 8 in all", counts, sink.hits.Load())
	}
}

func TestSendBatchCancelled(t *testing.T) {
	started, release := make(chan struct{}, 3), make(chan struct{})
	srv := newHTTPSink(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // lets the server notice the client hang up
		started <- struct{}{}
		// Held until the client aborts.
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	s := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	type result struct {
		outcomes []store.Outcome
		unsent   []int64
	}
	done := make(chan result, 1)
	go func() {
		o, u := s.SendBatch(ctx, httpRepeater(srv.URL), httpRecords(1, 2, 3), 1)
		done <- result{o, u}
	}()
	awaitSignal(t, started, "the first request")
	cancel()
	res := awaitSignal(t, done, "the cancelled batch")

	if len(res.outcomes) != 1 || res.outcomes[0].RecordID != 1 || res.outcomes[0].State != store.StateFail ||
		!strings.Contains(res.outcomes[0].Message, "cancelled") {
		t.Errorf("outcomes = %+v; want one Fail for record 1, cancelled in flight", res.outcomes)
	}
	if !slices.Equal(res.unsent, []int64{2, 3}) {
		t.Errorf("unsent = %v, want [2 3]", res.unsent)
	}
	if len(started) != 0 {
		t.Errorf("%d more requests started after cancellation", len(started))
	}
}

func TestSendBatchAlreadyCancelled(t *testing.T) {
	var hits atomic.Int32
	srv := newHTTPSink(t, func(http.ResponseWriter, *http.Request) { hits.Add(1) })
	s := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	outcomes, unsent := s.SendBatch(ctx, httpRepeater(srv.URL), httpRecords(1, 2), 4)
	if len(outcomes) != 0 || !slices.Equal(unsent, []int64{1, 2}) || hits.Load() != 0 {
		t.Errorf("outcomes %v, unsent %v, hits %d; want nothing sent", outcomes, unsent, hits.Load())
	}
	if out := s.Send(ctx, httpRepeater(srv.URL), httpRecord(3, "{}")); out.State != store.StateFail ||
		!strings.HasPrefix(out.Message, "not sent") || hits.Load() != 0 {
		t.Errorf("Send with an ended context = %+v; want a Fail, not sent", out)
	}
}

// A repeater saved under a higher cap (--max-timeout lowered since) waits
// no longer than the cap now in force.
func TestSendTimeoutIsCappedByMaxTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := newHTTPSink(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	r := httpRepeater(srv.URL)
	r.TimeoutMS = 60_000
	began := time.Now()
	out := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true, MaxTimeout: 80 * time.Millisecond}).
		Send(context.Background(), r, httpRecord(1, "{}"))
	if out.State != store.StateFail || !strings.Contains(out.Message, "timed out (timeout 80ms)") {
		t.Fatalf("outcome = %+v; want a Fail that says it timed out at the cap", out)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Fatalf("the send took %s; the cap is 80ms", took)
	}
}

// TestSendKeepsConnectionsOfABusyHost: many repeaters often share one
// receiving host. Waves of more concurrent requests than a small idle pool
// keeps must reuse the first wave's connections, not close and re-dial
// (with TLS, a handshake each) the surplus every wave.
func TestSendKeepsConnectionsOfABusyHost(t *testing.T) {
	const perWave, waves = 100, 3
	var sink atomic.Pointer[concurrencySink]
	srv, conns := newConnCountingSink(t, func(w http.ResponseWriter, r *http.Request) {
		sink.Load().ServeHTTP(w, r)
	})
	s := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true})
	recs := make([]store.ReadyRecord, perWave)
	for i := range recs {
		recs[i] = *httpRecord(int64(i+1), "{}")
	}
	for wave := range waves {
		wait := newConcurrencySink(perWave)
		sink.Store(wait)
		done := make(chan []store.Outcome, 1)
		go func() {
			out, _ := s.SendBatch(context.Background(), httpRepeater(srv.URL), recs, perWave)
			done <- out
		}()
		awaitSignal(t, wait.full, fmt.Sprintf("wave %d's %d requests in flight together", wave, perWave))
		close(wait.release)
		for _, o := range awaitSignal(t, done, "the wave") {
			if o.State != store.StateSuccess {
				t.Fatalf("wave %d: %+v", wave, o)
			}
		}
	}
	if n := conns.Load(); n != perWave {
		t.Errorf("%d waves of %d requests in flight together opened %d connections, want %d", waves, perWave, n, perWave)
	}
}
