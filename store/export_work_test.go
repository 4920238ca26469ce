package store

// SetPruneHook sets the hook PruneIdleRepeaters runs at each stage, and
// returns a function that removes it.
func SetPruneHook(f func(stage string)) (restore func()) {
	pruneHook = f
	return func() { pruneHook = nil }
}

// QueuedRegistrations is how many RegisterRecord calls wait for a writer.
func QueuedRegistrations(s *Store) int {
	s.coalesce.mu.Lock()
	defer s.coalesce.mu.Unlock()
	return len(s.coalesce.queue)
}

// SQLRecordsByKeys is the registration's idempotency key lookup.
var SQLRecordsByKeys = sqlRecordsByKeys
