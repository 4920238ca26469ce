package repeaters

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// What the dispatcher leader knows of batches in flight beyond its own
// memory: how many records a finished batch sent (so the tokens it did not
// use are refunded) and which repeaters are locked when a term begins (so a
// new leader counts the batches of the old one against their domains'
// shares, hung ones included).

// usedTTL is how long a batch's count of sent records waits for the
// dispatcher to read it.
const usedTTL = 10 * time.Minute

func usedKey(token string) string { return "{repeaterd}:used:" + token }

// NoteUsed records that the batch holding token made n attempts, before its
// lock is released; the dispatcher refunds the rest of what it reserved.
func (l *Locker) NoteUsed(ctx context.Context, token string, n int) error {
	return l.rdb.Set(ctx, usedKey(token), n, usedTTL).Err()
}

// TakeUsed returns (and forgets) the counts NoteUsed recorded for tokens;
// a batch that never recorded one (it crashed, or ran before this leader's
// term) is missing from the map.
func (l *Locker) TakeUsed(ctx context.Context, tokens []string) (map[string]int, error) {
	out := map[string]int{}
	if len(tokens) == 0 {
		return out, nil
	}
	keys := make([]string, len(tokens))
	for i, t := range tokens {
		keys[i] = usedKey(t)
	}
	// The keys share a hash tag: one MGET and one DEL, on a Cluster too.
	vals, err := l.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	for i, v := range vals {
		if s, ok := v.(string); ok {
			if n, err := strconv.Atoi(s); err == nil {
				out[tokens[i]] = n
			}
		}
	}
	return out, l.rdb.Del(ctx, keys...).Err()
}

// lockPrefix is what every repeater lock key starts with (LockKey).
const lockPrefix = "{repeaterd}:lock:repeater:"

// HeldLocks returns the repeaters whose lock is held now, whoever holds it.
// It scans the keyspace (every master of a Cluster), so it runs once per
// dispatcher term, not per pass.
func (l *Locker) HeldLocks(ctx context.Context) ([]int64, error) {
	var (
		mu  sync.Mutex
		out []int64
	)
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, lockPrefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			if id, err := strconv.ParseInt(strings.TrimPrefix(iter.Val(), lockPrefix), 10, 64); err == nil {
				mu.Lock()
				out = append(out, id)
				mu.Unlock()
			}
		}
		return iter.Err()
	}
	switch c := l.rdb.(type) {
	case *redis.Client:
		return out, scan(ctx, c)
	case *redis.ClusterClient:
		return out, c.ForEachMaster(ctx, scan)
	}
	return nil, errors.New("held locks: unsupported Redis client")
}

// restartPace empties a repeater's pace bucket (a missing pace bucket is
// an empty one): its pace was just lowered.
func (l *Locker) restartPace(ctx context.Context, repeaterID int64) error {
	return l.rdb.Del(ctx, paceKey(repeaterID)).Err()
}
