package tasks_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"repeaterd/repeaters"
	"repeaterd/repeaters/repeatertest"
	"repeaterd/store"
	"repeaterd/store/storetest"
	"repeaterd/tasks"
)

// TestConnectionCredentialsNeverLeave: repeaters authenticating with OAuth2
// client credentials and with Basic deliver through the worker to an
// endpoint that echoes every header; no credential (client secret, access
// token, password, their encoded forms) reaches a task payload, an
// attempt or the logs.
func TestConnectionCredentialsNeverLeave(t *testing.T) {
	const clientSecret, password = "client-secret-never-leaks", "basic-password-never-leaks"
	var issued atomic.Int64
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, sec, ok := r.BasicAuth(); !ok || sec != clientSecret {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"access_token": fmt.Sprintf("access-token-never-leaks-%d", issued.Add(1)), "token_type": "bearer", "expires_in": 3600})
	}))
	t.Cleanup(tokenSrv.Close)
	h := newHarness(t)
	var logs storetest.LogBuffer
	h.eng.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.eng.Processor.Logger = h.eng.Logger
	sk := repeatertest.NewServer(t, repeatertest.Config{Respond: func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "you sent Authorization=%s", r.Header.Get("Authorization"))
	}})
	oauth := &store.Connection{Domain: "d", AuthType: store.AuthOAuth2ClientCredentials, TokenURL: tokenSrv.URL + "/token",
		ClientID: "repeaterd", ClientSecret: clientSecret}
	basic := &store.Connection{Domain: "d", AuthType: store.AuthBasic, Username: "ada", Password: password}
	var ids []int64
	var reps []*store.Repeater
	for _, c := range []*store.Connection{oauth, basic} {
		if err := h.eng.Store.CreateConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
		rep := h.repeater("d", sk.URL("/echo"), func(r *store.Repeater) { r.ConnectionID = &c.ID })
		reps = append(reps, rep)
		ids = append(ids, h.load(rep, 5)...)
	}
	secrets := func() []string {
		out := []string{clientSecret, password, "access-token-never-leaks",
			repeatersBasic("ada", password), repeatersBasic("repeaterd", clientSecret)}
		return out
	}

	for _, rep := range reps {
		token, _, _ := h.eng.Locker.Acquire(ctx, rep.ID)
		if err := h.eng.Client.EnqueueBatch(ctx, repeaters.Batch{RepeaterID: rep.ID, Domain: "d", Token: token, Limit: 5}); err != nil {
			t.Fatal(err)
		}
	}
	pending, err := asynq.NewInspectorFromRedisClient(h.eng.Redis).ListPendingTasks(tasks.QueueRepeaters)
	if err != nil || len(pending) != 2 {
		t.Fatalf("pending tasks: %v %v", len(pending), err)
	}
	for _, task := range pending {
		for _, s := range secrets() {
			if strings.Contains(string(task.Payload), s) {
				t.Fatalf("a task payload carries %q", s)
			}
		}
	}

	h.start("worker")
	h.waitFor("attempts recorded", 15*time.Second, func() bool {
		return h.countSQL(`SELECT count(*) FROM repeat_records WHERE state = 32`) == len(ids)
	})
	if issued.Load() != 1 {
		t.Fatalf("%d tokens issued for one repeater's batch, want 1", issued.Load())
	}
	for _, id := range ids {
		_, attempts, _ := h.eng.Store.GetRecord(ctx, id)
		if len(attempts) == 0 || !strings.Contains(attempts[0].Message, "[redacted]") {
			t.Fatalf("record %d: attempts %+v; want the echo, redacted", id, attempts)
		}
		for _, s := range secrets() {
			if strings.Contains(attempts[0].Message, s) {
				t.Fatalf("record %d: the attempt message carries %q: %s", id, s, attempts[0].Message)
			}
		}
	}
	for _, s := range secrets() {
		if strings.Contains(logs.String(), s) {
			t.Fatalf("the logs carry %q", s)
		}
	}
}

func repeatersBasic(user, pass string) string {
	req, _ := http.NewRequest("GET", "http://x/", nil)
	req.SetBasicAuth(user, pass)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}
