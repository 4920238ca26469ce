package repeatertest_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"repeaterd/repeaters"
	"repeaterd/repeaters/repeatertest"
)

var ctx = context.Background()

// deliver posts body to url as the sender would, signed with secret (when
// set), and returns the status, or 0 when the connection was closed.
func deliver(t *testing.T, url, id, secret string, body string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if id != "" {
		req.Header.Set(repeaters.HeaderWebhookID, id)
	}
	req.Header.Set(repeaters.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	if secret != "" {
		req.Header.Set(repeaters.HeaderWebhookSignature, repeaters.Sign(secret, id, now, []byte(body)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestCountsPerIDAndPath(t *testing.T) {
	start := time.Unix(1000, 0)
	clock := repeaters.NewFakeClock(start)
	sk := repeatertest.NewServer(t, repeatertest.Config{Clock: clock})
	deliver(t, sk.URL("/a"), "msg_1", "", "{}")
	clock.Advance(time.Second)
	deliver(t, sk.URL("/a"), "msg_1", "", "{}") // a duplicate keeps the first arrival
	deliver(t, sk.URL("/b"), "msg_2", "", "{}")
	deliver(t, sk.URL("/b"), "", "", "{}")
	deliver(t, sk.URL("/b"), "msg_3", "", "{}")
	deliver(t, sk.URL("/b"), "msg_3", "", "{}")
	deliver(t, sk.URL("/b"), "msg_3", "", "{}")

	want := repeatertest.Stats{Requests: 7, Unique: 3, Duplicates: 3, DuplicatedIDs: 2, NoID: 1,
		ByPath: map[string]int{"/a": 2, "/b": 5}}
	if got := sk.Stats(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
	for id, n := range map[string]int{"msg_1": 2, "msg_2": 1, "msg_3": 3, "msg_9": 0} {
		if got := sk.Deliveries(id); got != n {
			t.Errorf("Deliveries(%s) = %d, want %d", id, got, n)
		}
	}
	if sk.Count("/a") != 2 || sk.Count("/b") != 5 || sk.Count("/c") != 0 {
		t.Errorf("Count = %d, %d, %d", sk.Count("/a"), sk.Count("/b"), sk.Count("/c"))
	}
	if times := sk.Times("/a"); len(times) != 2 || !times[0].Equal(start) || !times[1].Equal(start.Add(time.Second)) {
		t.Errorf("Times(/a) = %v", times)
	}
	got := sk.Lookup([]string{"msg_1", "msg_2", "msg_9"})
	if len(got) != 2 || !got["msg_1"].Equal(start) {
		t.Errorf("Lookup = %v", got)
	}
	sk.Reset()
	if s := sk.Stats(); s.Requests != 0 || s.Unique != 0 || sk.Count("/a") != 0 {
		t.Errorf("after Reset: %+v", s)
	}
}

func TestSignatureCheck(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	sk := repeatertest.NewServer(t, repeatertest.Config{Secret: secret})
	deliver(t, sk.URL("/signed"), "msg_1", secret, `{"a":1}`)
	deliver(t, sk.URL("/signed"), "msg_2", secret, `{"a":2}`)
	if n := sk.Stats().BadSignatures; n != 0 {
		t.Fatalf("%d good signatures counted bad", n)
	}
	deliver(t, sk.URL("/signed"), "msg_3", "whsec_b3RoZXItc2VjcmV0", `{"a":3}`) // another secret
	deliver(t, sk.URL("/signed"), "msg_4", "", `{"a":4}`)                       // unsigned
	if s := sk.Stats(); s.BadSignatures != 2 || s.Requests != 4 {
		t.Fatalf("Stats = %+v; want 2 bad signatures of 4", s)
	}
}

func TestConcurrencyPeakPerPath(t *testing.T) {
	release := make(chan struct{})
	sk := repeatertest.NewServer(t, repeatertest.Config{Respond: func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/held" {
			<-release
		}
	}})
	const held = 4
	var wg sync.WaitGroup
	for i := range held {
		wg.Go(func() { deliver(t, sk.URL("/held"), fmt.Sprintf("msg_%d", i), "", "{}") })
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if !sk.WaitCount(wctx, "/held", held) {
		t.Fatal("the held deliveries never all arrived")
	}
	for range 3 { // one at a time
		deliver(t, sk.URL("/free"), "", "", "{}")
	}
	close(release)
	wg.Wait()
	if sk.Peak("/held") != held || sk.Peak("/free") != 1 {
		t.Fatalf("Peak = %d on /held (want %d), %d on /free (want 1)", sk.Peak("/held"), held, sk.Peak("/free"))
	}
}

func TestOverlapsPerID(t *testing.T) {
	release := make(chan struct{})
	sk := repeatertest.NewServer(t, repeatertest.Config{Respond: func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/held" {
			<-release
		}
	}})
	var wg sync.WaitGroup
	for _, id := range []string{"msg_1", "msg_1", "msg_2"} { // msg_1 twice at once
		wg.Go(func() { deliver(t, sk.URL("/held"), id, "", "{}") })
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if !sk.WaitCount(wctx, "/held", 3) {
		t.Fatal("the held deliveries never all arrived")
	}
	close(release)
	wg.Wait()
	deliver(t, sk.URL("/free"), "msg_2", "", "{}") // again, but after the first was answered
	if s := sk.Stats(); s.Overlaps != 1 || s.Duplicates != 2 {
		t.Fatalf("Overlaps = %d (want 1), Duplicates = %d (want 2)", s.Overlaps, s.Duplicates)
	}
}

func TestWaitForID(t *testing.T) {
	sk := repeatertest.NewServer(t, repeatertest.Config{})
	woken := make(chan time.Time, 1)
	go func() {
		at, ok := sk.Wait(ctx, "msg_1")
		if ok {
			woken <- at
		}
		close(woken)
	}()
	// Whether the waiter is already waiting or not, it must see the arrival.
	deliver(t, sk.URL("/a"), "msg_2", "", "{}")
	deliver(t, sk.URL("/a"), "msg_1", "", "{}")
	select {
	case at := <-woken:
		if want := sk.Lookup([]string{"msg_1"})["msg_1"]; !at.Equal(want) {
			t.Fatalf("Wait returned %v, the arrival was %v", at, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter never woke")
	}
	if _, ok := sk.Wait(ctx, "msg_2"); !ok { // arrived before: at once
		t.Fatal("Wait for an id already there failed")
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, ok := sk.Wait(short, "msg_never"); ok {
		t.Fatal("Wait for an id that never comes succeeded")
	}
}

func TestAnswerFromQuery(t *testing.T) {
	sk := repeatertest.NewServer(t, repeatertest.Config{Status: http.StatusAccepted})
	if code := deliver(t, sk.URL("/a"), "msg_1", "", "{}"); code != http.StatusAccepted {
		t.Errorf("the configured status: %d", code)
	}
	if code := deliver(t, sk.URL("/a?status=503"), "msg_2", "", "{}"); code != http.StatusServiceUnavailable {
		t.Errorf("?status=503 answered %d", code)
	}
	began := time.Now()
	if code := deliver(t, sk.URL("/a?delay=50ms"), "msg_3", "", "{}"); code != http.StatusAccepted || time.Since(began) < 50*time.Millisecond {
		t.Errorf("?delay=50ms answered %d after %s", code, time.Since(began))
	}
	if code := deliver(t, sk.URL("/r?refuse=1"), "msg_4", "", "{}"); code != 0 {
		t.Errorf("?refuse=1 answered %d", code)
	}
	if n := sk.Deliveries("msg_4"); n == 0 {
		t.Error("a refused delivery was not counted")
	}
}

func TestRespondReplacesTheAnswer(t *testing.T) {
	sk := repeatertest.NewServer(t, repeatertest.Config{Respond: func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusTeapot)
	}})
	if code := deliver(t, sk.URL("/a?status=200"), "msg_1", "", "{}"); code != http.StatusTeapot {
		t.Fatalf("Respond was not used: %d", code)
	}
	if sk.Count("/a") != 1 {
		t.Fatal("a delivery answered by Respond was not counted")
	}
}

func TestConfigRejected(t *testing.T) {
	for _, cfg := range []repeatertest.Config{{Status: 42}, {Delay: -time.Second}} {
		if _, err := repeatertest.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	rc, err := repeatertest.New(repeatertest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := repeatertest.Listen("127.0.0.1:0", rc)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(ctx); err != nil { // twice is harmless
		t.Fatal(err)
	}
}
