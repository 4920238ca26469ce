package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"repeaterd/store"
	"repeaterd/store/benchdb"
)

// cpuUse is the CPU time each co-located part has used so far: the bench
// process (the engine roles run in it), Postgres (the postmaster and all its
// children, reaped ones included), Redis and the sink process. On a shared
// machine a rate moves with everyone's load, but CPU per delivery does not,
// and 2 cores divided by it bounds the rate this machine could reach.
type cpuUse struct {
	engine, postgres, redis, sink time.Duration
}

func (c cpuUse) sub(o cpuUse) cpuUse {
	return cpuUse{c.engine - o.engine, c.postgres - o.postgres, c.redis - o.redis, c.sink - o.sink}
}

func (c cpuUse) total() time.Duration { return c.engine + c.postgres + c.redis + c.sink }

// readCPU reads cpuUse; a part that cannot be read counts 0.
func (e *env) readCPU(ctx context.Context, st *store.Store, sinkPID int) cpuUse {
	var c cpuUse
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.engine = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if pid, err := benchdb.BackendPID(ctx, st.Pool()); err == nil {
		c.postgres = postgresCPU(pid)
	}
	c.redis = e.redisCPU(ctx)
	if sinkPID > 0 {
		if t, _, err := procCPU(sinkPID); err == nil {
			c.sink = t
		}
	}
	return c
}

// clockTick is the unit of /proc/PID/stat's times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// procCPU returns a process's utime+stime, its reaped children's, and its
// parent's pid, from /proc/PID/stat.
func procCPU(pid int) (self, children time.Duration, err error) {
	f, _, err := procStat(pid)
	if err != nil {
		return 0, 0, err
	}
	return ticks(f[11]) + ticks(f[12]), ticks(f[13]) + ticks(f[14]), nil
}

// procStat returns the fields of /proc/PID/stat after the command name
// (f[0] is the state, f[1] the parent pid) and the parent pid.
func procStat(pid int) ([]string, int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return nil, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ppid, _ := strconv.Atoi(f[1])
	return f, ppid, nil
}

func ticks(s string) time.Duration {
	n, _ := strconv.ParseInt(s, 10, 64)
	return time.Duration(n) * clockTick
}

// postgresCPU sums the CPU of the postmaster that backend belongs to, of its
// reaped children and of its live ones.
func postgresCPU(backend int) time.Duration {
	_, postmaster, err := procStat(backend)
	if err != nil {
		return 0
	}
	self, reaped, err := procCPU(postmaster)
	if err != nil {
		return 0
	}
	total := self + reaped
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		f, ppid, err := procStat(pid)
		if err != nil || ppid != postmaster {
			continue
		}
		total += ticks(f[11]) + ticks(f[12])
	}
	return total
}

// redisCPU is the Redis server's used_cpu_user + used_cpu_sys.
func (e *env) redisCPU(ctx context.Context) time.Duration {
	o, err := redis.ParseURL(e.opt.RedisURL)
	if err != nil {
		return 0
	}
	c := redis.NewClient(o)
	defer c.Close()
	info, err := c.Info(ctx, "cpu").Result()
	if err != nil {
		return 0
	}
	var total float64
	for _, l := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// cpuFigures describes d (the CPU a phase used) per delivery.
func cpuFigures(d cpuUse, delivered int64) (map[string]any, string) {
	us := func(t time.Duration) float64 { return round2(ratio(float64(t.Microseconds()), float64(delivered))) }
	bound := ratio(2e6, us(d.total()))
	return map[string]any{
			"engine_us": us(d.engine), "postgres_us": us(d.postgres), "redis_us": us(d.redis), "sink_us": us(d.sink),
			"total_us": us(d.total()), "two_core_bound_per_s": round2(bound),
		}, fmt.Sprintf("CPU per delivery: engine %.0f µs, Postgres %.0f µs, Redis %.0f µs, sink %.0f µs = %.0f µs (2 cores / that = %.0f/s at most)",
			us(d.engine), us(d.postgres), us(d.redis), us(d.sink), us(d.total()), bound)
}
