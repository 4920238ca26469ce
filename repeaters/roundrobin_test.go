package repeaters

import (
	"fmt"
	"testing"

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
