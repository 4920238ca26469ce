package tasks_test

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"repeaterd/repeaters"
	"repeaterd/repeaters/repeatertest"
	"repeaterd/store"
	"repeaterd/store/storetest"
	"repeaterd/tasks"
)

func TestSigningSecretNeverLeaves(t *testing.T) {
	const secret = "whsec_c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1sZWFr"
	h := newHarness(t)
	var logs storetest.LogBuffer
	h.eng.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.eng.Processor.Logger = h.eng.Logger
	// A hostile endpoint that somehow knows the secret echoes it back.
	sk := repeatertest.NewServer(t, repeatertest.Config{Respond: func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte("you sent " + r.Header.Get("webhook-signature") + " with " + secret))
	}})
	rep := h.repeater("d", sk.URL("/secret"), func(r *store.Repeater) { r.SigningSecret = secret })
	ids := h.load(rep, 5)

	// The queued task carries the lock token, never the repeater's settings.
	token, _, _ := h.eng.Locker.Acquire(ctx, rep.ID)
	if err := h.eng.Client.EnqueueBatch(ctx, repeaters.Batch{RepeaterID: rep.ID, Domain: "d", Token: token, Limit: 5}); err != nil {
		t.Fatal(err)
	}
	pending, err := asynq.NewInspectorFromRedisClient(h.eng.Redis).ListPendingTasks(tasks.QueueRepeaters)
	if err != nil || len(pending) != 1 {
		t.Fatalf("pending tasks: %v %v", len(pending), err)
	}
	if strings.Contains(string(pending[0].Payload), secret) {
		t.Fatal("the signing secret is in a task payload")
	}

	h.start("worker")
	h.waitFor("attempts recorded", 15*time.Second, func() bool {
		return h.countSQL(`SELECT count(*) FROM repeat_records WHERE state = 32`) == len(ids)
	})
	_, attempts, _ := h.eng.Store.GetRecord(ctx, ids[0])
	if len(attempts) == 0 || strings.Contains(attempts[0].Message, secret) || !strings.Contains(attempts[0].Message, "[redacted]") {
		t.Fatalf("attempt message does not redact the secret: %q", attempts[0].Message)
	}
	if strings.Contains(logs.String(), secret) {
		t.Fatal("the signing secret is in the logs")
	}
}
