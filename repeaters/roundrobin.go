package repeaters

import "repeaterd/store"

// RoundRobin orders ready repeaters across domains (d1r1, d2r1, d3r1, d1r2,
// …), starting from a different domain on each pass.
func RoundRobin(groups []store.DomainRepeaters, pass int) []store.ReadyRepeater {
	var out []store.ReadyRepeater
	if len(groups) == 0 {
		return out
	}
	first := pass % len(groups)
	for i := 0; ; i++ {
		added := false
		for g := range groups {
			reps := groups[(first+g)%len(groups)].Repeaters
			if i < len(reps) {
				out = append(out, reps[i])
				added = true
			}
		}
		if !added {
			return out
		}
	}
}
