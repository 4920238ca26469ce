package repeaters

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ParseRetryAfter parses a Retry-After header value (RFC 9110 §10.2.3):
// delay-seconds or an HTTP-date, the latter measured from now. ok is false
// when v is empty or neither form. A negative delay or a date in the past is
// 0; a delay too large for a Duration saturates. Callers cap the result.
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		// On ErrRange secs is ±MaxInt64, which the clamps below handle.
		switch {
		case secs <= 0:
			return 0, true
		case secs > math.MaxInt64/int64(time.Second):
			return math.MaxInt64, true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}
