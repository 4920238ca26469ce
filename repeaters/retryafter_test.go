package repeaters

import (
	"math"
	"net/http"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	in90 := now.Add(90 * time.Second)
	tests := []struct {
		v      string
		want   time.Duration
		wantOK bool
	}{
		{"", 0, false},
		{"   ", 0, false},
		{"abc", 0, false},
		{"1.5", 0, false},
		{"0", 0, true},
		{"120", 120 * time.Second, true},
		{" 120 ", 120 * time.Second, true},
		{"-5", 0, true},
		{"99999999999999999999", math.MaxInt64, true},
		{"-99999999999999999999", 0, true},
		{in90.Format(http.TimeFormat), 90 * time.Second, true},
		{in90.Format(time.RFC850), 90 * time.Second, true},
		{in90.Format(time.ANSIC), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"Wed, 99 Foo 2030 00:00:00 GMT", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseRetryAfter(tt.v, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tt.v, got, ok, tt.want, tt.wantOK)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, seed := range []string{"", "0", "120", "-1", "1e9", "99999999999999999999",
		"Wed, 21 Oct 2015 07:28:00 GMT", "Wednesday, 21-Oct-15 07:28:00 GMT", "Wed Oct 21 07:28:00 2015"} {
		f.Add(seed, int64(1445412480))
	}
	f.Fuzz(func(t *testing.T, v string, nowUnix int64) {
		d, ok := ParseRetryAfter(v, time.Unix(nowUnix, 0))
		if d < 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v, negative", v, d)
		}
		if !ok && d != 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v with ok=false", v, d)
		}
	})
}
