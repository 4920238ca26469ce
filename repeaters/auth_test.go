package repeaters

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"repeaterd/store"
)

// headerSink notes the headers of every request and answers 200.
type headerSink struct {
	url string
	mu  sync.Mutex
	got []http.Header
}

func newHeaderSink(t *testing.T) *headerSink {
	s := &headerSink{}
	s.url = newHTTPSink(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		s.mu.Lock()
		s.got = append(s.got, r.Header.Clone())
		s.mu.Unlock()
	}).URL + "/hook"
	return s
}

func (s *headerSink) last() http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[len(s.got)-1]
}

func TestAuthTypesReachTheEndpoint(t *testing.T) {
	sink := newHeaderSink(t)
	sender := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true})
	tests := []struct {
		conn   store.Connection
		header string
		want   string
	}{
		{store.Connection{AuthType: store.AuthNone}, "Authorization", ""},
		{store.Connection{AuthType: store.AuthBasic, Username: "ada", Password: "p@ss:word"}, "Authorization",
			"Basic " + base64.StdEncoding.EncodeToString([]byte("ada:p@ss:word"))},
		{store.Connection{AuthType: store.AuthBearer, Token: "bearer-tok-123"}, "Authorization", "Bearer bearer-tok-123"},
		{store.Connection{AuthType: store.AuthAPIKey, APIKeyHeader: "X-Api-Key", APIKey: "key-456"}, "X-Api-Key", "key-456"},
	}
	for _, tt := range tests {
		t.Run(tt.conn.AuthType, func(t *testing.T) {
			r := httpRepeater(sink.url)
			r.Headers = map[string]string{"Authorization": "from-the-repeater"}
			c := tt.conn
			r.Connection = &c
			if out := sender.Send(context.Background(), r, httpRecord(1, `{}`)); out.State != store.StateSuccess {
				t.Fatalf("%s %q", out.State, out.Message)
			}
			want := tt.want
			if tt.conn.AuthType == store.AuthNone || tt.header != "Authorization" {
				if got := sink.last().Get("Authorization"); got != "from-the-repeater" {
					t.Fatalf("the repeater's own header is %q, want it kept", got)
				}
			}
			if tt.conn.AuthType == store.AuthNone {
				return
			}
			if got := sink.last().Get(tt.header); got != want {
				t.Fatalf("%s: %q, want %q", tt.header, got, want)
			}
		})
	}
}

// TestCredentialsRedactedFromEchoes: an endpoint (and a token endpoint)
// echoing every header back; no credential reaches the attempt message.
func TestCredentialsRedactedFromEchoes(t *testing.T) {
	echo := newHTTPSink(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		for k, v := range r.Header {
			fmt.Fprintf(w, "%s: %s\n", k, strings.Join(v, ","))
		}
	}).URL
	ts := newTokenServer(t, "client-1", "oauth-client-secret-xyz", 3600)
	sender := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true})
	until := time.Now().Add(time.Hour)
	conns := []store.Connection{
		{ID: 1, AuthType: store.AuthBasic, Username: "ada", Password: "basic-password-1"},
		{ID: 2, AuthType: store.AuthBearer, Token: "bearer-token-2"},
		{ID: 3, AuthType: store.AuthAPIKey, APIKeyHeader: "X-Key", APIKey: "api-key-3"},
		{ID: 4, AuthType: store.AuthOAuth2ClientCredentials, TokenURL: ts.url, ClientID: "client-1", ClientSecret: "oauth-client-secret-xyz", CredentialsIn: "header"},
		{ID: 5, AuthType: store.AuthOAuth2ClientCredentials, TokenURL: ts.url, ClientID: "client-1", ClientSecret: "wrong-secret-echoed", CredentialsIn: "body"},
	}
	for _, c := range conns {
		r := httpRepeater(echo)
		r.SigningSecret, r.PreviousSigningSecret, r.PreviousSecretUntil = "current-secret", "previous-secret", &until
		r.Connection = &c
		out := sender.Send(context.Background(), r, httpRecord(1, `{}`))
		if out.Message == "" {
			t.Fatalf("connection %d: empty message", c.ID)
		}
		secrets := append(c.Secrets(), "previous-secret", "current-secret", "tok-1", "tok-2",
			base64.StdEncoding.EncodeToString([]byte("ada:basic-password-1")),
			base64.StdEncoding.EncodeToString([]byte("client-1:oauth-client-secret-xyz")))
		for _, s := range secrets {
			if strings.Contains(out.Message, s) || strings.Contains(out.Message, url.QueryEscape(s)) {
				t.Errorf("connection %d (%s): attempt message carries %q:\n%s", c.ID, c.AuthType, s, out.Message)
			}
		}
		if !strings.Contains(out.Message, Redacted) {
			t.Errorf("connection %d: nothing was redacted from %q", c.ID, out.Message)
		}
	}
}

