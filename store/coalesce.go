package store

import (
	"context"
	"sync"
	"time"
)

// Single registrations share transactions. A transaction of its own costs a
// record ~8× its share of a batch's (BEGIN, the repeater's lock, COMMIT and
// its WAL flush, the round trips), and an API taking one record per request
// from many clients would pay that for every record. So RegisterRecord
// queues its record; when fewer than maxRegistrationWriters groups are being
// written it starts a writer, which takes every queued record (up to
// maxCoalesced) into one transaction, and loops until the queue is empty.
// Alone, a record is written at once, as before; under load the records that
// arrive while a group is written go together in the next. No timer waits
// for company.
//
// Each record keeps its own outcome: a refused one (unknown repeater, a
// domain its caller does not see, its key reused) is skipped, and the others
// are written. Two records with the same idempotency key are never written
// at once, in one group or two, so the later one finds the earlier's record
// as it would alone, and groups do not undo each other racing for a key.
type coalescer struct {
	mu       sync.Mutex
	queue    []*registration
	writers  int
	inFlight map[batchKey]bool // the keys of the groups being written
}

const (
	maxRegistrationWriters = 4
	maxCoalesced           = 100
	// groupTimeout bounds a group's write: it outlives the callers'
	// contexts, since one caller leaving must not undo the others' records.
	groupTimeout = 30 * time.Second
)

// registration is one queued RegisterRecord.
type registration struct {
	item  BatchItem
	sees  func(string) bool
	taken bool // by a writer (under coalescer.mu): the caller waits for its outcome
	done  chan registered
}

type registered struct {
	res BatchResult
	err error
}

// registerCoalesced registers item with the records queued beside it and
// returns its own outcome. A caller whose ctx ends while its record is still
// queued gets ctx's error and nothing is written; once a writer has taken
// it, the caller waits for the write, which is bounded by groupTimeout.
func (s *Store) registerCoalesced(ctx context.Context, item BatchItem, sees func(string) bool) (BatchResult, error) {
	r := &registration{item: item, sees: sees, done: make(chan registered, 1)}
	c := &s.coalesce
	c.mu.Lock()
	c.queue = append(c.queue, r)
	start := c.writers < maxRegistrationWriters
	if start {
		c.writers++
	}
	c.mu.Unlock()
	if start {
		go s.writeRegistrations()
	}
	select {
	case out := <-r.done:
		return out.res, out.err
	case <-ctx.Done():
		if c.withdraw(r) {
			return BatchResult{}, ctx.Err()
		}
		out := <-r.done
		return out.res, out.err
	}
}

// withdraw removes r from the queue unless a writer has taken it.
func (c *coalescer) withdraw(r *registration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.taken {
		return false
	}
	for i, q := range c.queue {
		if q == r {
			c.queue = append(c.queue[:i], c.queue[i+1:]...)
			break
		}
	}
	return true
}

// writeRegistrations writes queued groups until none is left to take.
func (s *Store) writeRegistrations() {
	var group []*registration
	for {
		if group = s.coalesce.next(group); group == nil {
			return
		}
		s.writeGroup(group)
	}
}

// next releases the keys of the group written and takes the next group
// from the queue, in order, leaving behind any record whose key is being
// written; nil (and one writer less) when there is none. A record left
// behind is taken by the writer of its key's group, which calls next again.
func (c *coalescer) next(written []*registration) []*registration {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range written {
		delete(c.inFlight, keyOf(r.item))
	}
	if c.inFlight == nil {
		c.inFlight = map[batchKey]bool{}
	}
	var group, rest []*registration
	for _, r := range c.queue {
		k := keyOf(r.item)
		if len(group) == maxCoalesced || k.key != "" && c.inFlight[k] {
			rest = append(rest, r)
			continue
		}
		if k.key != "" {
			c.inFlight[k] = true
		}
		r.taken = true
		group = append(group, r)
	}
	c.queue = rest
	if len(group) == 0 {
		c.writers--
		return nil
	}
	return group
}

func keyOf(it BatchItem) batchKey { return batchKey{it.RepeaterID, it.IdempotencyKey} }

// writeGroup registers group in one transaction and hands each caller its
// record's outcome.
func (s *Store) writeGroup(group []*registration) {
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	items := make([]BatchItem, len(group))
	for i, r := range group {
		items[i] = r.item
	}
	sees := func(i int, domain string) bool { return group[i].sees(domain) }
	res, err := s.register(ctx, items, sees, true)
	for i, r := range group {
		out := registered{err: err}
		if err == nil {
			out.res = res[i]
		}
		r.done <- out
	}
}
