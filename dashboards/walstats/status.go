package walstats

import (
	"fmt"
	"sync"
	"time"
)

// States of a Consumer (Status.State).
const (
	StateStopped   = "stopped"   // not started, or stopped
	StateStarting  = "starting"  // started, no session yet
	StateStreaming = "streaming" // consuming the slot
	StateStandby   = "standby"   // another process consumes the slot; waiting to take over
	StateDegraded  = "degraded"  // the last session failed (Err says why); retrying
)

// Status is where a consumer stands and since when.
type Status struct {
	State string
	Err   error // why it is degraded; nil otherwise
	Since time.Time
}

// Status returns the consumer's current state.
func (c *Consumer) Status() Status { return c.status.get() }

// Health is nil while the consumer works as it should (streaming, standing
// by for another, or starting) and the reason while it is degraded, for
// /readyz and the role metrics. The rest of the process is unaffected.
func (c *Consumer) Health() error {
	st := c.status.get()
	if st.State == StateDegraded {
		return fmt.Errorf("degraded since %s (dashboards show live counts): %w",
			st.Since.UTC().Format(time.RFC3339), st.Err)
	}
	return nil
}

// statusBox guards a Status; its zero value is StateStopped.
type statusBox struct {
	mu      sync.Mutex
	st      Status
	changed chan struct{} // closed at the next change (tests wait on it)
}

// set changes the state (keeping Since when the state stays the same) and
// returns the one before.
func (b *statusBox) set(state string, err error) Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	prev := b.get0()
	if prev.State != state {
		b.st.Since = time.Now()
	}
	b.st.State, b.st.Err = state, err
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return prev
}

// next returns the status now and a channel closed at its next change.
func (b *statusBox) next() (Status, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	return b.get0(), b.changed
}

func (b *statusBox) get() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.get0()
}

func (b *statusBox) get0() Status {
	if b.st.State == "" {
		return Status{State: StateStopped}
	}
	return b.st
}
