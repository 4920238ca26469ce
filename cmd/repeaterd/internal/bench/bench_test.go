package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"repeaterd/repeaters/repeatertest"
	"repeaterd/store"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(100-i) * time.Millisecond // unsorted on purpose
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"p50 of odd", ms(5, 1, 3), 50, 3 * time.Millisecond},
		{"p50 of even is the lower middle", ms(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{"p0 is the min", ms(4, 1, 3), 0, time.Millisecond},
		{"p100 is the max", ms(4, 1, 3), 100, 4 * time.Millisecond},
		{"p99 of 100", hundred, 99, 99 * time.Millisecond},
		{"p90 of 100", hundred, 90, 90 * time.Millisecond},
		{"p99 of 20 is the max", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20), 99, 20 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := append([]time.Duration(nil), tc.in...)
			if got := Percentile(tc.in, tc.p); got != tc.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tc.in, tc.p, got, tc.want)
			}
			for i := range before {
				if before[i] != tc.in[i] {
					t.Fatal("Percentile modified its input")
				}
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	d := Summarize([]time.Duration{3 * time.Second, time.Second, 2 * time.Second})
	if d.N != 3 || d.Min != time.Second || d.Max != 3*time.Second || d.P50 != 2*time.Second || d.Mean != 2*time.Second {
		t.Fatalf("Summarize = %+v", d)
	}
	if got := Summarize(nil); got.N != 0 || got.P99 != 0 {
		t.Fatalf("Summarize(nil) = %+v", got)
	}
	if j := d.JSON(); j["p50_ms"] != 2000.0 || j["n"] != 3 {
		t.Fatalf("JSON = %v", j)
	}
}

func TestSustainedRate(t *testing.T) {
	s := func(sec float64, n int64) Sample {
		return Sample{At: time.Duration(sec * float64(time.Second)), Count: n}
	}
	for _, tc := range []struct {
		name    string
		samples []Sample
		want    float64
	}{
		{"too few", []Sample{s(0, 0)}, 0},
		{"nothing delivered", []Sample{s(0, 0), s(1, 0), s(2, 0)}, 0},
		// A slow start and a tail: 10 %..90 % of 1000 is samples 2..6 (100 → 900 in 4 s).
		{"middle of the run", []Sample{s(0, 0), s(1, 10), s(2, 100), s(3, 300), s(4, 500), s(5, 700), s(6, 900), s(7, 990), s(8, 1000)}, 200},
		// Drained between two samples: falls back to first movement → end.
		{"two samples", []Sample{s(0, 0), s(2, 1000)}, 500},
		{"late start", []Sample{s(0, 0), s(10, 0), s(12, 400), s(14, 800)}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SustainedRate(tc.samples, 0.1, 0.9); got != tc.want {
				t.Errorf("SustainedRate = %v, want %v", got, tc.want)
			}
		})
	}
	if at, ok := ReachedAt([]Sample{s(0, 0), s(1, 5), s(2, 10)}, 10); !ok || at != 2*time.Second {
		t.Errorf("ReachedAt = %v %v", at, ok)
	}
	if _, ok := ReachedAt([]Sample{s(0, 0), s(1, 5)}, 10); ok {
		t.Error("ReachedAt reached a count never sampled")
	}
}

