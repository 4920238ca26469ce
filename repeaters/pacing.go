package repeaters

import "repeaterd/store"

// Adaptive pacing: an endpoint's sustainable request rate, learned from its
// answers. AIMD on concurrency (BackoffPolicy.concurrency) bounds how many
// requests are in flight; the pace bounds how many start per second, which
// is what an endpoint that accepts "one request per window" needs.
//
// The rule, applied by update_repeater to each batch (BackoffPolicy.Decide):
//
//   - Too fast: refusals (429/503) that follow successes. Either a batch
//     whose refusals are not a small minority among its successes (at least
//     2, and at least a quarter as many as the successes: one poison record
//     among healthy ones is not a rate signal), or a batch refused whole
//     while the repeater was flowing (its last batch had a success) and the
//     refusals were of fresh records or the repeater is paced already. A
//     repeater that is too fast is paced, not backed off: the pace becomes
//     what the batch got through, per second (at least 1/s) the first time,
//     and PaceDecrease of itself after that (never below PaceFloor); the pace
//     bucket restarts empty, and concurrency halves.
//   - Clean (no failures) while paced: the pace is probed upwards, by
//     PaceStep more for each clean batch in a row (×1.1, ×1.2, …), and
//     dropped once it passes PaceCeiling.
//   - Dead: a batch refused whole when the repeater was not flowing (the
//     batch before had no success either) or that failed otherwise (errors,
//     timeouts, 5xx) is the endpoint-level signal, as before: back off.
//
// So a healthy endpoint is never paced, a fragile one settles near the rate
// it accepts, and a dead one costs at most one more batch before backing off.
const (
	// PaceDecrease is what the pace is multiplied by when the endpoint says
	// "too fast" again.
	PaceDecrease = 0.7
	// PaceStep is how much faster each clean batch in a row probes.
	PaceStep = 0.1
	// PaceFloor is the slowest pace: one request a minute. Slower than that
	// the endpoint is as good as dead, and its refusals back it off.
	PaceFloor = 1.0 / 60
	// PaceCeiling ends pacing: faster than this, the pace limits nothing a
	// batch would send.
	PaceCeiling = 1000.0
)

// TooFast reports whether a batch's outcome says the endpoint was sent more
// than it accepts (see the rule above), given the repeater before it.
func TooFast(r *store.Repeater, sum store.BatchSummary) bool {
	switch {
	case sum.Throttled == 0:
		return false
	case sum.Succeeded+sum.Rejected > 0:
		return sum.Throttled >= 2 && 4*sum.Throttled >= sum.Succeeded
	}
	return sum.Throttled == sum.Failed && r.Flowing && (r.PacePerS > 0 || sum.ThrottledFirst > 0)
}

// nextPace is the repeater's pace and clean streak after a batch.
func nextPace(r *store.Repeater, sum store.BatchSummary, tooFast bool) (pace float64, clean int) {
	switch {
	case tooFast && r.PacePerS == 0:
		return max(float64(sum.Succeeded), 1), 0
	case tooFast:
		return max(r.PacePerS*PaceDecrease, PaceFloor), 0
	case r.PacePerS > 0 && sum.Attempted > 0 && sum.Failed == 0:
		clean = r.PaceClean + 1
		pace = r.PacePerS * (1 + PaceStep*float64(clean))
		if pace >= PaceCeiling {
			return 0, 0
		}
		return pace, clean
	}
	return r.PacePerS, r.PaceClean
}