// rotationReceiver verifies signatures with the secrets it knows.
type rotationReceiver struct {
	mu      sync.Mutex
	secrets []string
	sigs    []string
}

func (rr *rotationReceiver) accept(secrets ...string) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	rr.secrets = secrets
}

func (rr *rotationReceiver) lastSignatures() int {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return len(strings.Fields(rr.sigs[len(rr.sigs)-1]))
}

func TestRotationBothSignaturesUntilTheDeadline(t *testing.T) {
	rr := &rotationReceiver{}
	url := newHTTPSink(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ts int64
		fmt.Sscan(r.Header.Get(HeaderWebhookTimestamp), &ts)
		sig := r.Header.Get(HeaderWebhookSignature)
		rr.mu.Lock()
		rr.sigs = append(rr.sigs, sig)
		secrets := rr.secrets
		rr.mu.Unlock()
		for _, s := range secrets {
			if Verify(s, r.Header.Get(HeaderWebhookID), time.Unix(ts, 0), body, sig) {
				return
			}
		}
		w.WriteHeader(http.StatusUnauthorized)
	}).URL
	clock := NewFakeClock(time.Now())
	sender := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true, Clock: clock})
	r := httpRepeater(url)
	r.SigningSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("the-old-key"))
	send := func(what string, want store.State, sigs int) {
		t.Helper()
		if out := sender.Send(context.Background(), r, httpRecord(1, `{"n":1}`)); out.State != want {
			t.Fatalf("%s: %s (%d %q), want %s", what, out.State, out.StatusCode, out.Message, want)
		}
		if n := rr.lastSignatures(); n != sigs {
			t.Fatalf("%s: %d signatures, want %d", what, n, sigs)
		}
	}
	old := r.SigningSecret
	rr.accept(old)
	send("before rotation, receiver knows the old secret", store.StateSuccess, 1)

	// Rotate: the new secret signs, the old one too until the deadline.
	until := clock.Now().Add(time.Hour)
	r.PreviousSigningSecret, r.PreviousSecretUntil, r.SigningSecret = old, &until, "the-new-secret"
	send("overlap, receiver still on the old secret", store.StateSuccess, 2)
	rr.accept("the-new-secret")
	send("overlap, receiver moved to the new secret", store.StateSuccess, 2)
	rr.accept(old, "the-new-secret")
	send("overlap, receiver knowing both", store.StateSuccess, 2)

	clock.Advance(time.Hour)
	rr.accept(old)
	send("after the deadline, a receiver on the old secret", store.StatePayloadRejected, 1)
	rr.accept("the-new-secret")
	send("after the deadline, a receiver on the new secret", store.StateSuccess, 1)
}

func TestProbeSendsASignedTestRequest(t *testing.T) {
	var gotBody, gotSig, gotID string
	var ts int64
	url := newHTTPSink(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotBody, gotSig, gotID = string(b), r.Header.Get(HeaderWebhookSignature), r.Header.Get(HeaderWebhookID)
		fmt.Sscan(r.Header.Get(HeaderWebhookTimestamp), &ts)
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "queued: thanks")
	}).URL
	sender := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true})
	r := httpRepeater(url)
	r.SigningSecret = "probe-secret"
	res := sender.Probe(context.Background(), r)
	if !res.OK || res.StatusCode != http.StatusAccepted || res.Excerpt != "queued: thanks" || res.State != "success" {
		t.Fatalf("probe %+v", res)
	}
	if gotID != res.WebhookID || !strings.HasPrefix(gotID, "msg_test_") || !strings.Contains(gotBody, `"type":"repeaterd.test"`) {
		t.Fatalf("received id %q body %q; want the probe's id and a test event", gotID, gotBody)
	}
	if !Verify("probe-secret", gotID, time.Unix(ts, 0), []byte(gotBody), gotSig) {
		t.Fatal("the test request's signature does not verify")
	}
}
