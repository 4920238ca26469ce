package repeaters

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"repeaterd/store"
)

func TestBackoffAndCancelEvents(t *testing.T) {
	var b bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&b, nil)) // INFO: extensions are DEBUG
	r := &store.Repeater{ID: 7, Domain: "acme"}
	now := time.Now()
	until := now.Add(5 * time.Minute)
	logBackoff(logger, r, 0, store.BatchDecision{NextAttemptAt: &until, BackoffCount: 1}, now)
	logBackoff(logger, r, 1, store.BatchDecision{NextAttemptAt: &until, BackoffCount: 2}, now)
	logBackoff(logger, r, 2, store.BatchDecision{}, now)
	logBackoff(logger, r, 0, store.BatchDecision{}, now) // healthy stays healthy: nothing
	recs := []store.ReadyRecord{
		{RepeatRecord: store.RepeatRecord{ID: 1, AttemptCount: 5, MaxPossibleTries: 6}},
		{RepeatRecord: store.RepeatRecord{ID: 2, AttemptCount: 1, MaxPossibleTries: 6}},
		{RepeatRecord: store.RepeatRecord{ID: 3, AttemptCount: 5, MaxPossibleTries: 6}},
	}
	logCancelled(logger, "acme", 7, recs, []store.Outcome{
		{RecordID: 1, State: store.StateFail, StatusCode: 503}, // last try failed: cancelled
		{RecordID: 2, State: store.StateFail},                  // tries left
		{RecordID: 3, State: store.StateSuccess},               // delivered on its last try
	})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := []string{"repeater backing off", "repeater recovered: backoff ended", "record cancelled: out of tries"}
	if len(lines) != len(want) {
		t.Fatalf("events:\n%s\nwant %q", b.String(), want)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], `msg="`+w+`"`) || !strings.Contains(lines[i], "level=INFO") {
			t.Errorf("event %d = %s, want %q at INFO", i, lines[i], w)
		}
	}
	if !strings.Contains(lines[2], "record=1 ") || !strings.Contains(lines[2], "attempts=6") {
		t.Errorf("cancel event %s does not name record 1 and its 6 attempts", lines[2])
	}
}
