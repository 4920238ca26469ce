package repeatertest_test

import (
	"net/http"
	"testing"
	"time"

	"repeaterd/repeaters"
	"repeaterd/repeaters/repeatertest"
)

// The control endpoints serve the same bookkeeping to another process.
func TestControlEndpoints(t *testing.T) {
	start := time.Unix(2000, 0)
	sk := repeatertest.NewServer(t, repeatertest.Config{Clock: repeaters.NewFakeClock(start)})
	c := repeatertest.NewClient(sk.URL(""))

	waited := make(chan bool, 1)
	go func() {
		_, ok, err := c.Wait(ctx, "msg_1", 10*time.Second)
		waited <- ok && err == nil
	}()
	counted := make(chan bool, 1)
	go func() {
		ok, err := c.WaitCount(ctx, "/b", 2, 10*time.Second)
		counted <- ok && err == nil
	}()
	deliver(t, sk.URL("/a"), "msg_1", "", "{}")
	deliver(t, sk.URL("/b"), "msg_2", "", "{}")
	deliver(t, sk.URL("/b"), "msg_2", "", "{}")
	if !<-waited {
		t.Error("the remote wait for msg_1 failed")
	}
	if !<-counted {
		t.Error("the remote wait for two deliveries on /b failed")
	}

	s, err := c.Stats(ctx)
	if err != nil || s.Requests != 3 || s.Unique != 2 || s.Duplicates != 1 || s.ByPath["/b"] != 2 {
		t.Fatalf("Stats = %+v, %v", s, err)
	}
	got, err := c.Lookup(ctx, []string{"msg_1", "msg_2", "msg_9"})
	if err != nil || len(got) != 2 || !got["msg_1"].Equal(start) {
		t.Fatalf("Lookup = %v, %v", got, err)
	}
	if at, ok, err := c.Wait(ctx, "msg_2", time.Second); err != nil || !ok || !at.Equal(start) {
		t.Fatalf("Wait for an arrived id = %v, %v, %v", at, ok, err)
	}
	if _, ok, err := c.Wait(ctx, "msg_never", 20*time.Millisecond); err != nil || ok {
		t.Fatalf("Wait for a missing id = %v, %v", ok, err)
	}
	if ok, err := c.WaitCount(ctx, "", 99, 20*time.Millisecond); err != nil || ok {
		t.Fatalf("WaitCount beyond what arrived = %v, %v", ok, err)
	}
	if err := c.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if s, err := c.Stats(ctx); err != nil || s.Requests != 0 || s.Unique != 0 {
		t.Fatalf("after Reset: %+v, %v", s, err)
	}
	// Control requests are not deliveries.
	if sk.Stats().Requests != 0 {
		t.Fatal("control requests were counted as deliveries")
	}
	resp, err := http.Get(sk.URL("/_sink/nothing"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("an unknown control endpoint answered %d", resp.StatusCode)
	}
}
