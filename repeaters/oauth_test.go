package repeaters

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// tokenServer is a local OAuth2 token endpoint (client credentials) that
// counts its fetches and issues "tok-1", "tok-2", ….
type tokenServer struct {
	url       string
	close     func()
	clientID  string
	secret    string
	expiresIn int // 0 = no expires_in
	fetches   atomic.Int64
	mu        sync.Mutex
	seen      []tokenRequestSeen
}

type tokenRequestSeen struct {
	basic      bool
	scope      string
	grant      string
	formClient string
}

func newTokenServer(t *testing.T, clientID, secret string, expiresIn int) *tokenServer {
	ts := &tokenServer{clientID: clientID, secret: secret, expiresIn: expiresIn}
	srv := newHTTPSink(t, func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		seen := tokenRequestSeen{scope: r.PostForm.Get("scope"), grant: r.PostForm.Get("grant_type"), formClient: r.PostForm.Get("client_id")}
		id, sec, basic := r.BasicAuth()
		seen.basic = basic
		if !basic {
			id, sec = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		ts.mu.Lock()
		ts.seen = append(ts.seen, seen)
		ts.mu.Unlock()
		if r.Method != http.MethodPost || seen.grant != "client_credentials" || id != ts.clientID || sec != ts.secret {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"error":"invalid_client","echo":%q}`, sec) // a careless server echoing the secret
			return
		}
		n := ts.fetches.Add(1)
		resp := map[string]any{"access_token": fmt.Sprintf("tok-%d", n), "token_type": "Bearer"}
		if ts.expiresIn > 0 {
			resp["expires_in"] = ts.expiresIn
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	})
	ts.url, ts.close = srv.URL+"/token", srv.Close
	return ts
}

// bearerSink accepts requests whose bearer token is at least minToken
// ("tok-N" with N ≥ min), answers 401 to others, and counts both.
type bearerSink struct {
	url      string
	minToken atomic.Int64
	ok, auth atomic.Int64 // 2xx answers, 401 answers
	mu       sync.Mutex
	tokens   map[string]int
}

func newBearerSink(t *testing.T) *bearerSink {
	s := &bearerSink{tokens: map[string]int{}}
	s.minToken.Store(1)
	s.url = newHTTPSink(t, func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		s.mu.Lock()
		s.tokens[tok]++
		s.mu.Unlock()
		var n int64
		if _, err := fmt.Sscanf(tok, "tok-%d", &n); err != nil || n < s.minToken.Load() {
			s.auth.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		s.ok.Add(1)
	}).URL + "/hook"
	return s
}

// oauthRepeater saves an OAuth2 connection for ts and a repeater using it,
// and returns the repeater as the processor reads it (connection attached).
func (e *engineEnv) oauthRepeater(t *testing.T, ts *tokenServer, url string, edit ...func(*store.Connection)) *store.Repeater {
	t.Helper()
	c := &store.Connection{Domain: "acme", AuthType: store.AuthOAuth2ClientCredentials, TokenURL: ts.url,
		ClientID: ts.clientID, ClientSecret: ts.secret, Scope: "hooks:write"}
	for _, fn := range edit {
		fn(c)
	}
	if err := e.st.CreateConnection(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	r := e.repeater(t, "acme", url, func(r *store.Repeater) { r.ConnectionID = &c.ID; r.MaxWorkers = 8 })
	return e.getRepeater(t, r.ID)
}

func TestOAuth2ClientCredentialsFlow(t *testing.T) {
	for _, in := range []string{store.CredentialsInHeader, store.CredentialsInBody} {
		t.Run("credentials in "+in, func(t *testing.T) {
			e := newEngineEnv(t)
			ts := newTokenServer(t, "client-1", "s3cret-client", 3600)
			sink := newBearerSink(t)
			r := e.oauthRepeater(t, ts, sink.url, func(c *store.Connection) { c.CredentialsIn = in })
			out := e.sender.Send(context.Background(), r, httpRecord(1, `{"a":1}`))
			if out.State != store.StateSuccess {
				t.Fatalf("outcome %s %q, want success", out.State, out.Message)
			}
			ts.mu.Lock()
			seen := ts.seen[0]
			ts.mu.Unlock()
			if seen.basic != (in == store.CredentialsInHeader) || seen.scope != "hooks:write" || seen.grant != "client_credentials" {
				t.Fatalf("token request %+v: want client credentials in the %s, scope hooks:write", seen, in)
			}
		})
	}
}

// TestOAuth2TokenFetchedOnceFor1000Records: four "workers" (batches sent
// at once by one process's sender) deliver 1,000 records; the token
// endpoint is asked once.
func TestOAuth2TokenFetchedOnceFor1000Records(t *testing.T) {
	e := newEngineEnv(t)
	ts := newTokenServer(t, "client-1", "s3cret-client", 3600)
	sink := newBearerSink(t)
	r := e.oauthRepeater(t, ts, sink.url)
	storetest.Records(t, e.st, r, 1000)
	var wg sync.WaitGroup
	var succeeded atomic.Int64
	for w := range 4 {
		recs, err := e.st.ClaimReadyRecords(context.Background(), r.ID, 250, fmt.Sprintf("batch:w%d", w), time.Minute)
		if err != nil || len(recs) != 250 {
			t.Fatalf("claim: %d records, %v", len(recs), err)
		}
		wg.Go(func() {
			outs, _ := e.sender.SendBatch(context.Background(), r, recs, 16)
			for _, o := range outs {
				if o.State == store.StateSuccess {
					succeeded.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if succeeded.Load() != 1000 || sink.ok.Load() != 1000 {
		t.Fatalf("%d succeeded, sink accepted %d; want 1000", succeeded.Load(), sink.ok.Load())
	}
	if n := ts.fetches.Load(); n != 1 {
		t.Fatalf("token endpoint asked %d times for 1,000 records; want 1", n)
	}
}

func TestOAuth2RefreshesOnceOn401(t *testing.T) {
	e := newEngineEnv(t)
	ts := newTokenServer(t, "client-1", "s3cret-client", 3600)
	sink := newBearerSink(t)
	r := e.oauthRepeater(t, ts, sink.url)
	if out := e.sender.Send(context.Background(), r, httpRecord(1, `{}`)); out.State != store.StateSuccess {
		t.Fatalf("first send: %s %q", out.State, out.Message)
	}
	sink.minToken.Store(2) // the endpoint revokes tok-1 before it expires
	out := e.sender.Send(context.Background(), r, httpRecord(2, `{}`))
	if out.State != store.StateSuccess || ts.fetches.Load() != 2 || sink.auth.Load() != 1 {
		t.Fatalf("after a revoked token: %s %q, %d fetches, %d 401s; want success after one 401 and one new token",
			out.State, out.Message, ts.fetches.Load(), sink.auth.Load())
	}

	sink.minToken.Store(1 << 40) // now every token is refused
	out = e.sender.Send(context.Background(), r, httpRecord(3, `{}`))
	if out.State != store.StateFail || out.StatusCode != http.StatusUnauthorized || ts.fetches.Load() != 3 || sink.auth.Load() != 3 {
		t.Fatalf("refused twice: %s %d %q, %d fetches, %d 401s; want one refresh, then a Fail (retried, not rejected)",
			out.State, out.StatusCode, out.Message, ts.fetches.Load(), sink.auth.Load())
	}
	if !strings.Contains(out.Message, "refused the connection's oauth2_client_credentials credentials") {
		t.Fatalf("message %q does not say the credentials were refused", out.Message)
	}
}

func TestOAuth2TokenRenewedAtExpiry(t *testing.T) {
	e := newEngineEnv(t)
	clock := NewFakeClock(time.Now())
	sender := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true, Clock: clock})
	ts := newTokenServer(t, "client-1", "s3cret-client", 60) // used for 54 s: a tenth before it expires
	sink := newBearerSink(t)
	r := e.oauthRepeater(t, ts, sink.url)
	send := func(at time.Duration, wantFetches int64) {
		t.Helper()
		if out := sender.Send(context.Background(), r, httpRecord(1, `{}`)); out.State != store.StateSuccess {
			t.Fatalf("at +%s: %s %q", at, out.State, out.Message)
		}
		if n := ts.fetches.Load(); n != wantFetches {
			t.Fatalf("at +%s: %d token fetches, want %d", at, n, wantFetches)
		}
	}
	send(0, 1)
	clock.Advance(50 * time.Second)
	send(50*time.Second, 1)
	clock.Advance(5 * time.Second)
	send(55*time.Second, 2)

	// A changed connection (new version) does not use the old token.
	r.Connection.UpdatedAt = r.Connection.UpdatedAt.Add(time.Second)
	send(55*time.Second, 3)
}

// TestOAuth2TokenServerDown: the batch fails with a message naming the
// token endpoint, and the repeater backs off.
func TestOAuth2TokenServerDown(t *testing.T) {
	e := newEngineEnv(t)
	ts := newTokenServer(t, "client-1", "s3cret-client", 3600)
	sink := newBearerSink(t)
	r := e.oauthRepeater(t, ts, sink.url)
	ts.close()
	ids := storetest.Records(t, e.st, r, 5)
	p, ev := e.newProcessor()
	b := e.lockedBatch(t, r, 10)
	processBatch(t, p, b)
	if sum := awaitSignal(t, ev.recorded, "the batch recorded"); sum.Succeeded != 0 || sum.Failed == 0 {
		t.Fatalf("summary %+v; want only failures", sum)
	}
	if err := p.UpdateRepeater(context.Background(), r.ID, b.Token); err != nil {
		t.Fatal(err)
	}
	awaitSignal(t, ev.applied, "the update applied")
	if got := e.getRepeater(t, r.ID); got.BackoffCount != 1 || got.NextAttemptAt == nil {
		t.Fatalf("backoff_count %d, next %v; want the repeater backed off", got.BackoffCount, got.NextAttemptAt)
	}
	_, attempts, err := e.st.GetRecord(context.Background(), ids[0])
	if err != nil || len(attempts) != 1 {
		t.Fatalf("attempts %v, %v", attempts, err)
	}
	if msg := attempts[0].Message; !strings.Contains(msg, "oauth2 token from 127.0.0.1:") || !strings.Contains(msg, "connection error") {
		t.Fatalf("attempt message %q does not name the token endpoint and the failure", msg)
	}
	if sink.ok.Load()+sink.auth.Load() != 0 {
		t.Fatal("the endpoint was called without a token")
	}
}

func TestOAuth2TokenURLOnPrivateAddressRefused(t *testing.T) {
	e := newEngineEnv(t)
	ts := newTokenServer(t, "client-1", "s3cret-client", 3600)
	sink := newBearerSink(t)
	r := e.oauthRepeater(t, ts, sink.url)
	strict := newHTTPSender(t, SenderConfig{})
	for _, tokenURL := range []string{
		ts.url, // http to loopback
		strings.Replace(ts.url, "http://", "https://", 1),             // loopback
		"https://localhost" + ts.url[strings.LastIndex(ts.url, ":"):], // a loopback name
		"https://10.0.0.1/token",                                      // private, never dialled
	} {
		r.Connection.TokenURL = tokenURL
		out := strict.Send(context.Background(), r, httpRecord(1, `{}`))
		if out.State != store.StateFail || !strings.Contains(out.Message, "token_url") {
			t.Errorf("token URL %s: %s %q; want a Fail naming token_url", tokenURL, out.State, out.Message)
		}
		if err := ValidateTokenURL(tokenURL, false); store.ErrorCode(err) != store.EINVALID {
			t.Errorf("ValidateTokenURL(%s) = %v, want EINVALID", tokenURL, err)
		}
	}
	if n := ts.fetches.Load(); n != 0 {
		t.Fatalf("the token endpoint was reached %d times", n)
	}
	if err := ValidateTokenURL("https://auth.example.com/token", false); err != nil {
		t.Fatalf("a public https token URL: %v", err)
	}
}

// TestOAuth2SlowTokenEndpointOneFetchForEveryWaiter: while a fetch hangs,
// a waiter whose request times out gives up alone; the fetch carries on and
// serves the others.
func TestOAuth2SlowTokenEndpointOneFetchForEveryWaiter(t *testing.T) {
	e := newEngineEnv(t)
	release := make(chan struct{})
	arrived := make(chan struct{}, 8)
	var fetches atomic.Int64
	slow := newHTTPSink(t, func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		arrived <- struct{}{}
		<-release
		fmt.Fprint(w, `{"access_token":"tok-1","token_type":"bearer","expires_in":3600}`)
	})
	ts := &tokenServer{url: slow.URL + "/token", clientID: "c", secret: "s"}
	sink := newBearerSink(t)
	r := e.oauthRepeater(t, ts, sink.url)

	impatient := *r
	impatient.TimeoutMS = 50
	done := make(chan store.Outcome, 1)
	go func() { done <- e.sender.Send(context.Background(), &impatient, httpRecord(1, `{}`)) }()
	awaitSignal(t, arrived, "the token fetch")
	out := awaitSignal(t, done, "the impatient send")
	if out.State != store.StateFail || !strings.Contains(out.Message, "oauth2 token") {
		t.Fatalf("impatient send: %s %q; want a Fail naming the token", out.State, out.Message)
	}
	var wg sync.WaitGroup
	outs := make([]store.Outcome, 5)
	for i := range outs {
		wg.Go(func() { outs[i] = e.sender.Send(context.Background(), r, httpRecord(int64(i+2), `{}`)) })
	}
	close(release)
	wg.Wait()
	for i, o := range outs {
		if o.State != store.StateSuccess {
			t.Fatalf("send %d: %s %q", i, o.State, o.Message)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("%d token fetches, want 1 shared by every waiter", n)
	}
}
