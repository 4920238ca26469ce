// Package lifecycle gives every role and background service one shape:
// Start(ctx) error and Stop(ctx) error, where a second Start or Stop is
// harmless, Stop before Start does nothing, and Stop gives up waiting when
// its context ends (the drain deadline).
//
// A service embeds a Base by value and calls it from its own Start and Stop:
//
//	func (d *Dispatcher) Start(ctx context.Context) error {
//		return d.life.Start(ctx, func(ctx context.Context) error {
//			d.life.Go(func() { d.loop(ctx) })
//			return nil
//		})
//	}
//	func (d *Dispatcher) Stop(ctx context.Context) error { return d.life.Stop(ctx, nil) }
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Service is a role or background service of repeaterd.
type Service interface {
	// Start begins the service's work and returns once it is running; the
	// work goes on until Stop. ctx bounds only the start-up.
	Start(ctx context.Context) error
	// Stop drains and ends the work, giving up when ctx ends.
	Stop(ctx context.Context) error
}

// Base is the shared start/stop bookkeeping. The zero value is ready.
type Base struct {
	mu      sync.Mutex
	running bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// Start runs setup with a context that lives until Stop (it keeps ctx's
// values, not its cancellation). While the service runs, Start returns nil
// without calling setup again. If setup fails, the service is not running
// and whatever it started with Go is cancelled.
func (b *Base) Start(ctx context.Context, setup func(ctx context.Context) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running {
		return nil
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.cancel = cancel
	if err := setup(runCtx); err != nil {
		cancel()
		b.wg.Wait()
		return err
	}
	b.running = true
	return nil
}

// Go runs fn in the background; Stop waits for it to return. fn should
// return when the context given to setup ends.
func (b *Base) Go(fn func()) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		fn()
	}()
}

// Running reports whether the service is between Start and Stop.
func (b *Base) Running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.running
}

// Stop runs drain (if not nil) with ctx, then cancels the setup context and
// waits for the work started with Go, at most until ctx ends. A Stop while
// not running returns nil.
func (b *Base) Stop(ctx context.Context, drain func(ctx context.Context) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.running {
		return nil
	}
	b.running = false
	var err error
	if drain != nil {
		err = drain(ctx)
	}
	b.cancel()
	done := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return err
	case <-ctx.Done():
		return errors.Join(err, fmt.Errorf("stop: gave up waiting: %w", ctx.Err()))
	}
}

// StartAll starts services in order; if one fails, those already started
// are stopped (in reverse) and the error is returned.
func StartAll(ctx context.Context, services []Service) error {
	for i, s := range services {
		if err := s.Start(ctx); err != nil {
			_ = StopAll(context.WithoutCancel(ctx), services[:i])
			return err
		}
	}
	return nil
}

// StopAll stops services in reverse order under one deadline (ctx) and
// joins their errors.
func StopAll(ctx context.Context, services []Service) error {
	var errs []error
	for i := len(services) - 1; i >= 0; i-- {
		errs = append(errs, services[i].Stop(ctx))
	}
	return errors.Join(errs...)
}
