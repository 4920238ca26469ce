package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"repeaterd/repeaters"
)

func TestCLIConnections(t *testing.T) {
	var mu sync.Mutex
	var gotKey, gotSig, gotID, gotBody string
	var gotTS int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		gotKey, gotSig, gotID, gotBody = r.Header.Get("X-Api-Key"), r.Header.Get("webhook-signature"), r.Header.Get("webhook-id"), string(b)
		fmt.Sscan(r.Header.Get("webhook-timestamp"), &gotTS)
		mu.Unlock()
		io.WriteString(w, "sink says hi")
	}))
	t.Cleanup(sink.Close)
	e := newOpsEnv(t)
	secret := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(secret, []byte("cli-api-key-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var c connectionView
	e.mustJSON(&c, "connections", "create", "--domain", "acme", "--auth-type", "api_key", "--api-key-header", "X-Api-Key", "--secret-file", secret)
	if c.ID == 0 || c.AuthType != "api_key" || len(c.SecretsSet) != 1 {
		t.Fatalf("created %+v", c)
	}
	r := e.repeater("acme", sink.URL+"/hook")
	e.mustRun("connections", "attach", fmt.Sprint(r.ID), fmt.Sprint(c.ID))
	if out := e.mustRun("connections", "list"); !strings.Contains(out, "api_key  system roots  "+fmt.Sprintf("[%d]", r.ID)) {
		t.Fatalf("list:\n%s", out)
	}

	// rotate-secret prints a generated secret once; test sends both signatures.
	first, _ := e.st.GetRepeater(t.Context(), r.ID)
	first.SigningSecret = "first-cli-secret"
	if err := e.st.UpdateRepeater(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	out := e.mustRun("repeaters", "rotate-secret", fmt.Sprint(r.ID), "--overlap", "1h")
	if !strings.Contains(out, "whsec_") {
		t.Fatalf("rotate-secret:\n%s", out)
	}
	stored, err := e.st.GetRepeater(t.Context(), r.ID)
	if err != nil || stored.PreviousSecretUntil == nil || time.Until(*stored.PreviousSecretUntil) > time.Hour {
		t.Fatalf("after rotate-secret: %+v, %v", stored, err)
	}
	out = e.mustRun("repeaters", "test", fmt.Sprint(r.ID), "--allow-private-targets")
	if !tableRow("state", "success").MatchString(out) || !strings.Contains(out, "sink says hi") {
		t.Fatalf("test:\n%s", out)
	}
	mu.Lock()
	if gotKey != "cli-api-key-123" || len(strings.Fields(gotSig)) != 2 ||
		!repeaters.Verify(stored.SigningSecret, gotID, time.Unix(gotTS, 0), []byte(gotBody), gotSig) ||
		!repeaters.Verify("first-cli-secret", gotID, time.Unix(gotTS, 0), []byte(gotBody), gotSig) {
		t.Fatalf("the sink got key %q and signature %q", gotKey, gotSig)
	}
	mu.Unlock()
	var records int
	if err := e.st.Pool().QueryRow(t.Context(), `SELECT count(*) FROM repeat_records`).Scan(&records); err != nil || records != 0 {
		t.Fatalf("the test request wrote %d records (%v)", records, err)
	}
	for _, args := range [][]string{
		{"connections", "show", fmt.Sprint(c.ID)}, {"connections", "list", "-o", "json"}, {"repeaters", "show", fmt.Sprint(r.ID), "-o", "json"},
	} {
		if out := e.mustRun(args...); strings.Contains(out, "cli-api-key-123") {
			t.Fatalf("%v printed the API key:\n%s", args, out)
		}
	}
	if msg := e.mustFail("connections", "delete", fmt.Sprint(c.ID)); !strings.Contains(msg, "used by repeaters") {
		t.Fatalf("delete of a used connection: %s", msg)
	}
	e.mustRun("connections", "attach", fmt.Sprint(r.ID), "0")
	e.mustRun("connections", "delete", fmt.Sprint(c.ID))

	for _, bad := range [][]string{
		{"connections", "create", "--domain", "acme", "--auth-type", "digest"},
		{"connections", "create", "--domain", "acme", "--auth-type", "basic", "--username", "u"},
		{"connections", "create", "--domain", "acme", "--auth-type", "oauth2_client_credentials", "--token-url", "http://auth.example.com/t", "--client-id", "c", "--secret-file", secret},
	} {
		e.mustFail(bad...)
	}
	var n int
	if err := e.st.Pool().QueryRow(t.Context(), `SELECT count(*) FROM connections`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d connections left, %v", n, err)
	}
}

// TestCLIRepeaterTestObeysMaxTimeout: `repeaters test` waits no longer than
// the cap `run` enforces, however long a timeout the repeater was saved with.
func TestCLIRepeaterTestObeysMaxTimeout(t *testing.T) {
	hung := make(chan struct{})
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hung:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(sink.Close)
	t.Cleanup(func() { close(hung) })
	e := newOpsEnv(t)
	r := e.repeater("acme", sink.URL+"/hang")
	r.TimeoutMS = 20000
	if err := e.st.UpdateRepeater(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	var res struct {
		State      string `json:"state"`
		DurationMS int    `json:"duration_ms"`
	}
	start := time.Now()
	e.mustJSON(&res, "repeaters", "test", fmt.Sprint(r.ID), "--allow-private-targets", "--max-timeout", "300ms")
	if res.State == "success" || res.DurationMS >= 5000 || time.Since(start) >= 10*time.Second {
		t.Fatalf("a test against a hung endpoint with --max-timeout 300ms: %+v after %s, want a failure within the cap", res, time.Since(start))
	}
	if msg := e.mustFail("repeaters", "test", fmt.Sprint(r.ID), "--max-timeout", "-1s"); !strings.Contains(msg, "--max-timeout must be positive") {
		t.Fatalf("a negative --max-timeout: %s", msg)
	}
}
