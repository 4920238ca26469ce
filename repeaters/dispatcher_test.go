package repeaters

import (
	"fmt"
	"testing"
	"time"

	"repeaterd/store"
)

func TestRoundRobinInterleavesAndRotates(t *testing.T) {
	groups := []store.DomainRepeaters{
		{Domain: "a", Repeaters: []store.ReadyRepeater{{ID: 1}, {ID: 2}, {ID: 3}}},
		{Domain: "b", Repeaters: []store.ReadyRepeater{{ID: 4}}},
		{Domain: "c", Repeaters: []store.ReadyRepeater{{ID: 5}, {ID: 6}}},
	}
	ids := func(pass int) string {
		var out []int64
		for _, r := range RoundRobin(groups, pass) {
			out = append(out, r.ID)
		}
		return fmt.Sprint(out)
	}
	for pass, want := range []string{"[1 4 5 2 6 3]", "[4 5 1 6 2 3]", "[5 1 4 6 2 3]", "[1 4 5 2 6 3]"} {
		if got := ids(pass); got != want {
			t.Errorf("pass %d: %s, want %s", pass, got, want)
		}
	}
	if len(RoundRobin(nil, 3)) != 0 {
		t.Error("no groups should give no repeaters")
	}
}

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
