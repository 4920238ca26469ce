package console_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"repeaterd/dashboards/auth"
	"repeaterd/dashboards/console"
	"repeaterd/repeaters"
	"repeaterd/repeaters/repeatertest"
	"repeaterd/store/storetest"
)

// TestSendTestRequestButton: the repeater page's "Send test request" posts
// through the real sender to a real endpoint and shows what it answered;
// nothing is written, and a cross-site post sends nothing.
func TestSendTestRequestButton(t *testing.T) {
	st := storetest.NewStore(t)
	sink := repeatertest.NewServer(t, repeatertest.Config{Respond: func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `<answer from="sink">`)
	}})
	rep := storetest.Repeater(t, st, storetest.RepeaterOpts{Domain: "a.example", Name: "orders", URL: sink.URL("/probe")})
	sender := repeaters.NewSender(repeaters.SenderConfig{AllowPrivateTargets: true})
	t.Cleanup(sender.Close)
	const token = "tok"
	h := newConsole(t, st, console.Config{Token: auth.NewToken(token), Prober: sender})
	session := login(t, h, token)
	page := fetchWith(t, h, fmt.Sprintf("/ui/repeaters/%d", rep.ID), session)
	if !strings.Contains(page, `data-action="test"`) {
		t.Fatal("the repeater page has no test button")
	}
	srv := serve(t, h)
	target := fmt.Sprintf("%s/ui/repeaters/%d/test", srv.URL, rep.ID)
	form := url.Values{"csrf": {csrfOf(t, page)}}
	if resp := post(t, target, "https://evil.example", session, form); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site test: %d, want 403", resp.StatusCode)
	}
	if n := sink.Count("/probe"); n != 0 {
		t.Fatalf("a refused form sent %d requests", n)
	}

	req, _ := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(session)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("test: %d %s", resp.StatusCode, body)
	}
	for _, want := range []string{`id="probe-status">202<`, `&lt;answer from=&#34;sink&#34;&gt;`, `data-ok="true"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the result page lacks %s:\n%s", want, body)
		}
	}
	if n := sink.Count("/probe"); n != 1 {
		t.Errorf("the endpoint got %d requests, want 1", n)
	}
	for _, table := range []string{"repeat_records", "repeat_record_attempts"} {
		if n := storetest.Count(t, st, `SELECT count(*) FROM `+table); n != 0 {
			t.Errorf("a test request wrote %d rows to %s", n, table)
		}
	}
	if got, _ := st.GetRepeater(t.Context(), rep.ID); got.BackoffCount != 0 || got.NextAttemptAt != nil {
		t.Error("a test request moved the backoff")
	}
}
