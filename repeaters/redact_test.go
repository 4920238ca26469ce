package repeaters

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"repeaterd/store"
)

// echoRequest answers 500 with everything the request carried, in the
// forms careless endpoints use: the raw header lines, JSON, the URL.
func echoRequest(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusInternalServerError)
	var b strings.Builder
	fmt.Fprintf(&b, "echo %s %s\n", r.Method, r.URL.String())
	_ = r.Header.Write(&b)
	js, _ := json.Marshal(map[string]any{"headers": r.Header, "url": r.URL.String(), "query": r.URL.Query()})
	b.Write(js)
	if user, pass, ok := r.BasicAuth(); ok {
		fmt.Fprintf(&b, "\nbasic user %s password %s", user, pass)
	}
	_, _ = w.Write([]byte(b.String()))
}

// TestSendRedactsEchoedCredentials: an endpoint echoing the request back
// leaves none of the repeater's credentials in the attempt message.
func TestSendRedactsEchoedCredentials(t *testing.T) {
	srv := newHTTPSink(t, echoRequest)
	const (
		bearer   = "tenant-key-<&>-123456"
		apiKey   = "k3y/with+special=chars"
		user     = "svc-user"
		password = "p@ss:word!"
		query    = "q-token-987654"
		secret   = "whsec_" + "c2VjcmV0LWtleS1ieXRlcw"
	)
	r := httpRepeater(srv.URL + "/hook?token=" + url.QueryEscape(query) + "&page=1")
	r.SigningSecret = secret
	r.Headers = map[string]string{
		"Authorization": "Bearer " + bearer,
		"X-Api-Key":     apiKey,
		"X-Basic":       "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password)),
	}
	s := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true})
	out := s.Send(t.Context(), r, httpRecord(7, `{}`))
	if out.State != store.StateFail || !strings.Contains(out.Message, "echo POST") || !strings.Contains(out.Message, Redacted) {
		t.Fatalf("echo outcome: %+v", out)
	}
	for _, leak := range []string{bearer, apiKey, url.QueryEscape(apiKey), password, user + ":" + password, query,
		secret, strings.TrimPrefix(secret, "whsec_"), base64.StdEncoding.EncodeToString([]byte(user + ":" + password)),
		`tenant-key-\u003c\u0026\u003e-123456`} {
		if strings.Contains(out.Message, leak) {
			t.Errorf("the attempt message carries %q:\n%s", leak, out.Message)
		}
	}
	if !strings.Contains(out.Message, "page=1") && !strings.Contains(out.Message, "page") {
		t.Errorf("redaction cut more than the credentials:\n%s", out.Message)
	}
}

// TestRedactShortValues: values too short to be secrets are left, so a
// header "X-Team: a" does not erase every "a" of a message.
func TestRedactShortValues(t *testing.T) {
	r := &store.Repeater{URL: "https://example.com/", Headers: map[string]string{"X-Team": "a"}}
	if got := redactCredentials("a bad answer", r); got != "a bad answer" {
		t.Errorf("redacted a one-letter header: %q", got)
	}
}

// TestSendRefusesHugeResponseHeaders: response headers past
// MaxResponseHeaderBytes fail the attempt instead of being held in memory.
func TestSendRefusesHugeResponseHeaders(t *testing.T) {
	for _, c := range []struct {
		size  int
		state store.State
	}{{8 << 10, store.StateSuccess}, {MaxResponseHeaderBytes + 1024, store.StateFail}, {4 << 20, store.StateFail}} {
		srv := newHTTPSink(t, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Big", strings.Repeat("x", c.size))
			w.WriteHeader(http.StatusOK)
		})
		out := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true}).Send(t.Context(), httpRepeater(srv.URL), httpRecord(1, `{}`))
		if out.State != c.state {
			t.Errorf("%d bytes of headers: %v (%s), want %v", c.size, out.State, out.Message, c.state)
		}
		if c.state == store.StateFail && !strings.Contains(out.Message, "exceeded") {
			t.Errorf("%d bytes of headers: message %q does not say why", c.size, out.Message)
		}
	}
}

// FuzzRedact: a credential of the request never survives redaction.
func FuzzRedact(f *testing.F) {
	f.Add("the key is secret-value!", "secret-value")
	f.Add("Bearer abc%2Fdef abc/def", "abc/def")
	f.Add("nothing", "xy")
	f.Fuzz(func(t *testing.T, msg, value string) {
		if len(value) < minRedactLen || strings.ContainsAny(value, "[]") || strings.Contains(Redacted, value) {
			return
		}
		r := &store.Repeater{URL: "https://example.com/", Headers: map[string]string{"X-Key": value}}
		got := redactCredentials(msg+value+msg, r)
		if strings.Contains(got, value) {
			t.Fatalf("redactCredentials left %q in %q", value, got)
		}
	})
}
