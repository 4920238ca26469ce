package repeatertest

import (
	"context"
	"slices"
	"time"
)

// Stats is the receiver's bookkeeping at one moment.
type Stats struct {
	// Requests is every delivery received.
	Requests int `json:"requests"`
	// Unique is how many distinct webhook-ids arrived.
	Unique int `json:"unique"`
	// Duplicates is how many deliveries repeated a webhook-id already seen.
	Duplicates int `json:"duplicates"`
	// DuplicatedIDs is how many webhook-ids arrived more than once.
	DuplicatedIDs int `json:"duplicated_ids"`
	// Overlaps is how many deliveries arrived while another delivery of the
	// same webhook-id was still being answered: a record sent twice at once.
	Overlaps int `json:"overlaps"`
	// NoID is how many deliveries came without a webhook-id.
	NoID int `json:"no_id"`
	// BadSignatures is how many deliveries failed the signature check.
	BadSignatures int `json:"bad_signatures"`
	// ByPath is how many deliveries arrived on each path.
	ByPath map[string]int `json:"by_path"`
}

// Stats returns a copy of the counters.
func (rc *Receiver) Stats() Stats {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	s := Stats{Requests: rc.requests, Unique: len(rc.ids), Duplicates: rc.repeats, Overlaps: rc.overlaps, NoID: rc.noID,
		BadSignatures: rc.badSigs, ByPath: make(map[string]int, len(rc.byPath))}
	for _, c := range rc.ids {
		if c.n > 1 {
			s.DuplicatedIDs++
		}
	}
	for path, times := range rc.byPath {
		s.ByPath[path] = len(times)
	}
	return s
}

// Deliveries returns how many times webhook-id id arrived.
func (rc *Receiver) Deliveries(id string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if c := rc.ids[id]; c != nil {
		return c.n
	}
	return 0
}

// Count returns how many deliveries arrived on path.
func (rc *Receiver) Count(path string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.byPath[path])
}

// Times returns the arrival times on path, in arrival order.
func (rc *Receiver) Times(path string) []time.Time {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.byPath[path])
}

// Peak returns the most deliveries to path that were being answered at once.
func (rc *Receiver) Peak(path string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.peak[path]
}

// Lookup returns the first arrival of each of ids that has arrived.
func (rc *Receiver) Lookup(ids []string) map[string]time.Time {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make(map[string]time.Time, len(ids))
	for _, id := range ids {
		if c := rc.ids[id]; c != nil {
			out[id] = c.first
		}
	}
	return out
}

// Wait blocks until webhook-id id has arrived or ctx ends, and returns its
// first arrival.
func (rc *Receiver) Wait(ctx context.Context, id string) (time.Time, bool) {
	var at time.Time
	ok := rc.waitUntil(ctx, func() bool {
		c := rc.ids[id]
		if c != nil {
			at = c.first
		}
		return c != nil
	})
	return at, ok
}

// WaitCount blocks until at least n deliveries have arrived on path (any
// path when path is ""), or ctx ends; it reports which.
func (rc *Receiver) WaitCount(ctx context.Context, path string, n int) bool {
	return rc.waitUntil(ctx, func() bool {
		if path == "" {
			return rc.requests >= n
		}
		return len(rc.byPath[path]) >= n
	})
}

// waitUntil checks cond, under the lock, after every arrival until it holds
// or ctx ends.
func (rc *Receiver) waitUntil(ctx context.Context, cond func() bool) bool {
	for {
		rc.mu.Lock()
		if cond() {
			rc.mu.Unlock()
			return true
		}
		changed := rc.changed
		rc.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}
