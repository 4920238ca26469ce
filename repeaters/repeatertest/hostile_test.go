package repeatertest_test

import (
	"net/http"
	"testing"
	"time"

	"repeaterd/repeaters"
	"repeaterd/repeaters/repeatertest"
)

func TestWindowedAcceptsOnePerWindow(t *testing.T) {
	start := time.Unix(1000, 0)
	clock := repeaters.NewFakeClock(start)
	w := &repeatertest.Windowed{Window: 2 * time.Second, PerWindow: 1, Clock: clock}
	sk := repeatertest.NewServer(t, repeatertest.Config{Respond: w.Respond})
	var got []int
	for _, step := range []time.Duration{0, 0, time.Second, time.Second, 0, 3 * time.Second} {
		clock.Advance(step)
		got = append(got, deliver(t, sk.URL("/f"), "msg_1", "", "{}"))
	}
	want := []int{http.StatusOK, 503, 503, http.StatusOK, 503, http.StatusOK}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("answers %v, want %v (one accepted per 2s window)", got, want)
		}
	}
	accepted, refused, delivering, windows := w.Counts(start, start.Add(6*time.Second))
	if accepted != 3 || refused != 3 || delivering != 3 || windows != 3 {
		t.Fatalf("counts %d accepted %d refused, %d of %d windows; want 3, 3, 3 of 3", accepted, refused, delivering, windows)
	}
	accepted, refused, delivering, windows = w.Counts(start.Add(2*time.Second), start.Add(6*time.Second))
	if accepted != 2 || refused != 1 || delivering != 2 || windows != 2 {
		t.Fatalf("counts from the second window %d accepted %d refused, %d of %d windows; want 2, 1, 2 of 2",
			accepted, refused, delivering, windows)
	}
}

func TestBlackHoleHoldsRequestsUntilClosed(t *testing.T) {
	hole, err := repeatertest.NewBlackHole()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		resp, err := http.Post(hole.URL("/x"), "application/json", nil)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case <-hole.Accepted():
	case <-time.After(5 * time.Second):
		t.Fatal("the request never reached the black hole")
	}
	select {
	case err := <-done:
		t.Fatalf("the black hole answered: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if hole.Held() != 1 {
		t.Fatalf("held %d connections, want 1", hole.Held())
	}
	_ = hole.Close()
	if err := <-done; err == nil {
		t.Fatal("a request to a closed black hole succeeded")
	}
}
