package repeaters

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"repeaterd/store"
	"repeaterd/store/storetest"
)

// engineEnv is what the dispatcher, processor and legacy sender run on in
// their direct tests: a fresh database, this binary's Redis DB (flushed),
// a locker and a sender allowed to reach the loopback receiver.
type engineEnv struct {
	st     *store.Store
	rdb    *redis.Client
	locker *Locker
	sender *Sender
	clock  *FakeClock
}

func newEngineEnv(t *testing.T) *engineEnv {
	t.Helper()
	rdb := storetest.RedisClient(t)
	sender := NewSender(SenderConfig{AllowPrivateTargets: true})
	t.Cleanup(sender.Close)
	e := &engineEnv{st: storetest.NewStore(t), rdb: rdb, locker: NewLocker(rdb, time.Minute), sender: sender}
	e.startClock()
	return e
}

// startClock sets e.clock to now, in whole milliseconds just past the real
// clock, so records registered before (next_check = Postgres now()) are due
// by it and the times it decides survive Postgres's microsecond precision.
// A test that reads readiness by the clock restarts it after registering.
func (e *engineEnv) startClock() *FakeClock {
	e.clock = NewFakeClock(time.Now().Add(time.Millisecond).Truncate(time.Millisecond))
	return e.clock
}

func (e *engineEnv) repeater(t *testing.T, domain, url string, edit ...func(*store.Repeater)) *store.Repeater {
	t.Helper()
	return storetest.Repeater(t, e.st, storetest.RepeaterOpts{Domain: domain, URL: url, Edit: func(r *store.Repeater) {
		for _, fn := range edit {
			fn(r)
		}
	}})
}

// receivingRepeater starts a receiver answering status and a repeater in
// domain that delivers to it.
func (e *engineEnv) receivingRepeater(t *testing.T, domain string, status func(id string) int, edit ...func(*store.Repeater)) (*receiver, *store.Repeater) {
	t.Helper()
	rc := newReceiver(t, status)
	return rc, e.repeater(t, domain, rc.url, edit...)
}

func (e *engineEnv) getRepeater(t *testing.T, id int64) *store.Repeater {
	t.Helper()
	r, err := e.st.GetRepeater(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (e *engineEnv) getRecord(t *testing.T, id int64) *store.RepeatRecord {
	t.Helper()
	rec, _, err := e.st.GetRecord(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// backOff backs r off until next, one more failed batch counted.
func (e *engineEnv) backOff(t *testing.T, r *store.Repeater, next time.Time) {
	t.Helper()
	if err := e.st.SetBackoff(context.Background(), r.ID, next); err != nil {
		t.Fatal(err)
	}
}

func (e *engineEnv) lock(t *testing.T, repeaterID int64) string {
	t.Helper()
	token, ok, err := e.locker.Acquire(context.Background(), repeaterID)
	if err != nil || !ok {
		t.Fatalf("lock repeater %d: ok=%v err=%v", repeaterID, ok, err)
	}
	return token
}

func (e *engineEnv) release(t *testing.T, b Batch) {
	t.Helper()
	if ok, err := e.locker.Release(context.Background(), b.RepeaterID, b.Token); err != nil || !ok {
		t.Fatalf("release repeater %d: ok=%v err=%v", b.RepeaterID, ok, err)
	}
}

func (e *engineEnv) holds(t *testing.T, repeaterID int64, token string) bool {
	t.Helper()
	held, err := e.locker.Holds(context.Background(), repeaterID, token)
	if err != nil {
		t.Fatal(err)
	}
	return held
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeEnqueuer records the batches the dispatcher hands it, and fails with
// err while err is set.
type fakeEnqueuer struct {
	mu      sync.Mutex
	batches []Batch
	err     error
}

func (f *fakeEnqueuer) EnqueueBatch(_ context.Context, b Batch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.batches = append(f.batches, b)
	return nil
}

func (f *fakeEnqueuer) failWith(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// take returns the batches enqueued since the last take.
func (f *fakeEnqueuer) take() []Batch {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.batches
	f.batches = nil
	return out
}

// receiver is a loopback webhook endpoint that notes each webhook-id it is
// sent and answers status(id), 200 when status is nil, with header.
type receiver struct {
	url    string
	mu     sync.Mutex
	ids    []string
	status func(id string) int
	header http.Header
}

func newReceiver(t *testing.T, status func(id string) int) *receiver {
	rc := &receiver{status: status, header: http.Header{}}
	rc.url = newHTTPSink(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		id := r.Header.Get(HeaderWebhookID)
		rc.mu.Lock()
		rc.ids = append(rc.ids, id)
		status, header := rc.status, rc.header.Clone()
		rc.mu.Unlock()
		for k, v := range header {
			w.Header()[k] = v
		}
		code := http.StatusOK
		if status != nil {
			code = status(id)
		}
		w.WriteHeader(code)
	}).URL
	return rc
}

// answer makes the receiver answer status(id) from now on.
func (rc *receiver) answer(status func(id string) int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.status = status
}

// answerHeader adds a header to every answer from now on.
func (rc *receiver) answerHeader(key, value string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.header.Set(key, value)
}

// answering returns a status func that answers code to every request.
func answering(code int) func(string) int { return func(string) int { return code } }

// received returns the webhook-ids received so far, in arrival order.
func (rc *receiver) received() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.ids...)
}

// webhookIDs returns the webhook-ids of record ids.
func webhookIDs(ids ...int64) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = WebhookID(id)
	}
	return out
}
