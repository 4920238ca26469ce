package console

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"repeaterd/dashboards/auth"
	"repeaterd/repeaters"
	"repeaterd/store"
)

// Console defaults.
const (
	DefaultRefresh     = 5 * time.Second
	DefaultLiveRefresh = 30 * time.Second
	DefaultMonitorURL  = "/monitor/"
)

// Config configures the console (New).
type Config struct {
	// Token, when configured, is the admin token the login form takes
	// (the web role's REPEATERD_API_TOKEN): every page but the form and
	// the static files then needs the session cookie that logging in sets
	// (auth.Sessions, which the web role checks too, for asynqmon and the
	// API). Defaults to none: no login, which the web role allows only on
	// loopback.
	Token auth.Token
	// Clock is what the console shows times against and counts the
	// delivery-rate window from. Defaults to repeaters.SystemClock{}.
	Clock repeaters.Clock
	// Refresh is how often an open console fetches fresh data. Defaults to
	// DefaultRefresh (5s).
	Refresh time.Duration
	// LiveRefresh is the refresh interval while record counts are live (no
	// WAL stats consumer), since every live count reads every record; the
	// console uses Refresh when that is longer. Defaults to
	// DefaultLiveRefresh (30s).
	LiveRefresh time.Duration
	// MonitorURL is where the header links to the task queues (asynqmon).
	// Defaults to DefaultMonitorURL ("/monitor/").
	MonitorURL string
	// Jobs queues the tasks of the bulk actions' jobs; tasks.Client is
	// one. Defaults to none: bulk actions are refused.
	Jobs JobQueue
	// Prober sends a repeater's test request for the "Send test request"
	// button; repeaters.Sender is one. Defaults to none: no button.
	Prober Prober
	// Logger logs failed queries and flag switches. Defaults to
	// slog.Default().
	Logger *slog.Logger
}

// Prober sends a signed test request to a repeater's endpoint now and says
// what it answered, writing nothing (repeaters.Sender.Probe).
type Prober interface {
	Probe(ctx context.Context, r *store.Repeater) repeaters.ProbeResult
}

// WithDefaults returns c with its zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Clock = cmp.Or[repeaters.Clock](c.Clock, repeaters.SystemClock{})
	c.Refresh = cmp.Or(c.Refresh, DefaultRefresh)
	c.LiveRefresh = cmp.Or(c.LiveRefresh, DefaultLiveRefresh)
	c.MonitorURL = cmp.Or(c.MonitorURL, DefaultMonitorURL)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	return c
}

func (c Config) validate() error {
	if c.Refresh < 0 || c.LiveRefresh < 0 {
		return fmt.Errorf("console: refresh intervals must not be negative (Refresh %v, LiveRefresh %v)",
			c.Refresh, c.LiveRefresh)
	}
	return nil
}
