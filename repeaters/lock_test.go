package repeaters

import (
	"context"
	"testing"
	"time"

	"repeaterd/store/storetest"
)

func TestLockTokenCompareAndDelete(t *testing.T) {
	ctx := context.Background()
	rdb := storetest.RedisClient(t)
	l := NewLocker(rdb, time.Second)
	token, ok, err := l.Acquire(ctx, 7)
	if err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	if _, ok, _ := l.Acquire(ctx, 7); ok {
		t.Fatal("a held lock was acquired twice")
	}
	if held, _ := l.Holds(ctx, 7, "someone-else"); held {
		t.Fatal("a wrong token holds the lock")
	}
	if released, _ := l.Release(ctx, 7, "someone-else"); released {
		t.Fatal("a wrong token released the lock")
	}
	sub := rdb.Subscribe(ctx, WakeChannel)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // subscription confirmed
		t.Fatal(err)
	}
	if extended, _ := l.Extend(ctx, 7, token); !extended {
		t.Fatal("the holder could not extend")
	}
	if released, _ := l.Release(ctx, 7, token); !released {
		t.Fatal("the holder could not release")
	}
	select {
	case <-sub.Channel():
	case <-time.After(2 * time.Second):
		t.Fatal("release did not wake the dispatcher")
	}
	if locked, _ := l.Locked(ctx, []int64{7}); locked[0] {
		t.Fatal("released lock still held")
	}
}
