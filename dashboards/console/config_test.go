package console_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"repeaterd/dashboards/console"
	"repeaterd/repeaters"
	"repeaterd/store/storetest"
)

func TestConfigDefaults(t *testing.T) {
	c := console.Config{}.WithDefaults()
	if c.Refresh != console.DefaultRefresh || c.LiveRefresh != console.DefaultLiveRefresh ||
		c.MonitorURL != console.DefaultMonitorURL || c.Logger != slog.Default() || c.Clock != (repeaters.SystemClock{}) ||
		c.Token.Configured() {
		t.Errorf("zero config = %+v, want the defaults", c)
	}
	clock := repeaters.NewFakeClock(time.Unix(0, 0))
	if c := (console.Config{Clock: clock}).WithDefaults(); c.Clock != clock {
		t.Error("WithDefaults replaced the clock given")
	}
	for _, bad := range []console.Config{{Refresh: -time.Second}, {LiveRefresh: -time.Second}} {
		if _, err := console.New(nil, bad); err == nil {
			t.Errorf("New(%+v) accepted a negative interval", bad)
		}
	}
}

// TestLiveRefreshNotShorter: live counts refresh at LiveRefresh, but never
// more often than Refresh.
func TestLiveRefreshNotShorter(t *testing.T) {
	st := storetest.NewStore(t)
	h := newConsole(t, st, console.Config{Refresh: time.Minute, LiveRefresh: time.Second})
	if html := fetch(t, h, "/ui/fragment"); !strings.Contains(html, `data-source="live"`) ||
		!strings.Contains(html, `data-refresh-ms="60000"`) {
		t.Error("live counts refresh more often than Refresh")
	}
}