func TestParseCount(t *testing.T) {
	for in, want := range map[string]int{"50000": 50000, "100k": 100_000, "1M": 1_000_000, "1.5M": 1_500_000,
		" 10m ": 10_000_000, "2_000": 2000, "20K": 20_000} {
		if got, err := ParseCount(in); err != nil || got != want {
			t.Errorf("ParseCount(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "k", "-1", "0", "x1", "2G", "1e12"} {
		if _, err := ParseCount(bad); err == nil {
			t.Errorf("ParseCount(%q) accepted", bad)
		}
	}
	got, err := ParseCounts("1M,10M")
	if err != nil || len(got) != 2 || got[1] != 10_000_000 {
		t.Errorf("ParseCounts = %v, %v", got, err)
	}
	for n, want := range map[int]string{10_000_000: "10M", 1_500_000: "1.5M", 100_000: "100k", 1234: "1234", 2500: "2.5k"} {
		if got := FormatCount(n); got != want {
			t.Errorf("FormatCount(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParseLSN(t *testing.T) {
	for in, want := range map[string]uint64{"0/0": 0, "0/16B3748": 0x16B3748, "16/B374D848": 0x16<<32 | 0xB374D848} {
		if got, err := ParseLSN(in); err != nil || got != want {
			t.Errorf("ParseLSN(%q) = %x, %v; want %x", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "16", "x/1", "1/100000000"} {
		if _, err := ParseLSN(bad); err == nil {
			t.Errorf("ParseLSN(%q) accepted", bad)
		}
	}
	a, _ := ParseLSN("1/0")
	b, _ := ParseLSN("0/FFFFFFFF")
	if a <= b {
		t.Error("LSNs do not order across the slash")
	}
}

func TestParseProcStatus(t *testing.T) {
	status := "Name:\trepeaterd\nVmPeak:\t 1000 kB\nVmHWM:\t   51234 kB\nVmRSS:\t   40960 kB\nThreads:\t9\n"
	rss, hwm, err := parseProcStatus(status)
	if err != nil || rss != 40960 || hwm != 51234 {
		t.Fatalf("parseProcStatus = %d, %d, %v", rss, hwm, err)
	}
	if _, _, err := parseProcStatus("Name:\tx\n"); err == nil {
		t.Fatal("parseProcStatus accepted a status without memory lines")
	}
}

func TestCompareCounts(t *testing.T) {
	k := func(d string, r int64, s store.State, n int64) store.StatCount {
		return store.StatCount{StatKey: store.StatKey{Domain: d, RepeaterID: r, State: s}, Count: n}
	}
	live := []store.StatCount{k("a", 1, 1, 5), k("a", 1, 4, 10), k("b", 2, 4, 3)}
	if d := compareCounts(live, live); d.keys != 0 || d.off != 0 || d.total != 18 || d.walTotal != 18 {
		t.Fatalf("equal counts differ: %+v", d)
	}
	wal := []store.StatCount{k("a", 1, 1, 4), k("a", 1, 4, 10), k("c", 3, 4, 2)} // one short, b missing, c extra
	if d := compareCounts(wal, live); d.keys != 3 || d.off != 1+3+2 {
		t.Fatalf("compareCounts = %+v", d)
	}
}

func TestServeSinkAnnounces(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, announce := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- ServeSink(ctx, "127.0.0.1:0", repeatertest.Config{}, 42, announce) }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var a SinkAnnouncement
	if err := json.Unmarshal([]byte(line), &a); err != nil {
		t.Fatal(err)
	}
	if a.PID != 42 || !strings.HasPrefix(a.Addr, "127.0.0.1:") {
		t.Fatalf("announcement %+v", a)
	}
	// The announced address serves the receiver and its control endpoints.
	if _, err := repeatertest.NewClient("http://" + a.Addr).Stats(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestParseCommandStats(t *testing.T) {
	got := parseCommandStats("# Commandstats\r\ncmdstat_get:calls=12,usec=30,usec_per_call=2.50,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_evalsha:calls=7,usec=700,usec_per_call=100.00\r\nused_cpu_sys:1.0\r\n")
	if len(got) != 2 || got["get"] != 12 || got["evalsha"] != 7 {
		t.Fatalf("got %v", got)
	}
}

func TestProcCPUOfThisProcess(t *testing.T) {
	self, _, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	_, ppid, err := procStat(os.Getpid())
	if err != nil || ppid != os.Getppid() {
		t.Fatalf("parent %d (%v), want %d", ppid, err, os.Getppid())
	}
	if self < 0 {
		t.Fatalf("cpu %s", self)
	}
}
