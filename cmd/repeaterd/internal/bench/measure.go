package bench

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Percentile returns the p-th percentile (0 ≤ p ≤ 100) of ds by the
// nearest-rank method: the smallest value with at least p % of the values
// at or below it. ds need not be sorted; it is not modified. Empty → 0.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return percentileSorted(s, p)
}

func percentileSorted(s []time.Duration, p float64) time.Duration {
	switch {
	case p <= 0:
		return s[0]
	case p >= 100:
		return s[len(s)-1]
	}
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[max(rank, 1)-1]
}

// Dist summarises durations.
type Dist struct {
	N    int           `json:"n"`
	Min  time.Duration `json:"-"`
	P50  time.Duration `json:"-"`
	P90  time.Duration `json:"-"`
	P99  time.Duration `json:"-"`
	Max  time.Duration `json:"-"`
	Mean time.Duration `json:"-"`
}

// Summarize returns the distribution of ds.
func Summarize(ds []time.Duration) Dist {
	d := Dist{N: len(ds)}
	if len(ds) == 0 {
		return d
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, v := range s {
		sum += v
	}
	d.Min, d.Max, d.Mean = s[0], s[len(s)-1], sum/time.Duration(len(s))
	d.P50, d.P90, d.P99 = percentileSorted(s, 50), percentileSorted(s, 90), percentileSorted(s, 99)
	return d
}

// ms renders a duration in milliseconds for tables and JSON.
func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

// JSON gives the distribution in milliseconds.
func (d Dist) JSON() map[string]any {
	return map[string]any{"n": d.N, "min_ms": ms(d.Min), "p50_ms": ms(d.P50), "p90_ms": ms(d.P90),
		"p99_ms": ms(d.P99), "max_ms": ms(d.Max), "mean_ms": ms(d.Mean)}
}

// Sample is a cumulative count at a moment of a run.
type Sample struct {
	At    time.Duration // since the run began
	Count int64
}

// SustainedRate is the slope of the cumulative count between the first
// sample at or above lo × final and the last sample at or below hi × final,
// where final is the last sample's count: the rate once the run is going,
// leaving out start-up and the tail. It interpolates nothing; with fewer
// than two usable samples it falls back to the whole run (first non-zero
// sample to the last), and returns 0 when even that is undefined.
func SustainedRate(samples []Sample, lo, hi float64) float64 {
	if len(samples) < 2 {
		return 0
	}
	final := float64(samples[len(samples)-1].Count)
	if final <= 0 {
		return 0
	}
	first, last := -1, -1
	for i, s := range samples {
		c := float64(s.Count)
		if first < 0 && c >= lo*final {
			first = i
		}
		if c <= hi*final {
			last = i
		}
	}
	if first >= 0 && last > first {
		return rate(samples[first], samples[last])
	}
	for i, s := range samples { // fall back: from the first movement to the end
		if s.Count > 0 && i > 0 {
			if r := rate(samples[i-1], samples[len(samples)-1]); r > 0 {
				return r
			}
			break
		}
	}
	return 0
}

func rate(a, b Sample) float64 {
	dt := (b.At - a.At).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(b.Count-a.Count) / dt
}

// ReachedAt returns when the count first reached n, or false.
func ReachedAt(samples []Sample, n int64) (time.Duration, bool) {
	for _, s := range samples {
		if s.Count >= n {
			return s.At, true
		}
	}
	return 0, false
}

// ParseCount parses a record count such as 50000, 100k, 1M or 1.5M.
func ParseCount(s string) (int, error) {
	s = strings.TrimSpace(s)
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mult, s = 1e3, s[:len(s)-1]
	case strings.HasSuffix(s, "m"), strings.HasSuffix(s, "M"):
		mult, s = 1e6, s[:len(s)-1]
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(s, "_", ""), 64)
	if err != nil || f <= 0 || f*mult > 1e9 {
		return 0, fmt.Errorf("bad size %q: want a count such as 50000, 100k or 1M", s)
	}
	return int(math.Round(f * mult)), nil
}

// ParseCounts parses a comma-separated list of counts.
func ParseCounts(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		n, err := ParseCount(part)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// FormatCount renders a count as 10M, 100k or 1234.
func FormatCount(n int) string {
	switch {
	case n >= 1e6 && n%100_000 == 0:
		return strings.TrimSuffix(strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64), ".0") + "M"
	case n >= 1e3 && n%100 == 0:
		return strings.TrimSuffix(strconv.FormatFloat(float64(n)/1e3, 'f', 1, 64), ".0") + "k"
	}
	return strconv.Itoa(n)
}

// sizeOf resolves --size for a scenario: a preset's value or the scenario's
// own count.
func (e *env) sizeOf(full, quick int) (int, error) {
	switch e.opt.Size {
	case "", "full":
		return full, nil
	case "quick":
		return quick, nil
	}
	return ParseCount(e.opt.Size)
}

// durationOf resolves a window: --duration, else the preset's.
func (e *env) durationOf(full, quick time.Duration) time.Duration {
	if e.opt.Duration > 0 {
		return e.opt.Duration
	}
	if e.opt.Size == "quick" {
		return quick
	}
	return full
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return math.Inf(1)
	}
	return a / b
}

// round2 rounds for JSON; infinities (a side that never moved) become -1.
func round2(f float64) float64 {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return -1
	}
	return math.Round(f*100) / 100
}
