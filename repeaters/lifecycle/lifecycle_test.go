package lifecycle

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// loop is a service whose work runs until its context ends.
type loop struct {
	life    Base
	starts  atomic.Int32
	running atomic.Int32
	block   chan struct{} // when set, the work ignores cancellation until closed
}

func (l *loop) Start(ctx context.Context) error {
	return l.life.Start(ctx, func(ctx context.Context) error {
		l.starts.Add(1)
		l.life.Go(func() {
			l.running.Add(1)
			defer l.running.Add(-1)
			<-ctx.Done()
			if l.block != nil {
				<-l.block
			}
		})
		return nil
	})
}

func (l *loop) Stop(ctx context.Context) error { return l.life.Stop(ctx, nil) }

func TestDoubleStartAndStopAreHarmless(t *testing.T) {
	l := &loop{}
	if err := l.Stop(t.Context()); err != nil {
		t.Fatalf("stop before start: %v", err)
	}
	for range 2 {
		if err := l.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if n := l.starts.Load(); n != 1 {
		t.Fatalf("setup ran %d times, want 1", n)
	}
	for range 2 {
		if err := l.Stop(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if n := l.running.Load(); n != 0 {
		t.Fatalf("%d goroutines still running after Stop", n)
	}
	// A stopped service starts again.
	if err := l.Start(t.Context()); err != nil || !l.life.Running() {
		t.Fatalf("restart: %v running=%v", err, l.life.Running())
	}
	_ = l.Stop(t.Context())
}

func TestStartContextBoundsOnlyStartUp(t *testing.T) {
	l := &loop{}
	ctx, cancel := context.WithCancel(t.Context())
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	time.Sleep(10 * time.Millisecond) // give a wrongly wired loop the chance to exit
	if l.running.Load() != 1 {
		t.Fatal("work ended with the start context; it must run until Stop")
	}
	_ = l.Stop(t.Context())
}

func TestStopHonoursDeadline(t *testing.T) {
	l := &loop{block: make(chan struct{})}
	defer close(l.block)
	if err := l.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := l.Stop(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop = %v, want the deadline", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("Stop took %v past its deadline", el)
	}
}

func TestFailedSetupLeavesNothingRunning(t *testing.T) {
	var b Base
	boom := errors.New("boom")
	var ran atomic.Bool
	err := b.Start(t.Context(), func(ctx context.Context) error {
		b.Go(func() { <-ctx.Done(); ran.Store(true) })
		return boom
	})
	if !errors.Is(err, boom) || b.Running() || !ran.Load() {
		t.Fatalf("err=%v running=%v goroutine ended=%v", err, b.Running(), ran.Load())
	}
}

func TestDrainRunsBeforeCancel(t *testing.T) {
	var b Base
	var cancelled atomic.Bool
	_ = b.Start(t.Context(), func(ctx context.Context) error {
		b.Go(func() { <-ctx.Done(); cancelled.Store(true) })
		return nil
	})
	var sawCancelled bool
	_ = b.Stop(t.Context(), func(context.Context) error { sawCancelled = cancelled.Load(); return nil })
	if sawCancelled || !cancelled.Load() {
		t.Fatalf("drain saw cancelled=%v; after Stop cancelled=%v", sawCancelled, cancelled.Load())
	}
}

// TestConcurrentStartStop hammers one service from many goroutines: it must
// never run setup twice at once, and after a final Stop nothing runs.
func TestConcurrentStartStop(t *testing.T) {
	l := &loop{}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				if (i+j)%2 == 0 {
					_ = l.Start(t.Context())
				} else {
					_ = l.Stop(t.Context())
				}
				if n := l.running.Load(); n > 1 {
					t.Errorf("%d copies of the work running at once", n)
					return
				}
			}
		}()
	}
	wg.Wait()
	_ = l.Stop(t.Context())
	if n := l.running.Load(); n != 0 {
		t.Fatalf("%d still running after the final Stop", n)
	}
}

func TestStartAllStopsTheStartedOnFailure(t *testing.T) {
	a, c := &loop{}, &loop{}
	bad := failing{}
	err := StartAll(t.Context(), []Service{a, bad, c})
	if err == nil || a.life.Running() || c.life.Running() {
		t.Fatalf("err=%v a=%v c=%v", err, a.life.Running(), c.life.Running())
	}
}

type failing struct{}

func (failing) Start(context.Context) error { return errors.New("cannot start") }
func (failing) Stop(context.Context) error  { return nil }
