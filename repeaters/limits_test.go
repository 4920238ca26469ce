package repeaters

import (
	"testing"
	"time"

	"repeaterd/store"
)

func TestLimitsReserveFromTheEmptiestBucket(t *testing.T) {
	now := time.Now()
	l := newLimits(0, 0, 0, 0)
	r := store.ReadyRepeater{ID: 1, Domain: "d", RateLimitPerS: 10, RateBurst: 5}
	if n, _ := l.reserve(r, now, 50); n != 5 {
		t.Fatalf("first reserve = %d, want the burst (5)", n)
	}
	n, wait := l.reserve(r, now, 50)
	if n != 0 || wait <= 0 || wait > 100*time.Millisecond {
		t.Fatalf("empty bucket: n=%d wait=%s, want 0 and ~100ms", n, wait)
	}
	if n, _ := l.reserve(r, now.Add(300*time.Millisecond), 50); n != 3 {
		t.Fatalf("after 300ms at 10/s: %d, want 3", n)
	}
	unlimited := store.ReadyRepeater{ID: 2, Domain: "d"}
	if n, _ := l.reserve(unlimited, now, 50); n != 50 {
		t.Fatalf("unlimited repeater got %d, want 50", n)
	}
	global := newLimits(0, 0, 4, 4)
	if n, _ := global.reserve(unlimited, now, 50); n != 4 {
		t.Fatalf("global limit: %d, want 4", n)
	}
}
