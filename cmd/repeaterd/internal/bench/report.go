package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"repeaterd/store"
	"repeaterd/store/benchdb"
)

// Result is a scenario's final JSON line.
type Result struct {
	Scenario string         `json:"scenario"`
	Size     string         `json:"size"`
	Started  time.Time      `json:"started"`
	Machine  Machine        `json:"machine"`
	Tuning   []string       `json:"tuning"`
	Notes    []string       `json:"notes,omitempty"`
	Figures  map[string]any `json:"figures"`
	Goals    []Goal         `json:"goals"`
}

// Goal is one goal of the issue and whether this run met it.
type Goal struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs     int    `json:"cpus"`
	MemTotal string `json:"mem_total"`
	Postgres string `json:"postgres"`
	// Durability is the Postgres server's commit settings (fsync,
	// synchronous_commit, full_page_writes, shared_buffers).
	Durability string `json:"postgres_durability"`
	// FsyncOffServer is the second server's, when one is given for the
	// fsync-off column.
	FsyncOffServer string `json:"postgres_fsync_off_server,omitempty"`
	Redis          string `json:"redis"`
	Go             string `json:"go"`
	LoadStart      string `json:"loadavg_start"`
	LoadEnd        string `json:"loadavg_end"`
	GOMAXPROCS     int    `json:"gomaxprocs"`
}

func (m Machine) String() string {
	s := fmt.Sprintf("%d CPUs, %s RAM, PostgreSQL %s (%s), Redis %s, %s, loadavg %s (co-located: PG, Redis, sink, repeaterd; the machine is shared with other engineers' tests)",
		m.CPUs, m.MemTotal, m.Postgres, m.Durability, m.Redis, m.Go, m.LoadStart)
	if m.FsyncOffServer != "" {
		s += "; fsync-off column on a second server (" + m.FsyncOffServer + ")"
	}
	return s
}

func machine(ctx context.Context, opt Options) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), LoadStart: loadAvg(), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				var kb int64
				fmt.Sscan(f[1], &kb)
				m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	if st, err := store.Open(ctx, opt.DatabaseURL); err == nil {
		m.Postgres, _ = benchdb.ServerVersion(ctx, st.Pool())
		m.Durability, _ = benchdb.Durability(ctx, st.Pool())
		st.Close()
	}
	if opt.FsyncOffURL != "" {
		if st, err := store.Open(ctx, opt.FsyncOffURL); err == nil {
			m.FsyncOffServer, _ = benchdb.Durability(ctx, st.Pool())
			st.Close()
		}
	}
	if o, err := redis.ParseURL(opt.RedisURL); err == nil {
		c := redis.NewClient(o)
		if info, err := c.Info(ctx, "server").Result(); err == nil {
			for _, l := range strings.Split(info, "\n") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(l), "redis_version:"); ok {
					m.Redis = v
				}
			}
		}
		c.Close()
	}
	return m
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// logf prints progress to the log stream.
func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.opt.Log, "  [%s %s] %s\n", e.sc.Name, time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// notef adds a note to the report and the JSON.
func (e *env) notef(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	e.res.Notes = append(e.res.Notes, n)
	fmt.Fprintln(e.out, "note: "+n)
}

func (e *env) figure(name string, v any) { e.res.Figures[name] = v }

func (e *env) goal(name, want, got string, met bool) {
	e.res.Goals = append(e.res.Goals, Goal{Name: name, Want: want, Got: got, Met: met})
}

// table returns a tab-aligned writer on the report with a header row.
func (e *env) table(headers ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(headers, "\t")+"\t")
	return tw
}

func row(tw io.Writer, cells ...any) {
	parts := make([]string, len(cells))
	for i, c := range cells {
		parts[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(tw, strings.Join(parts, "\t")+"\t")
}

func (e *env) printGoals() {
	if len(e.res.Goals) == 0 {
		return
	}
	fmt.Fprintln(e.out)
	tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GOAL\tWANT\tGOT\tMET")
	for _, g := range e.res.Goals {
		met := "no"
		if g.Met {
			met = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", g.Name, g.Want, g.Got, met)
	}
	tw.Flush()
}
