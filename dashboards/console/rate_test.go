package console_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"repeaterd/dashboards/console"
	"repeaterd/repeaters"
	"repeaterd/store"
	"repeaterd/store/storetest"
)

var barRE = regexp.MustCompile(`data-minute="([^"]+)" data-total="(\d+)"`)

// chartBars reads the chart's bars: minute (RFC 3339) to attempts.
func chartBars(t *testing.T, html string) map[string]int64 {
	t.Helper()
	bars := map[string]int64{}
	for _, m := range barRE.FindAllStringSubmatch(html, -1) {
		n, _ := strconv.ParseInt(m[2], 10, 64)
		bars[m[1]] = n
	}
	if len(bars) != 60 {
		t.Fatalf("chart has %d bars, want 60", len(bars))
	}
	return bars
}

// TestDeliveryRate checks the chart's window and its cache of settled
// minutes across refreshes, on a clock the test moves.
func TestDeliveryRate(t *testing.T) {
	st := storetest.NewStore(t)
	r := repeater(t, st, "a.example", "r")
	now := time.Date(2030, 3, 4, 10, 30, 20, 0, time.UTC)
	clock := repeaters.NewFakeClock(now)
	h := newConsole(t, st, console.Config{Clock: clock})
	minute := func(m time.Time) string { return m.Format(time.RFC3339) }
	attempt(t, st, r, now.Add(-time.Hour), store.StateSuccess, 4)                          // 09:30:20: before the window (09:31 on)
	attempt(t, st, r, time.Date(2030, 3, 4, 9, 31, 0, 0, time.UTC), store.StateSuccess, 2) // the first bar
	attempt(t, st, r, time.Date(2030, 3, 4, 10, 0, 59, 0, time.UTC), store.StateFail, 3)
	attempt(t, st, r, time.Date(2030, 3, 4, 10, 0, 1, 0, time.UTC), store.StateSuccess, 1)
	attempt(t, st, r, time.Date(2030, 3, 4, 10, 30, 0, 0, time.UTC), store.StatePayloadRejected, 5) // the current minute

	bars := chartBars(t, fetch(t, h, "/ui/fragment"))
	want := map[string]int64{"2030-03-04T09:31:00Z": 2, "2030-03-04T10:00:00Z": 4, "2030-03-04T10:30:00Z": 5}
	for m, n := range bars {
		if n != want[m] {
			t.Errorf("bar %s = %d, want %d", m, n, want[m])
		}
	}
	if _, ok := bars["2030-03-04T09:30:00Z"]; ok {
		t.Error("the chart shows 61 minutes")
	}

	// Ten minutes on: the old minutes come from the cache, the new from the
	// database, and the window slid.
	clock.Advance(10 * time.Minute)
	attempt(t, st, r, time.Date(2030, 3, 4, 10, 35, 30, 0, time.UTC), store.StateEmpty, 7)
	attempt(t, st, r, time.Date(2030, 3, 4, 10, 40, 10, 0, time.UTC), store.StateSuccess, 1)
	html := fetch(t, h, "/ui/fragment")
	bars = chartBars(t, html)
	want = map[string]int64{"2030-03-04T10:00:00Z": 4, "2030-03-04T10:30:00Z": 5, "2030-03-04T10:35:00Z": 7, "2030-03-04T10:40:00Z": 1}
	for m, n := range bars {
		if n != want[m] {
			t.Errorf("after 10 minutes: bar %s = %d, want %d", m, n, want[m])
		}
	}
	if _, ok := bars[minute(time.Date(2030, 3, 4, 9, 41, 0, 0, time.UTC))]; !ok {
		t.Error("after 10 minutes the window does not start at 09:41")
	}
	if !strings.Contains(html, `id="rate-hour" data-count="17"`) {
		t.Errorf("hour total is not 17 (4+5+7+1)")
	}
	if !strings.Contains(html, `id="rate-last-minute" data-count="0"`) {
		t.Errorf("last full minute (10:39) is not 0")
	}
}
