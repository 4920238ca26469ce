package repeaters

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/bsm/redislock"
	"github.com/redis/go-redis/v9"
)

// WakeChannel is the Redis channel a released lock is announced on, so the
// dispatcher can hand the repeater its next batch at once.
const WakeChannel = "repeaterd:wake"

// DefaultLockTTL is how long a repeater lock outlives a silent holder.
const DefaultLockTTL = 30 * time.Second

// Locker holds per-repeater locks in Redis. The dispatcher takes a lock with
// a random token; the worker that runs the batch proves, extends and releases
// it by that token, possibly from another process.
type Locker struct {
	rdb   redis.UniversalClient
	locks *redislock.Client
	ttl   time.Duration
}

// NewLocker returns a Locker whose locks live for ttl unless extended.
func NewLocker(rdb redis.UniversalClient, ttl time.Duration) *Locker {
	if ttl <= 0 {
		ttl = DefaultLockTTL
	}
	return &Locker{rdb: rdb, locks: redislock.New(rdb), ttl: ttl}
}

// TTL returns the lock lifetime.
func (l *Locker) TTL() time.Duration { return l.ttl }

// LockKey is the Redis key of a repeater's lock. Locks and the leader lease
// share the {repeaterd} hash tag, so the fenced acquire can read both in one
// script on a Redis Cluster too.
func LockKey(repeaterID int64) string { return fmt.Sprintf("{repeaterd}:lock:repeater:%d", repeaterID) }

// Fence is the dispatcher leader's term: the lease key and the token this
// leader holds it with. A lock is taken under a fence only while the lease
// still holds that token, so a paused leader whose lease passed to another
// can never dispatch again.
type Fence struct {
	Key   string
	Token string
}

// ErrFenced is returned when the leader's term ended before it acted.
var ErrFenced = errors.New("no longer the leader")

// AcquireFenced takes a repeater's lock, as Acquire, but only while fence
// still holds its lease (checked in the same script). It returns ErrFenced
// when the term is over.
func (l *Locker) AcquireFenced(ctx context.Context, repeaterID int64, fence Fence) (token string, ok bool, err error) {
	token = rand.Text()
	n, err := luaAcquireFenced.Run(ctx, l.rdb, []string{LockKey(repeaterID), fence.Key},
		token, l.ttl.Milliseconds(), fence.Token).Int()
	switch {
	case err != nil:
		return "", false, err
	case n < 0:
		return "", false, ErrFenced
	}
	return token, n == 1, nil
}

// Reacquire takes a lapsed lock back for token, unless another holder has
// it: a batch whose task waited in the queue past its lock may still run, but
// never beside a successor.
func (l *Locker) Reacquire(ctx context.Context, repeaterID int64, token string) (bool, error) {
	return l.rdb.SetNX(ctx, LockKey(repeaterID), token, l.ttl).Result()
}

// Acquire takes a repeater's lock. ok is false when another holder has it.
func (l *Locker) Acquire(ctx context.Context, repeaterID int64) (token string, ok bool, err error) {
	lock, err := l.locks.Obtain(ctx, LockKey(repeaterID), l.ttl, nil)
	if errors.Is(err, redislock.ErrNotObtained) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return lock.Token(), true, nil
}

// The token scripts compare the stored token before acting, so a holder
// whose lock lapsed and passed to another can never extend or free it.
var (
	// KEYS[1] lock key, KEYS[2] leader lease key; ARGV[1] token, ARGV[2] ttl
	// ms, ARGV[3] the leader's lease token. Returns -1 if the lease is not
	// the leader's any more, 1 if the lock was taken, 0 if it is held.
	luaAcquireFenced = redis.NewScript(`if redis.call("get", KEYS[2]) ~= ARGV[3] then return -1 end
if redis.call("set", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then return 1 end
return 0`)
	// KEYS[1] lock key; ARGV[1] token, ARGV[2] ttl ms. Returns 1 if extended.
	luaExtend = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end`)
	// KEYS[1] lock key; ARGV[1] token, ARGV[2] wake channel (not a key: on
	// a Redis Cluster every key of a script must share a slot). Returns 1
	// if released.
	luaRelease = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then redis.call("del", KEYS[1]); redis.call("publish", ARGV[2], "released"); return 1 else return 0 end`)
)

// Holds reports whether token still holds the repeater's lock.
func (l *Locker) Holds(ctx context.Context, repeaterID int64, token string) (bool, error) {
	v, err := l.rdb.Get(ctx, LockKey(repeaterID)).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	return v == token, err
}

// Extend renews the lock for another TTL if token still holds it.
func (l *Locker) Extend(ctx context.Context, repeaterID int64, token string) (bool, error) {
	n, err := luaExtend.Run(ctx, l.rdb, []string{LockKey(repeaterID)}, token, l.ttl.Milliseconds()).Int()
	return n == 1, err
}

// Release frees the lock if token still holds it (compare-and-delete) and
// wakes the dispatcher.
func (l *Locker) Release(ctx context.Context, repeaterID int64, token string) (bool, error) {
	n, err := luaRelease.Run(ctx, l.rdb, []string{LockKey(repeaterID)}, token, WakeChannel).Int()
	return n == 1, err
}

// Locked reports, for each id, whether its lock is held, in one round trip.
func (l *Locker) Locked(ctx context.Context, ids []int64) ([]bool, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = LockKey(id)
	}
	if _, ok := l.rdb.(*redis.ClusterClient); ok {
		return l.lockedOnCluster(ctx, keys)
	}
	vals, err := l.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(ids))
	for i, v := range vals {
		out[i] = v != nil
	}
	return out, nil
}

// lockedOnCluster is Locked where the keys live in different hash slots,
// which one MGET may not span: one pipelined EXISTS per key, which the
// cluster client sends as one round trip per node.
func (l *Locker) lockedOnCluster(ctx context.Context, keys []string) ([]bool, error) {
	cmds := make([]*redis.IntCmd, len(keys))
	if _, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Exists(ctx, k)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	out := make([]bool, len(keys))
	for i, c := range cmds {
		out[i] = c.Val() == 1
	}
	return out, nil
}

// Wake tells the dispatcher something changed (a new record, a release).
func Wake(ctx context.Context, rdb redis.UniversalClient) error {
	return rdb.Publish(ctx, WakeChannel, "wake").Err()
}
